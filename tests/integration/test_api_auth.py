"""login / heartbeat / logout over real HTTP: expiry, sliding renewal, lockout, sessions."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from ippbx.api.sessions import FORGET_AFTER, md5_hex

if TYPE_CHECKING:
    from conftest import ApiHarness

pytestmark = pytest.mark.asyncio(loop_scope="session")

OV = "/api/v0.0.1"
YS = "/api/v1.1.0"
GOOD = md5_hex("apipass")


async def call(api: ApiHarness, path: str, body: Any = None) -> dict[str, Any]:
    content = json.dumps(body).encode() if isinstance(body, dict) else body
    response = await api.post(path, content=content)
    assert response.status_code == 200
    return response.json()


async def outbound(api: ApiHarness, token: str, base: str = OV) -> str:
    answer = await call(api, f"{base}/outbound/query?token={token}")
    return answer["status"] if answer["status"] == "Success" else answer["errno"]


async def test_login_records_the_session(api: ApiHarness) -> None:
    body = {"username": "api", "password": GOOD, "port": 8260, "version": "1.0.2",
            "url": "172.16.6.150:8260", "urltag": 1}
    token = (await call(api, f"{YS}/login", body))["token"]
    session = api.ctx.sessions.check(token)
    assert (session.dialect, session.source_ip, session.port, session.url, session.urltag,
            session.version) == ("yeastar", "127.0.0.1", "8260", "172.16.6.150:8260", "1",
                                 "1.0.2")


async def test_token_slides_with_use_then_expires(api: ApiHarness) -> None:
    token = await api.login()
    for _ in range(3):
        api.clock.advance(1799)
        assert await outbound(api, token) == "Success"
    api.clock.advance(1800)
    assert await outbound(api, token) == "20006"
    assert await outbound(api, token, YS) == "20006"
    assert (await call(api, f"{OV}/heartbeat?token={token}"))["errno"] == "20006"
    api.clock.advance(FORGET_AFTER)
    assert await outbound(api, token) == "20004"


async def test_heartbeat_renews_and_updates(api: ApiHarness) -> None:
    token = await api.login()
    api.clock.advance(1700)
    assert await call(api, f"{OV}/heartbeat?token={token}") == {"status": "Success"}
    api.clock.advance(1700)
    assert await call(api, f"{OV}/heartbeat?token={token}", {}) == {"status": "Success"}
    body = {"ipaddr": "172.16.6.150", "port": 8280, "url": "172.16.6.150:8280", "urlflag": "1"}
    assert await call(api, f"{YS}/heartbeat?token={token}", body) == {"status": "Success"}
    session = api.ctx.sessions.check(token)
    assert (session.report_ip, session.port, session.url, session.urltag) == (
        "172.16.6.150", "8280", "172.16.6.150:8280", "1")
    xml = b"<xml><port>8290</port><urltag>0</urltag></xml>"
    response = await api.post(f"{OV}/heartbeat?token={token}&type=xml", content=xml)
    assert b"<status>Success</status>" in response.content
    assert (session.port, session.urltag, session.url) == ("8290", "0", "172.16.6.150:8280")
    bad = await call(api, f"{OV}/heartbeat?token={token}", {"port": "80000"})
    assert bad == {"status": "Failed", "errno": "20008"}


async def test_two_sessions_and_logout_of_one(api: ApiHarness) -> None:
    a = await api.login("v0.0.1")
    b = await api.login("v1.1.0")
    assert a != b
    assert await outbound(api, a) == await outbound(api, b, YS) == "Success"
    assert await call(api, f"{OV}/logout?token={a}") == {"status": "Success"}
    assert await outbound(api, a) == "20004"
    assert await outbound(api, b, YS) == "Success"
    assert await outbound(api, b, OV) == "Success"  # a token works under either prefix
    assert (await call(api, f"{OV}/logout?token={a}"))["errno"] == "20004"
    assert (await call(api, f"{YS}/logout"))["errno"] == "20005"


async def test_lockout_and_its_end_after_ten_minutes(api: ApiHarness) -> None:
    bad = {"username": "api", "password": md5_hex("nope")}
    good = {"username": "api", "password": GOOD}
    for _ in range(5):
        assert (await call(api, f"{OV}/login", bad))["errno"] == "30003"
    assert (await call(api, f"{OV}/login", good))["errno"] == "20002"
    assert (await call(api, f"{YS}/login", good))["errno"] == "20002"
    api.clock.advance(599)
    assert (await call(api, f"{OV}/login", good))["errno"] == "20002"
    api.clock.advance(1)
    assert (await call(api, f"{OV}/login", good))["status"] == "Success"


async def test_success_resets_the_failure_count(api: ApiHarness) -> None:
    bad = {"username": "api", "password": "x"}
    for _ in range(4):
        assert (await call(api, f"{YS}/login", bad))["errno"] == "20003"
    await api.login()
    for _ in range(4):
        assert (await call(api, f"{YS}/login", bad))["errno"] == "20003"
    await api.login()


async def test_lockout_settings_come_from_config(api: ApiHarness) -> None:
    config = api.ctx.config
    api_section = config.api.model_copy(update={"lockout_failures": 2, "lockout_seconds": 60})
    api.reset(config.model_copy(update={"api": api_section}), api.clock)
    bad = {"username": "api", "password": "x"}
    for _ in range(2):
        await call(api, f"{OV}/login", bad)
    assert (await call(api, f"{OV}/login", {"username": "api", "password": GOOD}))[
        "errno"
    ] == "20002"
    api.clock.advance(60)
    await api.login()


@pytest.mark.parametrize(
    ("allowed", "errno"),
    [(["10.0.0.0/8"], "20002"), (["127.0.0.0/8"], None), (["::1", "127.0.0.1"], None)],
)
async def test_allowed_ips(api: ApiHarness, allowed: list[str], errno: str | None) -> None:
    config = api.ctx.config
    api_section = config.api.model_copy(update={"allowed_ips": allowed})
    api.reset(config.model_copy(update={"api": api_section}), api.clock)
    for base in (OV, YS):
        answer = await call(api, f"{base}/login", {"username": "api", "password": GOOD})
        assert answer.get("errno") == errno


async def test_tokens_never_reach_the_logs(
    api: ApiHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = await api.login()
    await call(api, f"{OV}/outbound/query?token={token}", b"{broken")
    await call(api, f"{OV}/logout?token={token}")
    await call(api, f"{OV}/logout?token={token}")
    server_logs = "\n".join(
        r.getMessage() for r in caplog.records if r.name.startswith(("ippbx", "uvicorn"))
    )  # (httpx, the client, does log its URLs)
    assert "20004" in server_logs  # failures are logged at debug level...
    assert token not in server_logs  # ...without the token


async def test_allowed_ips_gate_every_request_not_only_login(api: ApiHarness) -> None:
    """A token obtained from an allowed address is refused (20002) from any other one."""
    config = api.ctx.config
    api_section = config.api.model_copy(update={"allowed_ips": ["127.0.0.2/32"]})
    api.reset(config.model_copy(update={"api": api_section}), api.clock)
    base = str(api.client.base_url)
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=base, transport=transport, timeout=5) as allowed:
        body = {"username": "api", "password": GOOD}
        token = (await allowed.post(f"{OV}/login", json=body)).json()["token"]
        answer = (await allowed.post(f"{OV}/outbound/query?token={token}")).json()
        assert answer == {"status": "Success", "outbound": []}
    for path in (f"{OV}/outbound/query?token={token}", f"{YS}/inbound/query?token={token}",
                 f"{OV}/heartbeat?token={token}", f"{OV}/outbound/query"):
        assert await call(api, path) == {"status": "Failed", "errno": "20002"}, path


@pytest.mark.parametrize("port", ["9" * 5001, "1" + "0" * 5000, "65536", "-1", "8 260"])
async def test_a_port_that_is_no_port_is_20008_not_a_crash(
    api: ApiHarness, port: str, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"username": "api", "password": GOOD, "port": port}
    assert await call(api, f"{OV}/login", body) == {"status": "Failed", "errno": "20008"}
    token = await api.login()
    answer = await call(api, f"{OV}/heartbeat?token={token}", {"port": port})
    assert answer == {"status": "Failed", "errno": "20008"}
    assert not [r for r in caplog.records if r.exc_info]  # no traceback logged


async def test_a_content_length_of_thousands_of_digits_is_refused(
    api: ApiHarness, caplog: pytest.LogCaptureFixture
) -> None:
    """Sent raw (an HTTP client would not): an answer, no traceback, the server goes on."""
    url = api.client.base_url
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(b"POST /api/v0.0.1/login HTTP/1.1\r\nHost: x\r\nContent-Length: "
                 + b"9" * 5000 + b"\r\n\r\n{}")
    await writer.drain()
    head = await asyncio.wait_for(reader.read(4096), 5)
    writer.close()
    assert head.startswith((b"HTTP/1.1 400", b"HTTP/1.1 200"))
    if head.startswith(b"HTTP/1.1 200"):
        assert head.endswith(b'{"status":"Failed","errno":"10002"}')
    assert not [r for r in caplog.records if r.exc_info]
    await api.login()  # still serving
