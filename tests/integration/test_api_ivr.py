"""ivr/query over real HTTP, JSON and XML, both dialects: the IVRs of the config, picked
by name or number, and 10012 when none of those asked for exists."""

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
number = "1001"
password = "secret1001"
[[ivrs]]
number = "6000"
name = "main_menu"
prompt = "welcome1"
timeout = 4
repeat = 2
options = { "1" = "extension:1001" }
[[ivrs]]
number = "6001"
name = "after_hours"
prompt = "closed"
timeout = 8
repeat = 1
[[ivrs]]
number = "6002"
"""

MAIN = {"ivrid": "6000", "promptrepeat": "2", "responsetimeout": "4", "ivrname": "main_menu",
        "prompt": "welcome1"}
AFTER = {"ivrid": "6001", "promptrepeat": "1", "responsetimeout": "8",
         "ivrname": "after_hours", "prompt": "closed"}
UNNAMED = {"ivrid": "6002", "promptrepeat": "2", "responsetimeout": "5", "ivrname": "",
           "prompt": "welcome"}  # the defaults


@pytest.fixture
def ivr_api(api: ApiHarness, clock: FakeClock) -> ApiHarness:
    api.reset(parse_config(CONFIG), clock)
    return api


async def ask(api: ApiHarness, version: str, body: Any, fmt: str | None = None,
              token: str | None = None) -> bytes:
    token = token or await api.login(version)
    url = f"/api/{version}/ivr/query?token={token}" + (f"&type={fmt}" if fmt else "")
    content = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    response = await api.post(url, content=content)
    assert response.status_code == 200
    return response.content


@pytest.mark.parametrize("version", VERSIONS)
async def test_ivr_query_by_name_or_number(ivr_api: ApiHarness, version: str) -> None:
    token = await ivr_api.login(version)

    async def query(body: Any) -> Any:
        return json.loads(await ask(ivr_api, version, body, token=token))

    for body in (None, {}, {"name": ""}, {"name": "all"}):
        assert await query(body) == {"status": "Success", "ivr": [MAIN, AFTER, UNNAMED]}
    answer = await query({"name": "main_menu"})
    assert answer == {"status": "Success", "ivr": [MAIN]}
    assert list(answer["ivr"][0]) == ["ivrid", "promptrepeat", "responsetimeout", "ivrname",
                                      "prompt"]
    assert (await query({"name": "6001"}))["ivr"] == [AFTER]
    assert (await query(b'{"name": 6002}'))["ivr"] == [UNNAMED]
    # a comma list: request order, each once, names nothing is called skipped
    assert (await query({"name": "6002, nope,main_menu,6000"}))["ivr"] == [UNNAMED, MAIN]
    assert await query({"name": "nope"}) == {"status": "Failed", "errno": "10012"}
    assert await query({"name": "nope,1001"}) == {"status": "Failed", "errno": "10012"}


async def test_ivr_query_xml(ivr_api: ApiHarness) -> None:
    answer = await ask(ivr_api, "v0.0.1", DECL + b"<xml><name>main_menu</name></xml>", "xml")
    assert answer == DECL + (
        b"<xml>\n"
        b"    <status>Success</status>\n"
        b"    <ivr>\n"
        b'        <item id="0">\n'
        b"            <ivrid>6000</ivrid>\n"
        b"            <promptrepeat>2</promptrepeat>\n"
        b"            <responsetimeout>4</responsetimeout>\n"
        b"            <ivrname>main_menu</ivrname>\n"
        b"            <prompt>welcome1</prompt>\n"
        b"        </item>\n"
        b"    </ivr>\n"
        b"</xml>\n"
    )
    assert await ask(ivr_api, "v0.0.1", b"<xml><name>nope</name></xml>", "xml") == (
        DECL + b"<xml>\n    <status>Failed</status>\n    <errno>10012</errno>\n</xml>\n")


async def test_no_ivrs(api: ApiHarness) -> None:
    api.ctx.config = api.ctx.config.model_copy(update={"ivrs": []})  # (the demo has one)
    assert json.loads(await ask(api, "v0.0.1", None)) == {"status": "Success", "ivr": []}
    assert await ask(api, "v0.0.1", None, "xml") == (
        DECL + b"<xml>\n    <status>Success</status>\n    <ivr></ivr>\n</xml>\n")
    assert json.loads(await ask(api, "v1.1.0", {"name": "6000"})) == {
        "status": "Failed", "errno": "10012"}
