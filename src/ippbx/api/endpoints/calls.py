"""`outbound/query` and `inbound/query`: live calls from the registry, in the caller's dialect.

No id, an empty id or `"all"` lists every live call (in creation order); a comma list
returns the listed calls still live, in request order, whitespace trimmed, duplicates
and unknown ids dropped. No match is a success with an empty list.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ippbx.api.request import ApiRequest, Endpoint
from ippbx.pbx.calls import Call, Leg, LegKind


def parse_ids(value: str | None) -> list[str] | None:
    """The ids of a query field, or None for "all live calls"."""
    if value is None:
        return None
    ids = [part.strip() for part in value.split(",")]
    ids = [i for i in ids if i]
    if not ids or (len(ids) == 1 and ids[0].lower() == "all"):
        return None
    return list(dict.fromkeys(ids))


def outbound_view(leg: Leg) -> dict[str, Any]:
    return {
        "outboundid": leg.id,
        "from": leg.from_number,
        "to": leg.to_number,
        "trunk": leg.trunk or "",
        "status": leg.status.value,
    }


def _callee(call: Call) -> dict[str, str]:
    callee = call.callee
    if callee is None:
        return {"extid": ""}
    if callee.kind is LegKind.TRUNK:
        return {"outboundid": callee.id}
    return {"extid": callee.extension or ""}


def inbound_view(call: Call, callee_as_list: bool) -> dict[str, Any]:
    leg = call.inbound_leg
    assert leg is not None  # the registry's inbound index only holds calls with one
    callee = _callee(call)
    return {
        "inboundid": leg.id,
        "from": leg.from_number,
        "to": leg.to_number,
        "trunk": leg.trunk or "",
        "callee": [callee] if callee_as_list else callee,
        "status": leg.status.value,
    }


async def outbound_query(req: ApiRequest) -> Mapping[str, Any]:
    legs = req.ctx.registry.outbound_legs(parse_ids(req.text("outboundid")))
    return {"outbound": [outbound_view(leg) for leg in legs]}


async def inbound_query(req: ApiRequest) -> Mapping[str, Any]:
    calls = req.ctx.registry.inbound(parse_ids(req.text("inboundid")))
    as_list = req.dialect.callee_as_list
    return {"inbound": [inbound_view(c, as_list) for c in calls]}


ENDPOINTS = [
    Endpoint("outbound/query", outbound_query),
    Endpoint("inbound/query", inbound_query),
]
