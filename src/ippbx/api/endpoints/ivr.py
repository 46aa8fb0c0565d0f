"""`ivr/query`: the auto attendants of the config (`[[ivrs]]`), as OpenVox shows them.

`name` picks IVRs by name or by number (the vendor's page says "number" and sends a
name; both are taken): one, a comma list, or absent/empty/`all` for every IVR in config
order. Listed ones come back in request order, each once. Names given of which none is
an IVR answer 10012 (an empty config with no name asked is an empty list).

Each IVR: `ivrid` (its number), `promptrepeat` (times the prompt plays), `responsetimeout`
(seconds waited for a key after it), `ivrname` and `prompt`.

Calls into an IVR, a ring group or a queue: `ivr/dial_extension {extid, ivrid}` rings
the extension, which once it answers is in the IVR's menu; `ivr/dial_outbound {outto,
ivrid, fromext?}`, `ringgroup/dial_outbound {ringgroupid, outto, fromext?}` and
`queue/dial_outbound {queueid, outto, fromext?}` call an external number (route prefix
included; `fromext`'s outbound permissions, else those open to all) and put it through
to the IVR / ring group / queue once it answers. Each answers the new call's `callid`.
10012 no such IVR, 10013 no such queue, 10014 no such ring group, 10006 the extension (or
`fromext`) is unknown or not registered, 10011 / 10024 the number has no route / not for
`fromext`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ippbx.api.codec import ItemList
from ippbx.api.endpoints.calls import parse_ids
from ippbx.api.endpoints.control import _control, _do
from ippbx.api.errors import ApiError, Errno
from ippbx.api.request import ApiRequest, Endpoint
from ippbx.config import Ivr


def ivr_view(ivr: Ivr) -> dict[str, Any]:
    return {"ivrid": ivr.number, "promptrepeat": ivr.repeat, "responsetimeout": ivr.timeout,
            "ivrname": ivr.name, "prompt": ivr.prompt}


def chosen(ivrs: list[Ivr], names: list[str]) -> list[Ivr]:
    """The IVRs `names` name (by name or number), in request order, each once."""
    out: dict[str, Ivr] = {}
    for name in names:
        for ivr in ivrs:
            if name in (ivr.name, ivr.number):
                out.setdefault(ivr.number, ivr)
    return list(out.values())


def query(req: ApiRequest) -> Mapping[str, Any]:
    ivrs = req.ctx.config.ivrs
    names = parse_ids(req.text("name"))
    if names is not None:
        ivrs = chosen(ivrs, names)
        if not ivrs:
            raise ApiError(Errno.IVR_NOT_FOUND)
    return {"ivr": ItemList(ivr_view(ivr) for ivr in ivrs)}


def _number_of(req: ApiRequest, field: str, numbers: list[str], missing: Errno) -> str:
    number = req.require(field).strip()
    if number not in numbers:
        raise ApiError(missing)
    return number


def dial_extension(req: ApiRequest) -> Mapping[str, Any]:
    ivr = _number_of(req, "ivrid", [i.number for i in req.ctx.config.ivrs],
                     Errno.IVR_NOT_FOUND)
    extid = req.require("extid")
    return {"callid": _do(_control(req).dial, extid, ivr)}


def dial_outbound(req: ApiRequest) -> Mapping[str, Any]:
    ivr = _number_of(req, "ivrid", [i.number for i in req.ctx.config.ivrs],
                     Errno.IVR_NOT_FOUND)
    outto = req.require("outto")
    return {"callid": _do(_control(req).dial_number, outto, ivr, req.text("fromext") or "")}


def ringgroup_dial_outbound(req: ApiRequest) -> Mapping[str, Any]:
    group = _number_of(req, "ringgroupid", [g.number for g in req.ctx.config.ring_groups],
                       Errno.RINGGROUP_NOT_FOUND)
    outto = req.require("outto")
    return {"callid": _do(_control(req).dial_number, outto, group,
                          req.text("fromext") or "")}


def queue_dial_outbound(req: ApiRequest) -> Mapping[str, Any]:
    queue = _number_of(req, "queueid", [q.number for q in req.ctx.config.queues],
                       Errno.QUEUE_NOT_FOUND)
    outto = req.require("outto")
    return {"callid": _do(_control(req).dial_number, outto, queue,
                          req.text("fromext") or "")}


ENDPOINTS = [
    Endpoint("ivr/query", query),
    Endpoint("ivr/dial_extension", dial_extension),
    Endpoint("ivr/dial_outbound", dial_outbound),
    Endpoint("ringgroup/dial_outbound", ringgroup_dial_outbound),
    Endpoint("queue/dial_outbound", queue_dial_outbound),
]
