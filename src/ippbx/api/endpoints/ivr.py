"""`ivr/query`: the auto attendants of the config (`[[ivrs]]`), as OpenVox shows them.

`name` picks IVRs by name or by number (the vendor's page says "number" and sends a
name; both are taken): one, a comma list, or absent/empty/`all` for every IVR in config
order. Listed ones come back in request order, each once. Names given of which none is
an IVR answer 10012 (an empty config with no name asked is an empty list).

Each IVR: `ivrid` (its number), `promptrepeat` (times the prompt plays), `responsetimeout`
(seconds waited for a key after it), `ivrname` and `prompt`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ippbx.api.codec import ItemList
from ippbx.api.endpoints.calls import parse_ids
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


ENDPOINTS = [Endpoint("ivr/query", query)]
