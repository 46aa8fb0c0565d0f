"""The OpenAPI description (`ippbx.api.openapi`): a valid 3.1 document covering every
endpoint on both prefixes, whose answer schemas match what the API answers (in process,
JSON and XML), and the endpoint table of docs/api.md generated from it."""

from __future__ import annotations

import json
import re
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from xml.etree import ElementTree

import jsonschema
import pytest
from openapi_spec_validator import validate

from ippbx.api import openapi
from ippbx.api.api_schemas import DOCS, ERRNO_TEXT
from ippbx.api.codec import decode_xml
from ippbx.api.dialects import DIALECTS, ENDPOINTS, OPENVOX, YEASTAR
from ippbx.api.errors import Errno
from ippbx.api.http_app import ApiApp
from ippbx.api.http_server import HttpRequest
from ippbx.api.request import ApiContext, Endpoint
from ippbx.api.sessions import SessionManager, md5_hex
from ippbx.config import load_config
from ippbx.media.recordings import Recordings
from ippbx.pbx.calls import CallRegistry, Leg, LegKind, LegStatus
from ippbx.pbx.cdr import CdrRecord
from ippbx.pbx.mailboxes import Mailboxes
from ippbx.store.sqlite import Store

DOCS_API = Path(__file__).resolve().parents[3] / "docs" / "api.md"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return openapi.document()


def test_the_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    assert doc["openapi"] == "3.1.0"
    validate(doc)
    json.loads(openapi.body())  # (what is served is the same document, as JSON)
    assert json.loads(openapi.body()) == json.loads(json.dumps(doc))


def test_every_endpoint_is_on_both_prefixes_with_its_methods(doc: dict[str, Any]) -> None:
    expected = {f"/api/{d.version}/{name}": {m.lower() for m in e.methods}
                for d in DIALECTS.values() for name, e in ENDPOINTS.items()}
    api_paths = {p: set(item) for p, item in doc["paths"].items() if p != openapi.PATH}
    assert api_paths == expected
    assert set(doc["paths"][openapi.PATH]) == {"get"}


def test_every_endpoint_is_described_and_no_description_is_stale() -> None:
    assert openapi.undescribed() == []
    assert set(DOCS) == set(ENDPOINTS)


def test_an_endpoint_without_description_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = {**ENDPOINTS, "new/thing": Endpoint("new/thing", lambda req: {})}
    monkeypatch.setattr(openapi, "ENDPOINTS", extra)
    assert openapi.undescribed() == ["new/thing"]
    with pytest.raises(LookupError, match="new/thing"):
        openapi.document()


def test_every_errno_and_handler_module_is_named() -> None:
    assert set(ERRNO_TEXT) == set(Errno)
    modules = {e.handler.__module__.rpartition(".")[2] for e in ENDPOINTS.values()}
    assert modules <= set(openapi.TAGS)


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        if path != openapi.PATH:
            for method, operation in item.items():
                yield path, method, operation


def test_xml_only_on_openvox(doc: dict[str, Any]) -> None:
    for path, _, operation in _operations(doc):
        xml = path.startswith("/api/v0.0.1/")
        content = operation["responses"]["200"]["content"]
        assert ("application/xml" in content) == xml, path
        assert "application/json" in content
        body = operation.get("requestBody", {}).get("content", {})
        assert ("application/xml" in body) == (xml and bool(body)), path
        types = next(p for p in operation["parameters"] if p["name"] == "type")
        assert types["schema"]["enum"] == (["json", "xml"] if xml else ["json"])


def test_request_fields_and_security(doc: dict[str, Any]) -> None:
    for path, method, operation in _operations(doc):
        name = path.split("/", 3)[3]
        endpoint, fields = ENDPOINTS[name], DOCS[name].fields
        assert ("security" in operation) == (not endpoint.auth)
        if method == "get":  # a plain link: the fields are query parameters
            query = {p["name"]: p for p in operation["parameters"] if p["name"] != "type"}
            assert set(query) == set(fields)
            assert {n for n, p in query.items() if p["required"]} == \
                {n for n, f in fields.items() if f.required}
            continue
        body = operation.get("requestBody")
        if not fields and not endpoint.body_required:
            assert body is None, path
            continue
        assert body["required"] == endpoint.body_required
        schema = openapi.resolve(doc, body["content"]["application/json"]["schema"])
        assert set(schema["properties"]) == set(fields)
        assert set(schema.get("required", [])) == {n for n, f in fields.items() if f.required}


def _errnos(doc: dict[str, Any], path: str) -> set[str]:
    schema = openapi.resolve(doc, openapi.answer_schema(doc, path))
    failed = openapi.resolve(doc, schema["oneOf"][1])
    return set(failed["properties"]["errno"]["enum"])


def test_errnos_per_step_and_dialect(doc: dict[str, Any]) -> None:
    login_ov, login_ys = _errnos(doc, "/api/v0.0.1/login"), _errnos(doc, "/api/v1.1.0/login")
    assert {"30003", "20002", "10004", "20008", "20007", "10002"} <= login_ov
    assert "20003" not in login_ov and "20005" not in login_ov
    assert {"20003", "20000"} <= login_ys and "30003" not in login_ys
    query = _errnos(doc, "/api/v0.0.1/outbound/query")
    assert {"20004", "20005", "20006", "20002", "10002", "10004", "30001"} <= query
    assert "20007" not in query and "20000" not in query
    assert {"20000", "10002"} <= _errnos(doc, "/api/v1.1.0/outbound/query")
    assert {"10006", "10017", "10003"} <= _errnos(doc, "/api/v1.1.0/extension/update")
    assert {"20012", "20014", "20015"} <= _errnos(doc, "/api/v0.0.1/recording/download")


def test_dialect_differences_are_described(doc: dict[str, Any]) -> None:
    def success(path: str) -> dict[str, Any]:
        schema = openapi.resolve(doc, openapi.answer_schema(doc, path))
        return dict(openapi.resolve(doc, schema["oneOf"][0]))

    assert "trunkname" in success("/api/v0.0.1/trunklist/query")["properties"]
    assert "trunklist" in success("/api/v1.1.0/trunklist/query")["properties"]
    ov = success("/api/v0.0.1/inbound/query")["properties"]["inbound"]["items"]
    ys = success("/api/v1.1.0/inbound/query")["properties"]["inbound"]["items"]
    assert ov["properties"]["callee"]["type"] == "object"
    assert ys["properties"]["callee"]["type"] == "array"


# -- answers, in process ----------------------------------------------------------------------
def schema_errors(doc: dict[str, Any], schema: dict[str, Any], value: Any) -> list[str]:
    """Where `value` is off `schema` (an answer schema: checked against the envelope its
    `status` names, for readable errors)."""
    # (the document is the root schema, so that `#/components/…` references resolve)
    validator = jsonschema.Draft202012Validator(
        {**doc, "allOf": [openapi.envelope(doc, schema, value)]})
    return [f"{list(e.absolute_path)}: {e.message}"
            for e in sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))]


def check_answer(doc: dict[str, Any], path: str, method: str, status: int,
                 headers: dict[str, str], body: bytes) -> Any:
    """The answer as JSON, checked against the operation's documented answer."""
    assert status == 200, (path, status, body[:200])
    assert headers["access-control-allow-origin"] == "*"
    content = doc["paths"][path][method]["responses"]["200"]["content"]
    media = headers["content-type"].partition(";")[0]
    assert media in content, (path, media)
    if media == "application/json":
        value = json.loads(body)
    elif media == "application/xml":
        value = openapi.from_xml(doc, content[media]["schema"], decode_xml(body))
        ElementTree.fromstring(body)  # (well-formed, root and all)
    else:
        return None  # a file
    errors = schema_errors(doc, content[media]["schema"], value)
    assert not errors, f"{path} {media}: {body[:300]!r}\n" + "\n".join(errors[:5])
    return value


def _context() -> tuple[ApiContext, str]:
    config = load_config(None)
    ctx = ApiContext(config=config, registry=CallRegistry(), sessions=SessionManager(config.api))
    registry = ctx.registry
    caller = Leg(kind=LegKind.EXTENSION, from_number="1001", to_number="95551234",
                 extension="1001")
    call = registry.start_call(caller, "95551234")
    registry.add_callee(call, Leg(kind=LegKind.TRUNK, from_number="66666",
                                  to_number="5551234", trunk="carrier", id="1589881535.982"))
    registry.set_status("1589881535.982", LegStatus.TALKING)
    inbound = Leg(kind=LegKind.TRUNK, from_number="0123456", to_number="5550100",
                  trunk="carrier", id="1589881290.963")
    call = registry.start_call(inbound, "5550100")
    registry.add_callee(call, Leg(kind=LegKind.EXTENSION, from_number="0123456",
                                  to_number="1002", extension="1002"))
    registry.start_call(Leg(kind=LegKind.TRUNK, from_number="0999", to_number="5550100",
                            trunk="carrier", id="1589881291.964"), "5550100")
    session = ctx.sessions.login("api", md5_hex("apipass"), "127.0.0.1", "openvox")
    return ctx, session.token


def _xml(fields: dict[str, str]) -> bytes:
    inner = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items())
    return f'<?xml version="1.0" encoding="UTF-8" ?><xml>{inner}</xml>'.encode()


def _bodies(doc: dict[str, Any], path: str, xml: bool) -> Iterator[tuple[bytes, str]]:
    """Bodies to send: none, the documented example, a field of the wrong kind, junk."""
    name = path.split("/", 3)[3]
    example = {n: f.example for n, f in DOCS[name].fields.items() if f.example is not None}
    yield b"", ""
    yield json.dumps(example).encode(), "json"
    yield json.dumps({n: [1] for n in DOCS[name].fields} or {"x": [1]}).encode(), "json"
    yield b"{not json", "json"
    if xml:
        yield _xml(example), "xml"
        yield b"<xml><unclosed></xml>", "xml"
        yield json.dumps(example).encode(), "xml"


def test_every_answer_matches_its_schema_in_json_and_xml(doc: dict[str, Any]) -> None:
    ctx, token = _context()
    app = ApiApp(ctx)
    seen: dict[str, set[str]] = {"Success": set(), "Failed": set()}
    for path, method, _ in _operations(doc):
        xml = path.startswith(f"/api/{OPENVOX.version}/")
        for body, fmt in _bodies(doc, path, xml):
            for query in (f"token={token}" + (f"&type={fmt}" if fmt else ""), ""):
                if path.endswith(("/logout", "/login")) and query:
                    continue  # (keep the session; login is checked below)
                request = HttpRequest(method.upper(), path, query.encode(), [],
                                      body if method == "post" else b"", "127.0.0.1")
                response = app(request)
                assert isinstance(response.body, bytes)
                headers = {k.decode().lower(): v.decode() for k, v in response.headers}
                value = check_answer(doc, path, method, response.status, headers,
                                     response.body)
                if isinstance(value, dict):
                    seen[value["status"]].add(path)
    # the answers checked include successes (the queries; no PBX behind for the rest)
    assert len(seen["Success"]) >= 30, sorted(seen["Success"])
    assert "/api/v0.0.1/inbound/query" in seen["Success"]
    assert "/api/v1.1.0/extension/query" in seen["Success"]


@pytest.mark.parametrize("dialect", [OPENVOX, YEASTAR], ids=lambda d: d.version)
def test_login_and_logout_answers_match(doc: dict[str, Any], dialect: Any) -> None:
    ctx, _ = _context()
    app = ApiApp(ctx)
    path = f"/api/{dialect.version}/login"
    statuses: list[str] = []
    for body in (b'{"username":"api","password":"' + md5_hex("apipass").encode() + b'"}',
                 b'{"username":"api","password":"nope"}', b'{"username":"api"}',
                 b'{"username":"api","password":"x","port":"99999"}', b""):
        response = app(HttpRequest("POST", path, b"", [], body, "127.0.0.1"))
        headers = {k.decode().lower(): v.decode() for k, v in response.headers}
        value = check_answer(doc, path, "post", response.status, headers, response.body)
        statuses.append(value["status"])
        if value["status"] == "Success":
            out = app(HttpRequest("POST", f"/api/{dialect.version}/logout",
                                  f"token={value['token']}".encode(), [], b"", "127.0.0.1"))
            out_headers = {k.decode().lower(): v.decode() for k, v in out.headers}
            assert check_answer(doc, f"/api/{dialect.version}/logout", "post", out.status,
                                out_headers, out.body) == {"status": "Success"}
    # (the right password logs in, so the logout answer was checked too)
    assert statuses == ["Success", "Failed", "Failed", "Failed", "Failed"]


def _wav(path: Path) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\0\0" * 800)
    return path


def test_downloads_answer_as_documented(doc: dict[str, Any], tmp_path: Path) -> None:
    """get_random, then the file by GET and by POST, then the used key: each answer as
    documented (a file's media type among the operation's), on both dialects."""
    ctx, token = _context()
    store = Store(tmp_path / "ippbx.sqlite3")
    try:
        ctx.store = store
        store.add_cdr(CdrRecord("1704070800.1", 1704070800.0, None, 1704070805.0, "1001",
                                "1002", 5, 0, "NO ANSWER", "Internal", caller_ext="1001"))
        ctx.mailboxes = Mailboxes(tmp_path / "vm", store)
        ctx.mailboxes.deposit("1004", "1001", _wav(tmp_path / "left.wav"), 1)
        ctx.recordings = Recordings(tmp_path / "rec")
        (tmp_path / "rec").mkdir()
        _wav(tmp_path / "rec" / "exten-1001-1002-20240101-010000-1.wav")
        app = ApiApp(ctx)
        asks = {
            "cdr": {"extid": "all", "starttime": "2024-01-01 00:00:00",
                    "endtime": "2024-12-31 23:59:59"},
            "recording": {"recording": "exten-1001-1002-20240101-010000-1.wav"},
            "voicemail": {"extid": "1004", "voicemailfile": "msg0000.wav"},
        }

        def call(method: str, path: str, query: dict[str, str], body: bytes = b"") -> Any:
            response = app(HttpRequest(method, path, urlencode(query).encode(), [], body,
                                       "127.0.0.1"))
            headers = {k.decode().lower(): v.decode() for k, v in response.headers}
            return check_answer(doc, path, method.lower(), response.status, headers,
                                response.body), headers

        for query in ({"token": token}, {"token": token, "type": "xml"}):  # (nested lists)
            listed, _ = call("POST", "/api/v0.0.1/voicemail/query", query)
            assert listed["voicemails"][0]["voicemail"][0]["voicemailfile"] == "msg0000.wav"
        for version in ("v0.0.1", "v1.1.0"):
            for kind, ask in asks.items():
                for method in ("GET", "POST"):
                    keyed, _ = call("POST", f"/api/{version}/{kind}/get_random",
                                    {"token": token}, json.dumps(ask).encode())
                    assert keyed["status"] == "Success", (kind, keyed)
                    fields = {**ask, "random": keyed["random"]}  # (the link repeats them)
                    path = f"/api/{version}/{kind}/download"
                    query = {"token": token, **(fields if method == "GET" else {})}
                    body = json.dumps(fields).encode() if method == "POST" else b""
                    value, headers = call(method, path, query, body)
                    assert value is None and "attachment" in headers["content-disposition"]
                    again, _ = call(method, path, query, body)  # (a key works once)
                    assert again["status"] == "Failed"
    finally:
        store.close()


def test_a_broken_answer_is_refused(doc: dict[str, Any]) -> None:
    """The checks can fail: an answer off its schema, in JSON and in XML."""
    headers = {"access-control-allow-origin": "*", "content-type": "application/json"}
    path = "/api/v0.0.1/deviceinfo/query"
    with pytest.raises(AssertionError):
        check_answer(doc, path, "post", 200, headers, b'{"status":"Success"}')
    with pytest.raises(AssertionError):
        check_answer(doc, path, "post", 200, headers, b'{"status":"Failed","errno":"10099"}')
    with pytest.raises(AssertionError):
        check_answer(doc, "/api/v0.0.1/outbound/query", "post", 200, headers,
                     b'{"status":"Success","outbound":[{"outboundid":"1"}]}')
    xml = {**headers, "content-type": "application/xml; charset=utf-8"}
    with pytest.raises(AssertionError):
        check_answer(doc, "/api/v0.0.1/extensionlist/query", "post", 200, xml,
                     b"<xml><status>Success</status><extlist><extnumber>1</extnumber>"
                     b"</extlist></xml>")
    check_answer(doc, "/api/v0.0.1/extensionlist/query", "post", 200, xml,
                 b"<xml><status>Success</status><extlist></extlist></xml>")


def test_from_xml_follows_the_xml_hints(doc: dict[str, Any]) -> None:
    schema = openapi.answer_schema(doc, "/api/v0.0.1/queuestatus/query", "post",
                                   "application/xml")
    decoded = decode_xml(b"<xml><status>Success</status><queue><queuenumber>6500"
                         b"</queuenumber><queuestatus><members><item id=\"0\"><agent>1002"
                         b"</agent><agentstatus>1</agentstatus></item></members>"
                         b"<callercount>0</callercount><callers></callers></queuestatus>"
                         b"</queue></xml>")
    assert openapi.from_xml(doc, schema, decoded) == {"status": "Success", "queue": {
        "queuenumber": "6500", "queuestatus": {
            "members": [{"agent": "1002", "agentstatus": "1"}], "callercount": 0,
            "callers": []}}}
    schema = openapi.answer_schema(doc, "/api/v0.0.1/outbound/query", "post",
                                   "application/xml")
    assert openapi.from_xml(doc, schema, {"status": "Success"}) == \
        {"status": "Success", "outbound": []}
    assert openapi.from_xml(doc, schema, {"status": "Failed", "errno": "20005"}) == \
        {"status": "Failed", "errno": "20005"}


# -- served -----------------------------------------------------------------------------------
def _get(method: str = "GET", path: str = openapi.PATH) -> Any:
    return openapi.page(HttpRequest(method, path, b"", [], b"", "127.0.0.1"))


def test_page_serves_the_document_once_built() -> None:
    response = _get()
    assert response.status == 200
    assert dict(response.headers)[b"Content-Type"] == b"application/json"
    assert response.body is openapi.body() is _get().body  # (built once)
    assert json.loads(response.body)["openapi"] == "3.1.0"
    assert _get("HEAD").status == 200
    assert _get("POST").status == 405
    assert _get(path=openapi.PATH + "/x").status == 404


def test_main_prints_the_document_and_the_index(capsys: pytest.CaptureFixture[str]) -> None:
    assert openapi.main([]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(openapi.body())
    assert openapi.main(["--index"]) == 0
    assert capsys.readouterr().out == openapi.markdown_index()
    assert openapi.main(["--bogus"]) == 2


# -- docs/api.md ------------------------------------------------------------------------------
def test_docs_api_md_lists_every_endpoint_of_the_document(doc: dict[str, Any]) -> None:
    text = DOCS_API.read_text(encoding="utf-8")
    index = openapi.markdown_index(doc)
    assert index in text, (
        "docs/api.md's endpoint table is not the document's: regenerate it with "
        "`PYTHONPATH=src .venv/bin/python -m ippbx.api.openapi --index`")
    for path in doc["paths"]:
        if path != openapi.PATH:
            assert f"`{path.split('/', 3)[3]}`" in text, path
    assert openapi.PATH in text
    for version in ("v0.0.1", "v1.1.0"):  # curl examples for both dialects
        for name in ("login", "outbound/query", "outbound/hangup"):
            assert re.search(rf"curl [^\n]*/api/{version}/{name}\b", text), (version, name)
