"""`cdr/get_random` and `cdr/download`: the CDR store as CSV, behind a one-time random.

`cdr/get_random {extid, starttime, endtime, allowedip?}` checks the query and answers it
back with a `random` valid 30 s, once. `extid` is `all`, one extension or a comma list;
times are `YYYY-MM-DD HH:MM:SS` in the PBX's time zone (20019 otherwise), both ends
included; `allowedip` (20015 if not an address) adds one address allowed to download
besides the session's own (its login source and heartbeat `ipaddr`).

`cdr/download?extid=…&starttime=…&endtime=…&token=…&random=…` (GET, a plain link, or
POST) answers `text/csv` with a header row and one row per call that started in the
range on one of the extensions (either side), oldest first. The random is checked
against the token and, when the link repeats them, against extid/starttime/endtime
(20020 otherwise, or when it is unknown, expired or used); a download from another
address is 20015; no matching CDR is 20021. Errors are the usual JSON envelope.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from ippbx.api.errors import ApiError, Errno
from ippbx.api.request import ApiRequest, Endpoint, FileReply
from ippbx.pbx import cdr

CSV_COLUMNS = ("callid", "timestart", "callfrom", "callto", "callduraction",
               "talkduraction", "status", "type", "srctrunkname", "desttrunkname", "hangupby")
_TICKET_KIND = "cdr"
_FORMULA_STARTS = frozenset("=+-@\t\r")
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+")


def cell(text: str) -> str:
    """A CSV cell a spreadsheet will not run: text starting with = + - @ (or a tab or CR),
    a caller id `=1+2` say, gets a leading apostrophe (OWASP's CSV injection advice); a
    plain number such as `+15551234` is a number to a spreadsheet and stays as it is."""
    if text[:1] in _FORMULA_STARTS and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def _extensions(extid: str) -> list[str] | None:
    parts = [p.strip() for p in extid.split(",") if p.strip()]
    if not parts or any(p.lower() == "all" for p in parts):
        return None
    return list(dict.fromkeys(parts))


def _time(req: ApiRequest, name: str) -> tuple[str, float]:
    text = req.require(name).strip()
    try:
        return text, cdr.parse_local_time(text, cdr.zone(req.ctx.config.pbx.timezone))
    except ValueError:
        raise ApiError(Errno.CDR_TIME_FORMAT, f"{name} must be YYYY-MM-DD HH:MM:SS") from None


def download_addresses(req: ApiRequest) -> frozenset[str]:
    """Who may use a download random: the session's login source and heartbeat `ipaddr`,
    plus the request's `allowedip` (20015 if it is not an address)."""
    addresses = set()
    session = req.session
    if session is not None:
        addresses |= {session.source_ip, session.report_ip}
    allowed = (req.text("allowedip") or "").strip()
    if allowed:
        try:
            addresses.add(str(ipaddress.ip_address(allowed)))
        except ValueError:
            raise ApiError(Errno.BAD_ALLOWED_IP, "allowedip is not an address") from None
    return frozenset(addresses)


def get_random(req: ApiRequest) -> Mapping[str, Any]:
    extid = req.require("extid").strip()
    start_text, start = _time(req, "starttime")
    end_text, end = _time(req, "endtime")
    addresses = download_addresses(req)
    params = {"extid": extid, "starttime": start_text, "endtime": end_text,
              "start": start, "end": end}
    random = req.ctx.downloads.issue(req.token or "", _TICKET_KIND, params, addresses)
    return {"extid": extid, "starttime": start_text, "endtime": end_text, "random": random}


def download(req: ApiRequest) -> FileReply:
    random = (req.text("random") or "").strip()
    ticket = req.ctx.downloads.redeem(random, req.token or "", _TICKET_KIND) if random else None
    if ticket is None:
        raise ApiError(Errno.CDR_RANDOM_INVALID)
    params = ticket.params
    for name in ("extid", "starttime", "endtime"):
        given = req.text(name)
        if given is not None and given.strip() and given.strip() != params[name]:
            raise ApiError(Errno.CDR_RANDOM_INVALID, f"{name} differs from the random's")
    if req.client_ip not in ticket.addresses:
        raise ApiError(Errno.BAD_ALLOWED_IP, "address not allowed to download")
    store = req.ctx.store
    if store is None:
        raise ApiError(Errno.CDR_NOT_FOUND)
    records = store.cdrs(params["start"], params["end"] + 0.999999,
                         _extensions(params["extid"]))
    if not records:
        raise ApiError(Errno.CDR_NOT_FOUND)
    tz = cdr.zone(req.ctx.config.pbx.timezone)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for r in records:
        writer.writerow((r.callid, cdr.local_time(r.start, tz), cell(r.callfrom),
                         cell(r.callto), r.duration, r.talk, r.status, r.type, r.src_trunk,
                         r.dst_trunk, r.hangup_by))
    return FileReply(out.getvalue().encode("utf-8"), "text/csv; charset=utf-8", "cdr.csv")


ENDPOINTS = [
    Endpoint("cdr/get_random", get_random),
    Endpoint("cdr/download", download, methods=frozenset({"GET", "POST"})),
]
