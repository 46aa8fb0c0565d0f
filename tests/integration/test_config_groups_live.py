"""`ivr/update`, `queue/update` and `paginggroup/add|update|delete` over the real API of a
running ippbx: the change shows in the queries and in the live queue at once, survives a
restart, and bad changes answer the vendor's errno and change nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pbx_harness import PbxHarness

GROUPS = """
[[ivrs]]
number = "6000"
name = "main_menu"
[[queues]]
number = "6500"
name = "support"
agents = ["1001"]
[[paging_groups]]
number = "6700"
name = "floor"
members = ["1001", "1002"]
[[api.users]]
username = "ro"
password = "ropass"
"""


async def answer(pbx: PbxHarness, endpoint: str, body: dict[str, Any],
                 token: str | None = None) -> dict[str, Any]:
    url = f"{pbx.api_url}/{endpoint}?token={token or pbx.token}&type=json"
    result: dict[str, Any] = (await pbx.client.post(url, json=body)).json()
    return result


async def ok(pbx: PbxHarness, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    result = await answer(pbx, endpoint, body)
    assert result["status"] == "Success", (endpoint, body, result)
    return result


async def views(pbx: PbxHarness) -> list[dict[str, Any]]:
    return [await answer(pbx, "ivr/query", {}), await answer(pbx, "queue/query", {}),
            await answer(pbx, "paginggroup/query", {"number": "all"}),
            await answer(pbx, "queuestatus/query", {"queueid": "6500"})]


async def test_ivr_queue_and_paging_changes_apply_at_once_and_persist(
        tmp_path: Path) -> None:
    pbx = await PbxHarness.start(tmp_path, extra=GROUPS)
    try:
        await ok(pbx, "ivr/update", {"ivrid": "6000", "ivrname": "after_hours",
                                     "promptrepeat": "1", "responsetimeout": "6"})
        ivr = (await ok(pbx, "ivr/query", {"name": "6000"}))["ivr"][0]
        assert (ivr["ivrname"], ivr["promptrepeat"], ivr["responsetimeout"]) == \
            ("after_hours", "1", "6")

        await ok(pbx, "queue/update", {"queueid": "6500", "ringstrategy": "Least Recent",
                                       "agents": "1002,1003", "agenttimeout": "20",
                                       "maxwaittime": "600", "announcefreq": "0",
                                       "joinempty": "off"})
        queue = (await ok(pbx, "queue/query", {"queueid": "6500"}))["queues"][0]
        assert (queue["ringstrategy"], queue["agents"], queue["agenttimeout"],
                queue["maxwaittime"], queue["announcepos"], queue["joinempty"]) == \
            ("Least Recent", "1002,1003", "20", "600", "off", "off")
        # the live queue follows: its agents are the new static ones
        status = (await ok(pbx, "queuestatus/query", {"queueid": "6500"}))["queue"]
        assert [m["agent"] for m in status["queuestatus"]["members"]] == ["1002", "1003"]

        await ok(pbx, "paginggroup/add", {"number": "6701", "name": "warehouse",
                                          "type": "paging", "member": "1003,1004"})
        await ok(pbx, "paginggroup/update", {"number": "6700", "type": "intercom",
                                             "member": "1001,1002,1005"})
        groups = (await ok(pbx, "paginggroup/query", {"number": "all"}))["paginggroup"]
        assert groups == [
            {"number": "6700", "name": "floor", "type": "intercom", "member": "1001,1002,1005"},
            {"number": "6701", "name": "warehouse", "type": "paging", "member": "1003,1004"},
        ]
        assert pbx.app.paging.groups["6701"].members == ["1003", "1004"]  # (live)
        await ok(pbx, "paginggroup/delete", {"number": "6701"})
        assert (await answer(pbx, "paginggroup/query", {"number": "6701"})) == \
            {"status": "Failed", "errno": "10011"}
        before = await views(pbx)
    finally:
        await pbx.stop()
    again = await PbxHarness.start(tmp_path, extra=GROUPS)  # same store, same file
    try:
        assert await views(again) == before
    finally:
        await again.stop()


async def test_bad_group_changes_answer_the_vendor_errno_and_change_nothing(
        tmp_path: Path) -> None:
    pbx = await PbxHarness.start(tmp_path, extra=GROUPS)
    try:
        before = await views(pbx)
        for endpoint, body, errno in [
            ("ivr/update", {"ivrid": "6999", "ivrname": "x"}, 10012),
            ("ivr/update", {"ivrid": "6000", "ivrname": "has space"}, 10018),
            ("ivr/update", {"ivrid": "6000", "promptrepeat": "9"}, 10018),
            ("ivr/update", {"ivrid": "6000", "responsetimeout": "soon"}, 10018),
            ("ivr/update", {}, 10004),
            ("queue/update", {"queueid": "6999", "agents": "1001"}, 10013),
            ("queue/update", {"queueid": "6500", "ringstrategy": "Loudest"}, 10019),
            ("queue/update", {"queueid": "6500", "agents": "1001,1999"}, 10019),
            ("queue/update", {"queueid": "6500", "joinempty": "maybe"}, 10019),
            ("paginggroup/add", {"number": "1001", "name": "x", "type": "paging",
                                 "member": "1002"}, 10017),  # (an extension's number)
            ("paginggroup/add", {"number": "6702", "name": "x", "type": "radio",
                                 "member": "1002"}, 10017),
            ("paginggroup/add", {"number": "6702", "name": "x", "type": "paging",
                                 "member": "1999"}, 10017),
            ("paginggroup/update", {"number": "6799", "member": "1001"}, 10011),
            ("paginggroup/delete", {"number": "6700,6799"}, 10011),
        ]:
            result = await answer(pbx, endpoint, body)
            assert result == {"status": "Failed", "errno": str(errno)}, (endpoint, body)
        assert await views(pbx) == before

        # a readonly user changes nothing (10003), whatever it sends
        md5 = hashlib.md5(b"ropass").hexdigest()
        login = (await pbx.client.post(f"{pbx.api_url}/login?type=json",
                                       json={"username": "ro", "password": md5})).json()
        for endpoint, body in [("ivr/update", {"ivrid": "6000", "ivrname": "y"}),
                               ("queue/update", {"queueid": "6500", "agents": "1002"}),
                               ("paginggroup/add", {"number": "6703", "member": "1002"}),
                               ("paginggroup/delete", {"number": "all"})]:
            result = await answer(pbx, endpoint, body, token=login["token"])
            assert result == {"status": "Failed", "errno": "10003"}, endpoint
        assert await views(pbx) == before
    finally:
        await pbx.stop()
