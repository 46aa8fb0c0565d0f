"""A whole ippbx (SIP + API) started in-process on free loopback ports, for PBX tests.

`PbxHarness.start(tmp_path, trunks=…, extra=…)` writes a TOML config (extensions
1001-1005 with password `secret100N`, API user api/apipass, the trunks given, route
prefix 9 → all the trunks in order (or `route_trunks`), DID 5550100 on the first trunk →
extension 1002; `no_answer_seconds` 20 unless given; `[security]` with `digest_uri =
"host"` for sipp's digests, and the keys of `security=`; more `[sip]` keys in `sip=`;
`adjust(config)` may change the parsed configuration, past its validation, e.g. a session
timer shorter than RFC 4028 allows, so a test need not wait 90 s),
starts `App`, logs in to the API,
and offers `query()` helpers; `api_version` is the dialect it logs in through and posts
to ("v0.0.1" OpenVox, "v1.1.0" Yeastar; `login(version)` switches). `stop()` stops
everything and checks nothing leaked: no live call in the registry, no B2BUA task, no SIP
dialog left in the UA (a message-waiting subscription is one: end it first), no
message-waiting NOTIFY under way, and none left once stopped. (UA transactions outlive a
call by their timers, up to 32 s; tests that care wait for `ua_counts_zero`.)
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sipp_harness import SCENARIO_DIR, Sipp, SippFactory, free_port

from ippbx.app import App
from ippbx.config import Config, parse_config

API_PASSWORD = "apipass"


MEDIA_NONE: dict[str, Any] = {"engine": "none"}


def ext_password(number: str) -> str:
    return f"secret{number}"


@dataclass
class TrunkSpec:
    name: str
    port: int
    type: str = "peer"
    extra: str = ""  # more TOML lines for the [[trunks]] table


# sipp 3.6.1 signs `uri="sip:REMOTE_IP:REMOTE_PORT"` whatever the Request-URI
# (docs/testing.md), so the harness accepts that form; `security=` overrides any key.
SIPP_SECURITY: dict[str, Any] = {"digest_uri": "host"}


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return str(value)


def build_config(
    sip_port: int, store: Path, trunks: list[TrunkSpec], extra: str = "", *,
    no_answer_seconds: int = 20, route_trunks: list[str] | None = None,
    security: dict[str, Any] | None = None, sip: dict[str, Any] | None = None,
    media: dict[str, Any] | None = None,
) -> str:
    lines = [
        "[pbx]", 'sn = "ippbxtest01"',
        "[sip]", f'listen = "127.0.0.1:{sip_port}"', 'domain = "ippbx.test"',
        f"no_answer_seconds = {no_answer_seconds}",
        *(f"{k} = {toml_value(v)}" for k, v in (sip or {}).items()),
        "[api]", 'listen = "127.0.0.1:0"', f'password = "{API_PASSWORD}"',
        "[store]", f'path = "{store}"',
        "[voicemail]", f'directory = "{store.parent / "voicemail"}"',
        # no media engine unless the test asks for one: SDP passes through untouched
        "[media]", *(f"{k} = {toml_value(v)}" for k, v in (media or MEDIA_NONE).items()),
        "[security]",
    ]
    lines += [f"{k} = {toml_value(v)}" for k, v in {**SIPP_SECURITY, **(security or {})}.items()]
    for n in range(1001, 1006):
        lines += ["[[extensions]]", f'number = "{n}"', f'password = "{ext_password(str(n))}"']
    for t in trunks:
        lines += ["[[trunks]]", f'name = "{t.name}"', f'type = "{t.type}"',
                  'host = "127.0.0.1"', f"port = {t.port}", 'callerid = "66666"', t.extra]
    if trunks:
        names = ", ".join(f'"{name}"' for name in route_trunks or [t.name for t in trunks])
        lines += ["[[outbound_routes]]", 'name = "external"', 'prefix = "9"', 'match = "X."',
                  f"trunks = [{names}]",
                  "[[inbound_routes]]", 'name = "did"', f'trunk = "{trunks[0].name}"',
                  'did = "5550100"', 'destination = "extension:1002"']
    return "\n".join(lines) + "\n" + extra


class PbxHarness:
    """One running ippbx and an API session on it."""

    def __init__(self, app: App, api_version: str = "v0.0.1") -> None:
        self.app = app
        self.api_version = api_version
        self.client = httpx.AsyncClient(timeout=5)
        self.token = ""
        self.stopped = False

    @classmethod
    async def start(
        cls, tmp_path: Path, trunks: list[TrunkSpec] | None = None, extra: str = "",
        sip_port: int | None = None, *, no_answer_seconds: int = 20,
        route_trunks: list[str] | None = None, api_version: str = "v0.0.1",
        security: dict[str, Any] | None = None, sip: dict[str, Any] | None = None,
        adjust: Callable[[Config], Config] | None = None,
        media: dict[str, Any] | None = None,
    ) -> PbxHarness:
        port = sip_port or free_port()
        if media is not None:  # (recordings under the test's directory, not the cwd)
            media = {"recordings": str(tmp_path / "recordings"), **media}
        text = build_config(port, tmp_path / "ippbx.sqlite3", trunks or [], extra,
                            no_answer_seconds=no_answer_seconds, route_trunks=route_trunks,
                            security=security, sip=sip, media=media)
        config = parse_config(text)
        app = App(adjust(config) if adjust is not None else config)
        await app.start()
        harness = cls(app, api_version)
        await harness.login()
        return harness

    @property
    def sip_address(self) -> str:
        t = self.app.pbx.transport
        return f"{t.local_host}:{t.local_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.app.api.port}/api/{self.api_version}"

    async def login(self, version: str | None = None, report_port: int = 8260) -> None:
        """Log in (again) through `version` (default: the current one); later requests
        use that dialect's paths. The session's reports go to 127.0.0.1:`report_port`."""
        if version is not None:
            self.api_version = version
        body = {"username": "api", "password": hashlib.md5(API_PASSWORD.encode()).hexdigest(),
                "port": str(report_port)}
        answer = (await self.client.post(f"{self.api_url}/login?type=json", json=body)).json()
        assert answer["status"] == "Success", answer
        self.token = answer["token"]

    async def post(self, endpoint: str, body: Any = None, type: str = "json") -> httpx.Response:
        url = f"{self.api_url}/{endpoint}?token={self.token}&type={type}"
        if isinstance(body, str):
            return await self.client.post(url, content=body.encode())
        return await self.client.post(url, json=body if body is not None else {})

    async def outbound(self, ids: str = "") -> list[dict[str, str]]:
        answer = (await self.post("outbound/query", {"outboundid": ids})).json()
        assert answer["status"] == "Success", answer
        return answer["outbound"]

    async def inbound(self, ids: str = "") -> list[dict[str, Any]]:
        answer = (await self.post("inbound/query", {"inboundid": ids})).json()
        assert answer["status"] == "Success", answer
        return answer["inbound"]

    async def wait_for(self, predicate: Any, timeout: float = 10.0, what: str = "") -> Any:
        """Poll the async `predicate()` until it returns something truthy."""
        deadline = time.monotonic() + timeout
        while True:
            value = await predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or predicate}")
            await asyncio.sleep(0.05)

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until no call is live, no B2BUA task runs and the UA holds no dialog."""
        pbx = self.app.pbx

        async def idle() -> bool:
            return (len(self.app.registry) == 0 and pbx.b2bua.active_tasks == 0
                    and pbx.ua.counts()["dialogs"] == 0 and pbx.mwi.active_tasks == 0)

        try:
            await self.wait_for(idle, timeout, "the PBX to become idle")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: calls {self.app.registry.calls()}, "
                                 f"B2BUA tasks {pbx.b2bua.active_tasks}, "
                                 f"UA {pbx.ua.counts()}, MWI tasks {pbx.mwi.active_tasks}, "
                                 f"subscriptions {len(pbx.mwi)}") from None

    async def ua_counts_zero(self, timeout: float) -> dict[str, int]:
        """Wait until every UA count (transactions, dialogs, tasks…) is zero; the counts."""
        ua = self.app.pbx.ua

        async def zero() -> bool:
            return not any(ua.counts().values())

        try:
            await self.wait_for(zero, timeout, "the UA to forget everything")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {ua.counts()}") from None
        return ua.counts()

    async def stop(self, check_leaks: bool = True) -> None:
        if self.stopped:
            return
        self.stopped = True
        try:
            if check_leaks:
                await self.wait_idle()
                assert len(self.app.registry) == 0, self.app.registry.calls()
                anchor = self.app.media.anchor  # (with a media engine: no call's trace)
                if anchor is not None:
                    await anchor.stop()  # (its deletes under way)
                    assert anchor.held() == 0, anchor.held()
        finally:
            await self.client.aclose()
            await self.app.stop()
            self.app.close()
        if check_leaks:  # (stopping cancels what the PBX still had under way)
            mwi = self.app.pbx.mwi
            assert mwi.active_tasks == 0 and len(mwi) == 0, (mwi.active_tasks, len(mwi))


async def phone(sipp: SippFactory, pbx: PbxHarness, ext: str, scenario: str,
                **kwargs: Any) -> Sipp:
    """Register extension `ext` from a fresh port, then answer its calls there with
    `scenario` (sipp tells calls apart by Call-ID, so the REGISTER runs first, alone)."""
    port = free_port()
    register = sipp("pbx_register.xml", remote=pbx.sip_address, port=port, calls=1,
                    auth=(ext, ext_password(ext)), keys={"user": ext},
                    recv_timeout_ms=3000, sipp_timeout_s=10)
    await register.astart()
    (await register.await_result(10)).assert_ok(calls=1)
    assert pbx.app.pbx.registrar.contacts(ext), f"{ext} not registered"
    kwargs.setdefault("sipp_timeout_s", 20)
    return await sipp(scenario, port=port, calls=1, **kwargs).astart()


# what the `start_pbx` fixture (tests/integration/conftest.py) hands a test
Start = Callable[..., Awaitable[PbxHarness]]


def dialling(sipp: SippFactory, pbx: PbxHarness, scenario: str, dialled: str, *,
             ext: str = "1001", **kwargs: Any) -> Sipp:
    """A sipp extension `ext` (UDP, digest auth) calling `dialled` through the PBX."""
    kwargs.setdefault("recv_timeout_ms", 8000)
    kwargs.setdefault("sipp_timeout_s", 20)
    kwargs.setdefault("calls", 1)
    return sipp(scenario, remote=pbx.sip_address, service=dialled,
                auth=(ext, ext_password(ext)), keys={"user": ext}, **kwargs)


def rejected_with(tmp_path: Path, status: int) -> str:
    """pbx_uac_auth_reject.xml expecting the final `status` (a path for sipp)."""
    text = (SCENARIO_DIR / "pbx_uac_auth_reject.xml").read_text()
    assert text.count('response="EXPECTED"') == 1
    path = tmp_path / f"pbx_uac_auth_reject_{status}.xml"
    path.write_text(text.replace('response="EXPECTED"', f'response="{status}"'))
    return str(path)
