"""`deviceinfo/query`: the PBX's identity, clock, boot time and extension usage."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, tzinfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ippbx.api.request import ApiRequest, Endpoint

log = logging.getLogger(__name__)

HARDWARE_VERSION = "1.0"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@lru_cache(maxsize=8)
def zone(name: str) -> tzinfo:
    """The named time zone, or UTC (with a warning) when it is unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown time zone %r, using UTC", name)
        return ZoneInfo("UTC")


def system_time(ts: float, tz: tzinfo) -> str:
    """`YYYY-MM-DD HH:MM:SS`."""
    return datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M:%S")


def boot_time(ts: float, tz: tzinfo) -> str:
    """`YYYY-Mon-DD-HH:MM:SS`, month in English whatever the locale."""
    dt = datetime.fromtimestamp(ts, tz)
    return f"{dt.year:04d}-{_MONTHS[dt.month - 1]}-{dt.day:02d}-{dt:%H:%M:%S}"


def deviceinfo_query(req: ApiRequest) -> Mapping[str, Any]:
    ctx = req.ctx
    pbx = ctx.config.pbx
    tz = zone(pbx.timezone)
    return {
        "deviceinfo": {
            "devicename": pbx.name,
            "sn": pbx.sn,
            "hardwarever": HARDWARE_VERSION,
            "firmwarever": pbx.firmware,
            "systemtime": system_time(ctx.wall_clock(), tz),
            "uptime": boot_time(ctx.boot_time, tz),
            "extensionstatus": f"{ctx.registry.busy_extensions()}/{len(ctx.config.extensions)}",
        }
    }


ENDPOINTS = [Endpoint("deviceinfo/query", deviceinfo_query)]
