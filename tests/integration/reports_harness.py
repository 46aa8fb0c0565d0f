"""Helpers for the call-report tests: a recording HTTP receiver, an in-process ippbx with
its own config (trunks with their route prefixes, report backoff), API logins, callers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sipp_harness import SippFactory, free_port

from ippbx.api.http_server import HttpRequest, HttpResponse
from ippbx.api.server import ApiServer
from ippbx.app import App
from ippbx.config import parse_config

SN = "ippbxtest01"
API_MD5 = hashlib.md5(b"apipass").hexdigest()
CALL_ACTIONS = {"ALERT", "RING", "ANSWER", "ANSWERED", "BYE", "CallFailed", "NewCdr"}


# -- the receiver ---------------------------------------------------------------------------
@dataclass
class Got:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float


@dataclass
class Receiver:
    """An HTTP server recording every report POSTed to it; answers 200, or what `answer`
    says for the report."""

    port: int = field(default_factory=free_port)
    got: list[Got] = field(default_factory=list)
    server: ApiServer | None = None
    answer: Callable[[dict[str, Any]], int] | None = None
    ssl_context: ssl.SSLContext | None = None  # an https:// receiver

    def _handle(self, request: HttpRequest) -> HttpResponse:
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        report = json.loads(request.body)
        self.got.append(Got(request.path, headers, report, time.time()))
        status = 200 if self.answer is None else self.answer(report)
        return HttpResponse(status, (), b"OK")

    async def start(self) -> Receiver:
        self.server = ApiServer(self._handle, "127.0.0.1", self.port,
                                ssl_context=self.ssl_context)
        await self.server.start()
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None

    def at(self, path: str) -> list[dict[str, Any]]:
        return [g.body for g in self.got if g.path == path]


async def until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


# -- the PBX --------------------------------------------------------------------------------
def config_text(store: Path, sip_port: int, trunks: dict[str, tuple[str, int]], *,
                no_answer: int = 20, backoff_max: float = 1.0, api_port: int = 0,
                reports: str = "") -> str:
    """Extensions 1001-1003; each trunk name → (route prefix, carrier port); `reports`:
    more lines for the [reports] table. `[security]` accepts sipp's digest uri
    (docs/testing.md) and lets one sipp place bursts of calls (a challenge each)."""
    lines = ["[pbx]", f'sn = "{SN}"',
             "[sip]", f'listen = "127.0.0.1:{sip_port}"', f"no_answer_seconds = {no_answer}",
             "[media]", 'engine = "none"',
             "[api]", f'listen = "127.0.0.1:{api_port}"', 'password = "apipass"',
             "[store]", f'path = "{store}"',
             "[security]", 'digest_uri = "host"', "rate_limit = 1000", "rate_burst = 2000",
             "[reports]", "timeout = 2", f"backoff_max = {backoff_max}", reports]
    for n in (1001, 1002, 1003):
        lines += ["[[extensions]]", f'number = "{n}"', f'password = "secret{n}"']
    for name, (_, port) in trunks.items():
        lines += ["[[trunks]]", f'name = "{name}"', 'host = "127.0.0.1"', f"port = {port}",
                  'callerid = "66666"']
    for name, (prefix, _) in trunks.items():
        lines += ["[[outbound_routes]]", f'name = "r{name}"', f'prefix = "{prefix}"',
                  'match = "X."', f'trunks = ["{name}"]']
    return "\n".join(lines) + "\n"


@dataclass
class Pbx:
    app: App
    client: httpx.AsyncClient

    @classmethod
    async def start(cls, text: str) -> Pbx:
        app = App(parse_config(text))
        await app.start()
        return cls(app, httpx.AsyncClient(timeout=5))

    async def stop(self) -> None:
        await self.client.aclose()
        await self.app.stop()
        self.app.close()

    @property
    def sip(self) -> str:
        t = self.app.pbx.transport
        return f"{t.local_host}:{t.local_port}"

    async def post(self, version: str, endpoint: str, body: dict[str, Any],
                   token: str | None = None) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.app.api.port}/api/{version}/{endpoint}"
        if token:
            url += f"?token={token}"
        answer: dict[str, Any] = (await self.client.post(url, json=body)).json()
        return answer

    async def login(self, api: str = "v0.0.1", **fields: Any) -> str:
        body = {"username": "api", "password": API_MD5, **fields}
        answer = await self.post(api, "login", body)
        assert answer["status"] == "Success", answer
        return str(answer["token"])

    async def outbound(self, token: str, ids: str = "") -> list[dict[str, str]]:
        answer = await self.post("v0.0.1", "outbound/query", {"outboundid": ids}, token)
        assert answer["status"] == "Success", answer
        return list(answer["outbound"])


def spawn_ippbx(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """`ippbx serve --config CONFIG` as a child process (its output appended to `log`)."""
    script = Path(sys.executable).with_name("ippbx")
    command = [str(script)] if script.exists() else [
        sys.executable, "-c", "import sys; from ippbx.cli import main; sys.exit(main())"]
    with log.open("ab") as out:
        return subprocess.Popen([*command, "serve", "--config", str(config),
                                 "--log-level", "warning"], stdout=out,
                                stderr=subprocess.STDOUT, cwd=config.parent, env=os.environ)


def caller(sipp: SippFactory, pbx: Pbx | str, number: str, **kwargs: Any) -> Any:
    """A sipp extension 1001 (digest auth) calling `number` through `pbx` (or "host:port")."""
    scenario = kwargs.pop("scenario", "uac_auth.xml")
    kwargs.setdefault("sipp_timeout_s", 30)
    remote = pbx.sip if isinstance(pbx, Pbx) else pbx
    return sipp(scenario, remote=remote, auth=("1001", "secret1001"), keys={"user": "1001"},
                service=number, recv_timeout_ms=8000, **kwargs)


def call_reports(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in reports if r["action"] in CALL_ACTIONS]
