"""The OpenAPI description against a live `ippbx serve` (the demo config on free loopback
ports, a tmp store, no media engine): the document it serves is valid and the one the
code builds, schemathesis fuzzes every operation on both prefixes with a real token (no
HTTP 5xx, status code, content type, headers and body as documented, XML answers
included, and no unexpected error in the server's log), and the XML answers of the
OpenVox endpoints to their documented examples match the schemas.

`login`, `logout` and `heartbeat` are left out of the fuzzing (the token must live; a
heartbeat would send the reports to fuzzed addresses), and so are `siptrunk/add|update`
(a fuzzed trunk host would be looked up and registered to, off the loopback).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import schemathesis
import tomli_w
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ippbx.api import openapi
from ippbx.api.api_schemas import DOCS
from ippbx.api.codec import decode_xml
from ippbx.api.errors import Errno
from ippbx.api.sessions import md5_hex

NOT_FUZZED = r"/(login|logout|heartbeat|siptrunk/add|siptrunk/update)$"
MAX_EXAMPLES = 6  # generated cases per operation (and half as many invalid ones)
FUZZ_SECONDS = 90  # a bound on the whole fuzzing
LOG_MARKERS = ("Traceback", " ERROR ", "CRITICAL")


def _endpoint(path: str) -> str:
    """`/api/v0.0.1/outbound/query` → `outbound/query`."""
    return path.split("/", 3)[3]


def _free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Live:
    """The running server: its base URL, a token, and its log."""

    url: str
    token: str
    log: Path
    read: int = 0  # how much of the log was checked already

    def new_log(self) -> str:
        """What the server logged since the last call."""
        with self.log.open("rb") as f:
            f.seek(self.read)
            text = f.read()
        self.read += len(text)
        return text.decode("utf-8", "replace")


def _serve(config: Path, log: Path) -> subprocess.Popen[bytes]:
    script = Path(sys.executable).with_name("ippbx")
    command = [str(script)] if script.exists() else \
        [sys.executable, "-c", "import sys; from ippbx.cli import main; sys.exit(main())"]
    with log.open("wb") as out:
        return subprocess.Popen([*command, "serve", "--config", str(config)],
                                stdout=out, stderr=subprocess.STDOUT, cwd=config.parent)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    base = tmp_path_factory.mktemp("openapi")
    config = tomllib.loads(resources.files("ippbx").joinpath("demo.toml").read_text("utf-8"))
    port = _free_port(socket.SOCK_STREAM)
    config["api"].update(listen=f"127.0.0.1:{port}", https_listen="")
    config["sip"].update(listen=f"127.0.0.1:{_free_port(socket.SOCK_DGRAM)}", tls_listen="")
    config["media"]["engine"] = "none"
    config["store"]["path"] = str(base / "ippbx.sqlite3")
    path = base / "ippbx.toml"
    path.write_text(tomli_w.dumps(config), encoding="utf-8")
    log = base / "serve.log"
    proc = _serve(path, log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        with httpx.Client(timeout=2, trust_env=False) as client:
            while True:
                assert proc.poll() is None, log.read_text("utf-8", "replace")
                assert time.monotonic() < deadline, "ippbx serve did not come up in 15 s"
                try:
                    answer = client.post(f"{url}/api/v0.0.1/login", json={
                        "username": "api", "password": md5_hex("apipass")}).json()
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
        assert answer["status"] == "Success", answer
        yield Live(url, answer["token"], log)
        proc.terminate()
        assert proc.wait(timeout=10) == 0, log.read_text("utf-8", "replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


@cache
def served_document(url: str) -> dict[str, Any]:
    response = httpx.get(f"{url}{openapi.PATH}", timeout=10, trust_env=False)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    return dict(response.json())


def test_the_served_document_is_valid_and_the_built_one(live: Live) -> None:
    served = served_document(live.url)
    validate(served)
    assert served == json.loads(json.dumps(openapi.document()))


# -- XML answers ------------------------------------------------------------------------------
def _xml(fields: dict[str, str]) -> bytes:
    inner = "".join(f"\n    <{k}>{v}</{k}>" for k, v in fields.items())
    return f'<?xml version="1.0" encoding="UTF-8" ?>\n<xml>{inner}\n</xml>\n'.encode()


def _check_xml(doc: dict[str, Any], path: str, response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/xml; charset=utf-8", path
    assert response.headers["access-control-allow-origin"] == "*"
    schema = openapi.answer_schema(doc, path, "post", "application/xml")
    value = openapi.from_xml(doc, schema, decode_xml(response.content))
    validator = jsonschema.Draft202012Validator(
        {**doc, "allOf": [openapi.envelope(doc, schema, value)]})
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(value)]
    assert not errors, f"{path}: {response.text}\n" + "\n".join(errors[:5])
    return dict(value)


def test_openvox_xml_answers_match_the_schemas(live: Live) -> None:
    doc = served_document(live.url)
    successes = set()
    with httpx.Client(base_url=live.url, timeout=10, trust_env=False) as client:
        for path, item in doc["paths"].items():
            if not path.startswith("/api/v0.0.1/") or "post" not in item \
                    or _endpoint(path) in ("logout", "heartbeat", "siptrunk/add",
                                           "siptrunk/update"):
                continue
            fields = DOCS[_endpoint(path)].fields
            example = {n: f.example for n, f in fields.items()
                       if f.example is not None and n != "port"}  # (login: no reports)
            for body, query in ((_xml(example), {"token": live.token}),
                                (b"", {"token": live.token, "type": "xml"}),
                                (b"<xml><oops></xml>", {"token": live.token})):
                value = _check_xml(doc, path, client.post(path, params=query, content=body))
                if value["status"] == "Success":
                    successes.add(_endpoint(path))
            assert not any(m in live.new_log() for m in LOG_MARKERS), path
    # the documented examples make real successes, lists and all
    assert {"login", "deviceinfo/query", "extensionlist/query", "extension/query",
            "trunklist/query", "siptrunk/query", "outroute/query", "inroute/query",
            "ivr/query", "queue/query", "queuestatus/query", "paginggroup/lists",
            "outbound/query", "inbound/query", "voicemail/query"} <= successes, successes


# -- schemathesis -----------------------------------------------------------------------------
# (its pytest plugin, `schemathesis.pytest.from_fixture`, does not run on pytest 9: it sets
# `Node._nodeid`; so the strategies it makes for each operation are driven here)
@schemathesis.deserializer("application/xml")
def _xml_answer(ctx: schemathesis.DeserializationContext, response: schemathesis.Response
                ) -> Any:
    """An XML answer in its JSON shape (by the schema's xml hints), so that schemathesis
    checks it against the same schema as the JSON one."""
    operation = ctx.operation
    doc = operation.schema.raw_schema
    schema = openapi.answer_schema(doc, operation.path, operation.method.lower(),
                                   "application/xml")
    return openapi.from_xml(doc, schema, decode_xml(response.content))


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]


def _unexpected_errors(live: Live, case: schemathesis.Case,
                       response: schemathesis.Response) -> None:
    """The server logged no error, and answered 30001 only where the endpoint answers it
    on purpose (no media engine); otherwise it is a bug hidden behind the envelope."""
    logged = live.new_log()
    assert not any(marker in logged for marker in LOG_MARKERS), \
        f"the server logged an error:\n{logged[-3000:]}"
    if response.headers.get("content-type", [""])[0].startswith("application/json"):
        errno = response.json().get("errno")
        if errno == str(int(Errno.INTERNAL)):
            assert Errno.INTERNAL in DOCS[_endpoint(case.path)].errnos, \
                f"30001 (an unexpected failure)\n{logged}"


def _fuzz(live: Live, operation: schemathesis.APIOperation,
          strategy: SearchStrategy[schemathesis.Case], examples: int) -> None:
    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case: schemathesis.Case) -> None:
        # (the live token wins over whatever was generated for the security schemes)
        case.query = {**(case.query or {}), "token": live.token}
        response = case.call(timeout=10)
        try:
            case.validate_response(response, checks=CHECKS)
            _unexpected_errors(live, case, response)
        except (AssertionError, FailureGroup) as exc:
            raise AssertionError(f"{case.as_curl_command()}\n{response.status_code} "
                                 f"{response.text[:500]}\n{exc}") from None

    run()


@pytest.mark.slow
def test_every_operation_answers_as_documented(live: Live) -> None:
    schema = schemathesis.openapi.from_url(f"{live.url}{openapi.PATH}") \
        .exclude(path_regex=NOT_FUZZED)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 120
    started = time.monotonic()
    failures: list[str] = []
    for operation in operations:
        assert time.monotonic() - started < FUZZ_SECONDS, "fuzzing took too long"
        examples = schema.get_strategies_from_examples(operation)
        runs = [(st.one_of(examples), len(examples))] if examples else []
        runs += [(operation.as_strategy(GenerationMode.POSITIVE), MAX_EXAMPLES),
                 (operation.as_strategy(GenerationMode.NEGATIVE), MAX_EXAMPLES // 2)]
        for strategy, count in runs:
            try:
                _fuzz(live, operation, strategy, count)
            except Exception as exc:  # (all the operations are tried, then all told)
                failures.append(f"{operation.label}: {exc}")
                break
        assert len(failures) < 10, "\n\n".join(failures)
    assert not failures, "\n\n".join(failures)
