"""cdr/get_random and cdr/download over real HTTP: CSV, filters, errnos, once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from ippbx.pbx.cdr import CdrRecord
from ippbx.store.sqlite import Store

if TYPE_CHECKING:
    from conftest import ApiHarness

pytestmark = pytest.mark.asyncio(loop_scope="session")

DAY = 1589932800.0  # 2020-05-20 00:00:00 UTC (the demo config's zone is UTC)
RANGE = {"starttime": "2020-05-20 00:00:00", "endtime": "2020-05-20 23:59:59"}


@pytest.fixture
def store(api: ApiHarness, monkeypatch: pytest.MonkeyPatch) -> Store:
    store = Store(":memory:")
    for i, (frm, to, ext_to) in enumerate([("1001", "1002", "1002"), ("1003", "95551234", ""),
                                           ("0123456", "1002", "1002")]):
        store.add_cdr(CdrRecord(f"1589958682.{i}0", DAY + 3600 * (i + 1), None,
                                DAY + 3600 * (i + 1) + 5, frm, to, 5, 0, "NO ANSWER",
                                "Internal", caller_ext=frm if frm.startswith("100") else "",
                                callee_ext=ext_to))
    store.add_cdr(CdrRecord("1589000000.1", DAY - 10, None, DAY - 5, "1001", "1002", 5, 0,
                            "BUSY", "Internal", caller_ext="1001", callee_ext="1002"))
    monkeypatch.setattr(api.ctx, "store", store)
    return store


async def get_random(api: ApiHarness, token: str, **body: str) -> dict[str, Any]:
    response = await api.post(f"/api/v0.0.1/cdr/get_random?token={token}", json=body)
    result: dict[str, Any] = response.json()
    return result


async def download(api: ApiHarness, token: str, random: str, **extra: str) -> Any:
    params = {"token": token, "random": random, **extra}
    return await api.client.get("/api/v0.0.1/cdr/download", params=params)


async def test_download_csv_by_extension_and_range(api: ApiHarness, store: Store) -> None:
    token = await api.login()
    answer = await get_random(api, token, extid="1002", **RANGE)
    assert list(answer) == ["status", "extid", "starttime", "endtime", "random"]
    assert answer["extid"] == "1002" and answer["starttime"] == RANGE["starttime"]
    response = await download(api, token, answer["random"], extid="1002", **RANGE)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="cdr.csv"'
    assert response.text.split("\r\n") == [
        "callid,timestart,callfrom,callto,callduraction,talkduraction,status,type,"
        "srctrunkname,desttrunkname,hangupby",
        "1589958682.00,2020-05-20 01:00:00,1001,1002,5,0,NO ANSWER,Internal,,,",
        "1589958682.20,2020-05-20 03:00:00,0123456,1002,5,0,NO ANSWER,Internal,,,",
        "",
    ]
    again = await download(api, token, answer["random"])
    assert again.json() == {"status": "Failed", "errno": "20020"}  # once

    answer = await get_random(api, token, extid="all", **RANGE)
    lines = (await download(api, token, answer["random"])).text.splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == [
        "1589958682.00", "1589958682.10", "1589958682.20"]


async def test_errors(api: ApiHarness, store: Store) -> None:
    token = await api.login()
    failed = {"status": "Failed"}
    assert await get_random(api, token, extid="all", starttime="2020-05-20",
                            endtime=RANGE["endtime"]) == {**failed, "errno": "20019"}
    assert await get_random(api, token, extid="all", **RANGE, allowedip="nope") == {
        **failed, "errno": "20015"}
    assert await get_random(api, token, **RANGE) == {**failed, "errno": "10004"}
    assert (await download(api, token, "0" * 32)).json() == {**failed, "errno": "20020"}
    empty = await get_random(api, token, extid="1005", **RANGE)
    assert (await download(api, token, empty["random"])).json() == {**failed, "errno": "20021"}
    other = await api.login()
    answer = await get_random(api, token, extid="all", **RANGE)
    assert (await download(api, other, answer["random"])).json() == {**failed,
                                                                     "errno": "20020"}
    answer = await get_random(api, token, extid="all", **RANGE)
    changed = await download(api, token, answer["random"], extid="1001")
    assert changed.json() == {**failed, "errno": "20020"}
    api.ctx.sessions.check(token).source_ip = "10.9.9.9"  # the app server is elsewhere
    answer = await get_random(api, token, extid="all", **RANGE)
    assert (await download(api, token, answer["random"])).json() == {**failed, "errno": "20015"}
    answer = await get_random(api, token, extid="all", **RANGE, allowedip="127.0.0.1")
    assert (await download(api, token, answer["random"])).status_code == 200
    response = await api.client.get("/api/v0.0.1/cdr/download", params={"random": "x"})
    assert response.json() == {**failed, "errno": "20005"}


async def test_a_caller_id_that_is_a_formula_is_not_one_in_the_csv(
    api: ApiHarness, store: Store
) -> None:
    """A caller id such as `=1+2` (anyone calling the DID chooses it) would run as a
    formula in the spreadsheet an admin opens the CSV with; a plain number stays."""
    for i, frm in enumerate(["=1+2", "+15551234", "@SUM(A1)", "-2+3", "-15"]):
        store.add_cdr(CdrRecord(f"1589960000.{i}", DAY + 7200 + i, None, DAY + 7205 + i, frm,
                                "1002", 5, 0, "NO ANSWER", "Inbound", callee_ext="1002"))
    token = await api.login()
    answer = await get_random(api, token, extid="1002", starttime="2020-05-20 02:00:00",
                              endtime="2020-05-20 02:00:59")
    response = await download(api, token, answer["random"])
    callers = [line.split(",")[2] for line in response.text.split("\r\n")[1:] if line]
    assert callers == ["'=1+2", "+15551234", "'@SUM(A1)", "'-2+3", "-15"]
