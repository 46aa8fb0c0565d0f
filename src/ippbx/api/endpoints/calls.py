"""`outbound/query` and `inbound/query`: live calls from the registry, in the caller's dialect.

No id, an empty id or `"all"` lists every live call (in creation order); a comma list
returns the listed calls still live, in request order, whitespace trimmed, duplicates
and unknown ids dropped. No match is a success with an empty list. Each call's item is
encoded once and reused until the call changes (`ippbx.api.call_views`).
"""

from __future__ import annotations

from ippbx.api.request import ApiRequest, EncodedList, Endpoint


def parse_ids(value: str | None) -> list[str] | None:
    """The ids of a query field, or None for "all live calls"."""
    if value is None:
        return None
    if "," not in value:  # one id (or all), the usual query
        one = value.strip()
        return [one] if one and one.lower() != "all" else None
    ids = [part.strip() for part in value.split(",")]
    ids = [i for i in ids if i]
    if not ids or (len(ids) == 1 and ids[0].lower() == "all"):
        return None
    return list(dict.fromkeys(ids))


def outbound_query(req: ApiRequest) -> EncodedList:
    ids = parse_ids(req.text("outboundid"))
    return req.ctx.views.outbound(req.ctx.registry, ids, req.fmt)


def inbound_query(req: ApiRequest) -> EncodedList:
    ids = parse_ids(req.text("inboundid"))
    return req.ctx.views.inbound(req.ctx.registry, ids, req.fmt, req.dialect.callee_as_list)


ENDPOINTS = [
    Endpoint("outbound/query", outbound_query),
    Endpoint("inbound/query", inbound_query),
]
