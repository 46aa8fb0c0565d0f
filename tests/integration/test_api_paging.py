"""paginggroup/lists (and its documented typo path paginggrouplist/lists) and
paginggroup/query over real HTTP, JSON and XML, both dialects: the paging groups of the
config, `type` paging/intercom, `member` a comma list, and 10011 when none of the
numbers asked for is a group."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from ippbx.config import parse_config

if TYPE_CHECKING:
    from conftest import ApiHarness, FakeClock

pytestmark = pytest.mark.asyncio(loop_scope="session")

VERSIONS = ["v0.0.1", "v1.1.0"]
DECL = b'<?xml version="1.0" encoding="UTF-8" ?>\n'

CONFIG = """
[api]
password = "apipass"
[[extensions]]
number = "2101"
password = "secret2101"
[[extensions]]
number = "2102"
password = "secret2102"
[[extensions]]
number = "2150"
password = "secret2150"
[[paging_groups]]
number = "6401"
name = "floor2"
members = ["2101", "2102", "2150"]
duplex = true
[[paging_groups]]
number = "6402"
name = "warehouse"
members = ["2102"]
[[paging_groups]]
number = "6403"
members = ["2150", "2101"]
"""

FLOOR2 = {"number": "6401", "name": "floor2", "type": "intercom", "member": "2101,2102,2150"}
WAREHOUSE = {"number": "6402", "name": "warehouse", "type": "paging", "member": "2102"}
UNNAMED = {"number": "6403", "name": "", "type": "paging", "member": "2150,2101"}


@pytest.fixture
def paging_api(api: ApiHarness, clock: FakeClock) -> ApiHarness:
    api.reset(parse_config(CONFIG), clock)
    return api


async def ask(api: ApiHarness, version: str, path: str, body: Any, fmt: str | None = None,
              token: str | None = None) -> bytes:
    token = token or await api.login(version)
    url = f"/api/{version}/{path}?token={token}" + (f"&type={fmt}" if fmt else "")
    content = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    response = await api.post(url, content=content)
    assert response.status_code == 200
    return response.content


@pytest.mark.parametrize("version", VERSIONS)
async def test_paginggroup_lists(paging_api: ApiHarness, version: str) -> None:
    token = await paging_api.login(version)
    listed = [{"number": "6401", "name": "floor2"}, {"number": "6402", "name": "warehouse"},
              {"number": "6403", "name": ""}]
    for path in ("paginggroup/lists", "paginggrouplist/lists"):  # (the vendor's example's)
        for body in (None, {}):
            answer = json.loads(await ask(paging_api, version, path, body, token=token))
            assert answer == {"status": "Success", "paginggrouplist": listed}, (path, body)
            assert list(answer["paginggrouplist"][0]) == ["number", "name"]


@pytest.mark.parametrize("version", VERSIONS)
async def test_paginggroup_query(paging_api: ApiHarness, version: str) -> None:
    token = await paging_api.login(version)

    async def query(body: Any) -> Any:
        return json.loads(await ask(paging_api, version, "paginggroup/query", body,
                                    token=token))

    answer = await query({"number": "6401"})
    assert answer == {"status": "Success", "paginggroup": [FLOOR2]}
    assert list(answer["paginggroup"][0]) == ["number", "name", "type", "member"]
    assert await query({"number": "all"}) == {"status": "Success",
                                              "paginggroup": [FLOOR2, WAREHOUSE, UNNAMED]}
    assert (await query(b'{"number": 6402}'))["paginggroup"] == [WAREHOUSE]
    # a comma list: request order, each once, numbers that are no group skipped
    assert (await query({"number": "6403, 2101,6401,6403"}))["paginggroup"] == [UNNAMED,
                                                                                FLOOR2]
    # none is a group (an extension's number neither): 10011; no number: 10004
    for body in ({"number": "6499"}, {"number": "2101,6499"}):
        assert await query(body) == {"status": "Failed", "errno": "10011"}, body
    for body in (None, {}, {"number": ""}):
        assert await query(body) == {"status": "Failed", "errno": "10004"}, body


async def test_paging_xml(paging_api: ApiHarness) -> None:
    token = await paging_api.login("v0.0.1")
    answer = await ask(paging_api, "v0.0.1", "paginggroup/query",
                       DECL + b"<xml><number>6402,6401</number></xml>", "xml", token)
    assert answer == DECL + (
        b"<xml>\n"
        b"    <status>Success</status>\n"
        b"    <paginggroup>\n"
        b'        <item id="0">\n'
        b"            <number>6402</number>\n"
        b"            <name>warehouse</name>\n"
        b"            <type>paging</type>\n"
        b"            <member>2102</member>\n"
        b"        </item>\n"
        b'        <item id="1">\n'
        b"            <number>6401</number>\n"
        b"            <name>floor2</name>\n"
        b"            <type>intercom</type>\n"
        b"            <member>2101,2102,2150</member>\n"
        b"        </item>\n"
        b"    </paginggroup>\n"
        b"</xml>\n"
    )
    answer = await ask(paging_api, "v0.0.1", "paginggrouplist/lists", None, "xml", token)
    assert answer == DECL + (
        b"<xml>\n"
        b"    <status>Success</status>\n"
        b"    <paginggrouplist>\n"
        b'        <item id="0">\n'
        b"            <number>6401</number>\n"
        b"            <name>floor2</name>\n"
        b"        </item>\n"
        b'        <item id="1">\n'
        b"            <number>6402</number>\n"
        b"            <name>warehouse</name>\n"
        b"        </item>\n"
        b'        <item id="2">\n'
        b"            <number>6403</number>\n"
        b"            <name></name>\n"
        b"        </item>\n"
        b"    </paginggrouplist>\n"
        b"</xml>\n"
    )
    assert await ask(paging_api, "v0.0.1", "paginggroup/query",
                     b"<xml><number>6499</number></xml>", "xml", token) == (
        DECL + b"<xml>\n    <status>Failed</status>\n    <errno>10011</errno>\n</xml>\n")


async def test_no_paging_groups(api: ApiHarness) -> None:
    api.ctx.config = api.ctx.config.model_copy(update={"paging_groups": []})  # (demo: 6700)
    assert json.loads(await ask(api, "v0.0.1", "paginggroup/lists", None)) == {
        "status": "Success", "paginggrouplist": []}
    assert await ask(api, "v0.0.1", "paginggroup/lists", None, "xml") == (
        DECL + b"<xml>\n    <status>Success</status>\n    <paginggrouplist></paginggrouplist>\n"
        b"</xml>\n")
    assert json.loads(await ask(api, "v0.0.1", "paginggroup/query", {"number": "all"})) == {
        "status": "Success", "paginggroup": []}
    assert json.loads(await ask(api, "v1.1.0", "paginggroup/query", {"number": "6700"})) == {
        "status": "Failed", "errno": "10011"}


async def test_the_demo_group(api: ApiHarness) -> None:
    answer = json.loads(await ask(api, "v1.1.0", "paginggroup/query", {"number": "6700"}))
    assert answer == {"status": "Success", "paginggroup": [
        {"number": "6700", "name": "all", "type": "paging", "member": "1002,1003,1004"}]}
