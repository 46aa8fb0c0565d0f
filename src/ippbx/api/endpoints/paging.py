"""`paginggroup/lists` and `paginggroup/query`: the paging groups of the config
(`[[paging_groups]]`), as OpenVox shows them.

`paginggroup/lists` (also at the path the vendor's own example posts to,
`paginggrouplist/lists`) takes no field and answers `paginggrouplist`: each group's
`number` and `name`, in config order. `paginggroup/query` takes `number` (required): one
group number, a comma list, or `all`; it answers `paginggroup`: `number`, `name`, `type`
(`paging` one-way, `intercom` for `duplex = true`) and `member` (the member extensions,
a comma list). Listed groups come back in request order, each once, numbers that name
no group skipped; when none of them names one, 10011: the vendors' table has no "paging
group does not exist", and a group number is a number of the dial plan, so "called
number does not exist" is what an unknown one is (10014 would say ring group).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ippbx.api.codec import ItemList
from ippbx.api.endpoints.calls import parse_ids
from ippbx.api.errors import ApiError, Errno
from ippbx.api.request import ApiRequest, Endpoint
from ippbx.config import PagingGroup


def group_view(group: PagingGroup) -> dict[str, Any]:
    return {"number": group.number, "name": group.name,
            "type": "intercom" if group.duplex else "paging",
            "member": ",".join(group.members)}


def chosen(groups: list[PagingGroup], numbers: list[str]) -> list[PagingGroup]:
    """The groups `numbers` name, in request order, each once."""
    by_number = {g.number: g for g in groups}
    return [by_number[n] for n in dict.fromkeys(numbers) if n in by_number]


def lists(req: ApiRequest) -> Mapping[str, Any]:
    return {"paginggrouplist": ItemList({"number": g.number, "name": g.name}
                                        for g in req.ctx.config.paging_groups)}


def query(req: ApiRequest) -> Mapping[str, Any]:
    groups = req.ctx.config.paging_groups
    numbers = parse_ids(req.require("number"))
    if numbers is not None:
        groups = chosen(groups, numbers)
        if not groups:
            raise ApiError(Errno.NUMBER_NOT_FOUND, "no such paging group")
    return {"paginggroup": ItemList(group_view(g) for g in groups)}


ENDPOINTS = [
    Endpoint("paginggroup/lists", lists),
    Endpoint("paginggrouplist/lists", lists),  # (the path of the vendor's example)
    Endpoint("paginggroup/query", query),
]
