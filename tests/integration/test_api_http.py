"""The HTTP envelope over real HTTP: CORS headers, OPTIONS, 404, errnos, malformed input."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

from ippbx.api.codec import MAX_BODY
from ippbx.api.sessions import md5_hex

if TYPE_CHECKING:
    from conftest import ApiHarness

pytestmark = pytest.mark.asyncio(loop_scope="session")

CORS = {
    "access-control-allow-origin": "*",
    "access-control-allow-methods": "GET, POST, OPTIONS, PUT, DELETE",
}
OV = "/api/v0.0.1"
YS = "/api/v1.1.0"
GOOD = md5_hex("apipass")
LOGIN = json.dumps({"username": "api", "password": GOOD}).encode()


def envelope(response: Any) -> dict[str, str]:
    """Check status 200, CORS, content type, and return the decoded envelope (JSON or XML)."""
    assert response.status_code == 200, response.text
    for name, value in CORS.items():
        assert response.headers[name] == value
    ctype = response.headers["content-type"]
    text = response.text
    assert "Traceback" not in text
    if ctype == "application/json; charset=utf-8":
        return json.loads(text)
    assert ctype == "application/xml; charset=utf-8"
    assert text.startswith('<?xml version="1.0" encoding="UTF-8" ?>\n<xml>\n    <status>')
    from ippbx.api.codec import decode_xml

    return decode_xml(response.content)


async def raw_request(api: ApiHarness, request: bytes) -> bytes:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", api.server.port), timeout=5
    )
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout=5)
    finally:
        writer.close()


async def test_raw_wire_headers(api: ApiHarness) -> None:
    """What really goes out: the vendor's header names, exactly as it writes them."""
    raw = await raw_request(
        api,
        b"POST /api/v0.0.1/login HTTP/1.1\r\nHost: pbx\r\nContent-Length: 2\r\n"
        b"Connection: close\r\n\r\n{}",
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    assert b"Access-control-allow-origin: *" in lines
    assert b"Access-control-allow-methods: GET, POST, OPTIONS, PUT, DELETE" in lines
    assert b"Content-Type: application/json; charset=utf-8" in lines
    assert b"Content-Length: 35" in lines and b"Connection: close" in lines
    assert body == b'{"status":"Failed","errno":"10004"}'
    assert not any(line.lower().startswith(b"server:") for line in lines)


@pytest.mark.parametrize("path", ["/", "/api/v0.0.1/login", "/anything/else", "/api/v9/x"])
async def test_options_preflight_on_any_path(api: ApiHarness, path: str) -> None:
    response = await api.client.options(path)
    assert response.status_code == 200
    assert response.content == b""
    for name, value in CORS.items():
        assert response.headers[name] == value
    assert response.headers["access-control-allow-headers"] == "Content-Type"


@pytest.mark.parametrize(
    "path", ["/", "/api", "/apix/v0.0.1/login", "/v0.0.1/login", "/favicon.ico"]
)
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_outside_api_is_http_404(api: ApiHarness, path: str, method: str) -> None:
    response = await api.client.request(method, path)
    assert response.status_code == 404
    for name, value in CORS.items():
        assert response.headers[name] == value


async def test_login_succeeds_in_both_dialects_and_formats(api: ApiHarness) -> None:
    for version in ("v0.0.1", "v1.1.0"):
        answer = envelope(await api.post(f"/api/{version}/login", content=LOGIN))
        assert answer["status"] == "Success" and len(answer["token"]) == 32
    xml = f"<xml><username>api</username><password>{GOOD}</password></xml>".encode()
    response = await api.post(f"{OV}/login?type=xml", content=xml)
    assert response.headers["content-type"] == "application/xml; charset=utf-8"
    assert envelope(response)["status"] == "Success"
    # without ?type= a body starting with "<" is XML, and the answer follows
    response = await api.post(f"{OV}/login", content=b"\n  " + xml)
    assert response.headers["content-type"] == "application/xml; charset=utf-8"
    # Content-Type is ignored: type=json with an XML content type is JSON
    response = await api.post(
        f"{OV}/login?type=json", content=LOGIN, headers={"content-type": "application/xml"}
    )
    assert envelope(response)["status"] == "Success"


async def test_bad_credentials_errno_per_dialect(api: ApiHarness) -> None:
    bad = json.dumps({"username": "api", "password": md5_hex("wrong")})
    assert envelope(await api.post(f"{OV}/login", content=bad))["errno"] == "30003"
    assert envelope(await api.post(f"{YS}/login", content=bad))["errno"] == "20003"
    bad_xml = b"<xml><username>api</username><password>x</password></xml>"
    answer = envelope(await api.post(f"{OV}/login?type=xml", content=bad_xml))
    assert answer == {"status": "Failed", "errno": "30003"}


async def test_failure_in_xml_is_exact(api: ApiHarness) -> None:
    response = await api.post(f"{OV}/outbound/query?type=xml")
    assert response.content == (
        b'<?xml version="1.0" encoding="UTF-8" ?>\n<xml>\n    <status>Failed</status>\n'
        b"    <errno>20005</errno>\n</xml>\n"
    )


@pytest.mark.parametrize("version", ["v0.0.1", "v1.1.0"])
async def test_token_errnos(api: ApiHarness, version: str) -> None:
    base = f"/api/{version}/outbound/query"
    assert envelope(await api.post(base))["errno"] == "20005"
    assert envelope(await api.post(f"{base}?token="))["errno"] == "20005"
    assert envelope(await api.post(f"{base}?token={'0' * 32}"))["errno"] == "20004"
    token = await api.login(version)
    assert envelope(await api.post(f"{base}?token={token}"))["status"] == "Success"
    api.clock.advance(1800)
    assert envelope(await api.post(f"{base}?token={token}"))["errno"] == "20006"


async def test_bearer_token(api: ApiHarness) -> None:
    token = await api.login()
    headers = {"Authorization": f"Bearer {token}"}
    answer = envelope(await api.post(f"{OV}/outbound/query", headers=headers))
    assert answer == {"status": "Success", "outbound": []}


async def _chunks(size: int) -> AsyncIterator[bytes]:
    for _ in range(size // 65536):
        yield b" " * 65536


def _bomb() -> bytes:
    return b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<xml><username>&lol3;</username><password>x</password></xml>"""


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<xml><username>&xxe;</username><password>x</password></xml>"""

BIG = b'{"username":"api","password":"' + b"x" * (1 << 20) + b'"}'

# (id, method, path, body, expected errno)
MALFORMED: list[tuple[str, str, str, bytes | None, str]] = [
    ("broken-json-ov", "POST", f"{OV}/login", b'{"username": "api",', "10002"),
    ("broken-json-ov-typed", "POST", f"{OV}/login?type=json", b"{'a': 1}", "10002"),
    ("broken-json-ys", "POST", f"{YS}/login", b'{"username": "api",', "20000"),
    ("broken-xml-typed", "POST", f"{OV}/login?type=xml", b"<xml><username>api</xml>", "10002"),
    ("broken-xml-sniffed", "POST", f"{OV}/login", b"<xml><username>", "10002"),
    ("json-under-type-xml", "POST", f"{OV}/login?type=xml", LOGIN, "10002"),
    ("billion-laughs", "POST", f"{OV}/login?type=xml", _bomb(), "10002"),
    ("billion-laughs-sniffed", "POST", f"{OV}/login", _bomb(), "10002"),
    ("xxe-file", "POST", f"{OV}/login?type=xml", XXE, "10002"),
    ("doctype", "POST", f"{OV}/login?type=xml", b"<!DOCTYPE xml><xml><a>1</a></xml>", "10002"),
    ("xml-to-yeastar", "POST", f"{YS}/login", b"<xml><username>api</username></xml>", "20000"),
    ("xml-type-to-yeastar", "POST", f"{YS}/login?type=xml", LOGIN, "20000"),
    ("json-array", "POST", f"{OV}/login", b'[{"username":"api"}]', "10002"),
    ("json-array-ys", "POST", f"{YS}/login", b"[]", "20000"),
    ("json-number", "POST", f"{OV}/login", b"42", "10002"),
    ("json-string", "POST", f"{OV}/login", b'"api"', "10002"),
    ("json-null", "POST", f"{OV}/login", b"null", "10002"),
    ("json-nan", "POST", f"{OV}/login", b'{"username": NaN}', "10002"),
    ("json-deep", "POST", f"{OV}/login", b"[" * 30000 + b"]" * 30000, "10002"),
    ("json-surrogate", "POST", f"{OV}/login", b'{"username":"\\ud800","password":"x"}', "10002"),
    ("not-utf8", "POST", f"{OV}/login", b'{"username":"\xff\xfe"}', "10002"),
    ("numbers-for-strings", "POST", f"{OV}/login", b'{"username":123,"password":456}', "30003"),
    ("bool-for-string", "POST", f"{OV}/login", b'{"username":true,"password":"x"}', "10004"),
    ("object-for-string", "POST", f"{OV}/login", b'{"username":{},"password":"x"}', "10004"),
    ("missing-password", "POST", f"{OV}/login", b'{"username":"api"}', "10004"),
    ("empty-object", "POST", f"{YS}/login", b"{}", "10004"),
    ("empty-xml", "POST", f"{OV}/login?type=xml", b"<xml></xml>", "10004"),
    ("empty-body", "POST", f"{OV}/login", b"", "20007"),
    ("blank-body-ys", "POST", f"{YS}/login", b" \r\n", "20007"),
    ("bad-port", "POST", f"{OV}/login", b'{"username":"api","password":"x","port":"99999"}',
     "20008"),
    ("1mib-body", "POST", f"{OV}/login", BIG, "10002"),
    ("1mib-body-ys", "POST", f"{YS}/login", BIG, "10002"),
    ("just-over-limit", "POST", f"{OV}/login", b" " * (MAX_BODY + 1), "10002"),
    ("unknown-endpoint", "POST", f"{OV}/nope/query", LOGIN, "10003"),
    ("unknown-endpoint-ys", "POST", f"{YS}/extension/frobnicate", b"", "10003"),
    ("no-endpoint", "POST", f"{OV}/", b"", "10003"),
    ("unknown-version", "POST", "/api/v9.9.9/login", LOGIN, "10003"),
    ("no-version", "POST", "/api/", b"", "10003"),
    ("get", "GET", f"{OV}/login", None, "20001"),
    ("get-ys", "GET", f"{YS}/outbound/query", None, "20001"),
    ("put", "PUT", f"{OV}/login", LOGIN, "20001"),
    ("delete", "DELETE", f"{OV}/logout", None, "20001"),
    ("patch", "PATCH", f"{YS}/login", LOGIN, "20001"),
    ("get-unknown-endpoint", "GET", f"{OV}/nope", None, "20001"),
    ("odd-type", "POST", f"{OV}/login?type=yaml", LOGIN, "10002"),
    ("odd-type-nul", "POST", f"{OV}/login?type=%00", LOGIN, "10002"),
    ("odd-type-ys", "POST", f"{YS}/login?type=csv", LOGIN, "20000"),
    ("odd-type-twice", "POST", f"{OV}/login?type=json&type=yaml", LOGIN, "10002"),
    ("garbage-with-token-missing", "POST", f"{OV}/outbound/query", b"\x00\x01", "20005"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "errno"),
    [pytest.param(*case[1:], id=case[0]) for case in MALFORMED],
)
async def test_malformed_input_always_gets_the_envelope(
    api: ApiHarness, method: str, path: str, body: bytes | None, errno: str
) -> None:
    response = await api.client.request(method, path, content=body)
    assert envelope(response) == {"status": "Failed", "errno": errno}


async def test_streamed_1mib_body_is_cut_at_the_limit(api: ApiHarness) -> None:
    response = await api.post(f"{OV}/login", content=_chunks(1 << 20))
    assert envelope(response) == {"status": "Failed", "errno": "10002"}
    # the connection is still usable afterwards
    assert envelope(await api.post(f"{OV}/login", content=LOGIN))["status"] == "Success"


async def test_head_gets_20001_headers(api: ApiHarness) -> None:
    response = await api.client.head(f"{OV}/login")
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"


async def test_garbage_body_after_valid_token_is_10002(api: ApiHarness) -> None:
    token = await api.login()
    for body in (b"{", b"[]", b"<xml>"):
        response = await api.post(f"{OV}/outbound/query?token={token}", content=body)
        assert envelope(response)["errno"] == "10002"


class _BrokenRegistry:
    @property
    def changes(self) -> int:
        raise RuntimeError("boom")

    def outbound_legs(self, ids: object = None) -> list[object]:
        raise RuntimeError("boom")


async def test_unexpected_failure_is_30001_not_a_500(
    api: ApiHarness, caplog: pytest.LogCaptureFixture
) -> None:
    token = await api.login()
    api.ctx.registry = _BrokenRegistry()  # type: ignore[assignment]
    for fmt, expected in (("json", "30001"), ("xml", "30001")):
        response = await api.post(f"{OV}/outbound/query?token={token}&type={fmt}")
        assert envelope(response) == {"status": "Failed", "errno": expected}
    assert "RuntimeError: boom" in caplog.text  # logged with its traceback, server-side
