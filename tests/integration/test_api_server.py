"""ApiServer and App lifecycle in the test's own event loop: port 0, stop, bind failures."""

from __future__ import annotations

import hashlib
import wave
from pathlib import Path

import httpx
import pytest

from ippbx.api.request import ApiContext
from ippbx.api.server import ApiServer, build_app
from ippbx.api.sessions import SessionManager
from ippbx.app import App
from ippbx.config import Config
from ippbx.pbx.calls import CallRegistry


def context(config: Config) -> ApiContext:
    return ApiContext(config=config, registry=CallRegistry(), sessions=SessionManager(config.api))


async def test_server_binds_port_0_serves_and_stops(demo_config: Config) -> None:
    server = ApiServer(build_app(context(demo_config)), "127.0.0.1", 0)
    with pytest.raises(RuntimeError):
        _ = server.port
    await server.start()
    try:
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.post(f"{server.url}/api/v0.0.1/outbound/query")
            assert response.json() == {"status": "Failed", "errno": "20005"}
        busy = ApiServer(build_app(context(demo_config)), "127.0.0.1", server.port)
        with pytest.raises(OSError):
            await busy.start()
        with pytest.raises(RuntimeError):
            await server.start()
        url = server.url
    finally:
        await server.stop()
    await server.stop()  # a second stop is harmless
    async with httpx.AsyncClient(timeout=5) as client:
        with pytest.raises(httpx.ConnectError):
            await client.post(f"{url}/api/v0.0.1/login")


class _Recorder:
    def __init__(self, name: str, log: list[str], fail: bool = False) -> None:
        self.name, self.log, self.fail = name, log, fail

    async def start(self) -> None:
        if self.fail:
            raise OSError(f"{self.name} cannot start")
        self.log.append(f"start {self.name}")

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")


def _on_port_0(config: Config, store: str = ":memory:") -> Config:
    return config.model_copy(
        update={
            "api": config.api.model_copy(update={"listen": "127.0.0.1:0", "https_listen": ""}),
            "sip": config.sip.model_copy(update={"listen": "127.0.0.1:0", "tls_listen": ""}),
            "store": config.store.model_copy(update={"path": store}),
        }
    )


async def test_app_starts_in_order_and_stops_in_reverse(demo_config: Config) -> None:
    app = App(_on_port_0(demo_config))
    log: list[str] = []
    app.components += [_Recorder("a", log), _Recorder("b", log)]
    await app.start()
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.post(f"{app.api.url}/api/v1.1.0/deviceinfo/query")
            assert response.json()["errno"] == "20005"
    finally:
        await app.stop()
    assert log == ["start a", "start b", "stop b", "stop a"]


async def test_app_start_failure_stops_what_started(demo_config: Config) -> None:
    app = App(_on_port_0(demo_config))
    log: list[str] = []
    app.components += [_Recorder("a", log), _Recorder("b", log, fail=True)]
    with pytest.raises(OSError):
        await app.start()
    assert log == ["start a", "stop a"]
    with pytest.raises(RuntimeError):
        _ = app.api.port  # the API server was stopped too


async def test_app_serves_the_pbx_mailboxes(demo_config: Config, tmp_path: Path) -> None:
    base = _on_port_0(demo_config, str(tmp_path / "ippbx.sqlite3"))
    config = base.model_copy(update={
        "voicemail": base.voicemail.model_copy(update={"directory": str(tmp_path / "vm")}),
        "media": base.media.model_copy(update={"engine": "none"}),
    })
    app = App(config)
    assert app.api_context.mailboxes is app.pbx.mailboxes
    recorded = tmp_path / "recorded.wav"
    with wave.open(str(recorded), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\0\0" * 800)
    app.pbx.mailboxes.deposit("1001", "1002", recorded, 1)
    assert (tmp_path / "vm" / "1001" / "msg0000.wav").is_file()
    await app.start()
    try:
        async with httpx.AsyncClient(base_url=app.api.url, timeout=5) as client:
            login = {"username": "api", "password": hashlib.md5(b"apipass").hexdigest()}
            token = (await client.post("/api/v0.0.1/login", json=login)).json()["token"]
            answer = (await client.post(f"/api/v0.0.1/voicemail/query?token={token}")).json()
    finally:
        await app.stop()
        app.close()
    assert answer["voicemails"][0]["extid"] == "1001"
    assert answer["voicemails"][0]["voicemail"][0]["voicemailfile"] == "msg0000.wav"
