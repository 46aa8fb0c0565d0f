"""The web console's server side over real HTTP, with real sipp calls: login, cookie,
CSRF, roles, the live calls pushed over server-sent events, hang-up from the console, the
call history and the hourly counts, configuration changes through the vendor API.

(The page itself, in headless Chromium: test_console_browser.py.)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from pbx_harness import PbxHarness, Start, TrunkSpec, ext_password
from sipp_harness import SippFactory, free_port

from ippbx.api.console.server import MAX_STREAMS_PER_LOGIN
from ippbx.pbx.cdr import CdrRecord

NUMBER = "5551234"
RO_USER, RO_PASSWORD = "watcher", "watcherpass"
READONLY = (f'[[api.users]]\nusername = "{RO_USER}"\npassword = "{RO_PASSWORD}"\n'
            'role = "readonly"\n')


def console(pbx: PbxHarness) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{pbx.app.api.port}", timeout=5)


async def login(client: httpx.AsyncClient, user: str = "api",
                password: str = "apipass") -> dict[str, Any]:
    response = await client.post("/console/login",
                                 json={"username": user, "password": password})
    assert response.status_code == 200, response.text
    return response.json()


async def events(client: httpx.AsyncClient) -> AsyncIterator[tuple[str, Any]]:
    """The (event, data) pairs of the console's event stream, as they come."""
    async with client.stream("GET", "/console/api/events", timeout=None) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        name = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                yield name, json.loads(line.removeprefix("data: "))


async def next_calls(stream: AsyncIterator[tuple[str, Any]], want: Any,
                     timeout: float = 5.0) -> dict[str, Any]:
    """The first `calls` event whose payload satisfies `want`."""
    async def first() -> dict[str, Any]:
        async for name, data in stream:
            if name == "calls" and want(data):
                return data
        raise AssertionError("the event stream ended")

    return await asyncio.wait_for(first(), timeout)


async def test_pages_login_cookie_csrf_and_logout(start_pbx: Start) -> None:
    pbx = await start_pbx([])
    async with console(pbx) as client:
        root = await client.get("/")
        assert (root.status_code, root.headers["location"]) == (302, "/console/")
        page = await client.get("/console/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert (await client.get("/console/static/../server.py")).status_code == 404
        assert (await client.get("/nowhere")).status_code == 404
        # nothing without a login
        for path in ("/console/api/me", "/console/api/calls", "/console/api/cdr",
                     "/console/api/events"):
            assert (await client.get(path)).status_code == 401, path
        wrong = await client.post("/console/login",
                                  json={"username": "api", "password": "nope"})
        assert wrong.status_code == 401 and "wrong" in wrong.json()["error"]
        me = await login(client)
        assert me["user"] == "api" and me["role"] == "admin" and len(me["csrf"]) > 20
        [set_cookie] = [c for c in client.cookies.jar if c.name == "ippbx_console"]
        assert set_cookie.path == "/console" and set_cookie.has_nonstandard_attr("HttpOnly")
        sid = set_cookie.value
        assert (await client.get("/console/api/me")).json() == me
        # a POST without the CSRF token (a forged form) is refused, with it accepted
        assert (await client.post("/console/logout")).status_code == 403
        assert (await client.post("/console/logout",
                                  headers={"X-CSRF-Token": "x" * 32})).status_code == 403
        out = await client.post("/console/logout", headers={"X-CSRF-Token": me["csrf"]})
        assert out.status_code == 200
        assert not [c for c in client.cookies.jar if c.name == "ippbx_console"]
        client.cookies.set("ippbx_console", sid, path="/console")  # (the old one: forgotten)
        assert (await client.get("/console/api/me")).status_code == 401
    await pbx.stop()


async def test_failed_logins_lock_the_address_out_of_console_and_api(
        start_pbx: Start) -> None:
    pbx = await start_pbx([], extra="")
    async with console(pbx) as client:
        for _ in range(pbx.app.config.api.lockout_failures):
            assert (await client.post("/console/login", json={
                "username": "api", "password": "guess"})).status_code == 401
        locked = await client.post("/console/login",
                                   json={"username": "api", "password": "apipass"})
        assert locked.status_code == 429
        body = {"username": "api", "password": hashlib.md5(b"apipass").hexdigest()}
        api = (await pbx.client.post(f"{pbx.api_url}/login", json=body)).json()
        assert api["status"] == "Failed"  # the API's own lockout, shared
    await pbx.stop()


async def test_a_readonly_user_sees_but_cannot_act(start_pbx: Start) -> None:
    pbx = await start_pbx([], extra=READONLY)
    async with console(pbx) as admin, console(pbx) as watcher:
        me = await login(watcher, RO_USER, RO_PASSWORD)
        assert me["role"] == "readonly"
        csrf = {"X-CSRF-Token": me["csrf"]}
        assert (await watcher.get("/console/api/registrations")).status_code == 200
        assert (await watcher.post("/console/api/calls/1.1/hangup",
                                   headers=csrf)).status_code == 403
        new = {"number": "1009", "username": "Nine", "registerpassword": "Nine-pw-1009"}
        refused = await watcher.post("/console/api/call/extension/add", json=new,
                                     headers=csrf)
        assert refused.json() == {"status": "Failed", "errno": "10003"}
        assert "1009" not in [e.number for e in pbx.app.config.extensions]
        # listed extensions hide their password from a readonly user
        query = (await watcher.post("/console/api/call/extension/query",
                                    json={"extid": "1001"}, headers=csrf)).json()
        assert query["status"] == "Success"
        assert query["extinfos"][0]["registerpassword"] == ""
        # the admin adds it through the same vendor endpoint, and it is live at once
        token = (await login(admin))["csrf"]
        added = await admin.post("/console/api/call/extension/add", json=new,
                                 headers={"X-CSRF-Token": token})
        assert added.json() == {"status": "Success"}
        assert "1009" in [e.number for e in pbx.app.config.extensions]
        listed = (await admin.post("/console/api/call/extensionlist/query",
                                   headers={"X-CSRF-Token": token})).json()
        assert "1009" in [e["extnumber"] for e in listed["extlist"]]
        # endpoints outside the configuration are not reachable through the console
        assert (await admin.post("/console/api/call/outbound/hangup", json={},
                                 headers={"X-CSRF-Token": token})).status_code == 404
        regs = (await admin.get("/console/api/registrations")).json()
        assert {"number": "1009", "name": "Nine", "status": "Unregistered",
                "contacts": []} in regs["extensions"]
    await pbx.stop()


async def test_a_live_call_is_pushed_hung_up_and_kept_in_the_history(
        start_pbx: Start, sipp: SippFactory) -> None:
    trunk_port = free_port()
    pbx = await start_pbx([TrunkSpec("carrier", trunk_port)])
    async with console(pbx) as client:
        csrf = {"X-CSRF-Token": (await login(client))["csrf"]}
        stream = events(client)
        first = await next_calls(stream, lambda data: True)
        assert first["calls"] == []
        assert pbx.app.console._unsubscribe is not None  # (watching while it is open)
        far = await sipp("uas.xml", port=trunk_port, calls=1, sipp_timeout_s=20).astart()
        near = await sipp("pbx_uac_auth_recv_bye.xml", remote=pbx.sip_address,
                          service="9" + NUMBER, calls=1, auth=("1001", ext_password("1001")),
                          keys={"user": "1001"}, recv_timeout_ms=10000,
                          sipp_timeout_s=20).astart()
        talking = await next_calls(stream, lambda d: [c["status"] for c in d["calls"]]
                                   == ["Talking"], timeout=10)
        seen = time.time()
        [call] = talking["calls"]
        live = pbx.app.registry.calls()[0]
        assert call == {"callid": live.callid, "type": "Outbound", "caller": "1001",
                        "callee": NUMBER, "trunk": "carrier", "status": "Talking",
                        "started": live.created, "answered": live.answered,
                        "extension": "1001"}
        assert seen - (live.answered or 0) < 1.0  # pushed, not found by a poll
        unknown = await client.post("/console/api/calls/1.1/hangup", headers=csrf)
        assert unknown.status_code == 404
        hold = await client.post(f"/console/api/calls/{live.callid}/transfer", json={},
                                 headers=csrf)
        assert hold.status_code == 400
        hung = await client.post(f"/console/api/calls/{live.callid}/hangup", headers=csrf)
        assert hung.status_code == 200
        for run in (near, far):  # both ends got a BYE and answered it
            (await run.await_result(15)).assert_ok(calls=1)
        await next_calls(stream, lambda d: d["calls"] == [])
        await stream.aclose()
        await pbx.wait_idle()
        # the call history: newest first, searchable, paged
        history = (await client.get("/console/api/cdr")).json()
        assert history["total"] == 1
        [item] = history["items"]
        assert (item["id"], item["caller"], item["callee"], item["trunk"], item["status"],
                item["recording"]) == (live.callid, "1001", "9" + NUMBER, "carrier",
                                       "ANSWERED", None)  # (as dialled)
        assert (await client.get(f"/console/api/cdr?q={NUMBER[2:]}")).json()["total"] == 1
        assert (await client.get("/console/api/cdr?q=%25")).json()["total"] == 0  # (literal %)
        assert (await client.get("/console/api/cdr?q=_")).json()["total"] == 0
        assert (await client.get("/console/api/cdr?page=2")).json()["items"] == []
        assert (await client.get("/console/api/cdr?page=x")).status_code == 400
        hours = (await client.get("/console/api/stats/hourly")).json()["hours"]
        assert len(hours) == 24 and hours[-1]["start"] <= time.time() < hours[-1]["start"] \
            + 3600
        assert (hours[-1]["calls"], hours[-1]["answered"]) == (1, 1)
        assert sum(h["calls"] for h in hours) == 1
        assert (await client.get("/console/api/recordings/..%2Fippbx.sqlite3")
                ).status_code == 404
    for _ in range(50):  # the closed stream let go of the registry
        if pbx.app.console._unsubscribe is None:
            break
        await asyncio.sleep(0.02)
    assert pbx.app.console._unsubscribe is None
    await pbx.stop()


async def test_logout_ends_the_event_stream(start_pbx: Start) -> None:
    pbx = await start_pbx([])
    async with console(pbx) as client, console(pbx) as other:
        me = await login(client)
        await login(other)
        stream, kept = events(client), events(other)
        await next_calls(stream, lambda data: True)
        await next_calls(kept, lambda data: True)
        assert (await client.post("/console/logout",
                                  headers={"X-CSRF-Token": me["csrf"]})).status_code == 200

        async def drain() -> None:
            async for _ in stream:
                pass

        await asyncio.wait_for(drain(), 5)  # the server closed it
        assert len(pbx.app.console._streams) == 1  # the other login's stream goes on
        await kept.aclose()
    await pbx.stop()


async def test_history_links_a_stored_recording_only_when_its_file_exists(
        start_pbx: Start) -> None:
    pbx = await start_pbx([], media={"engine": "none"})  # (a recordings directory)
    store, directory = pbx.app.store, pbx.app.media.recordings.directory
    directory.mkdir(parents=True, exist_ok=True)
    for callid, name in (("1.1", "exten-1001-1002-1.1.wav"), ("2.2", "exten-1001-1002-2.2.wav"),
                         ("3.3", "")):
        store.add_cdr(CdrRecord(callid, float(callid[0]), None, 5.0, "1001", "1002", 1, 0,
                                "NO ANSWER", "Internal", recording=name))
    (directory / "exten-1001-1002-1.1.wav").write_bytes(b"RIFF")  # (2.2's file is gone)
    async with console(pbx) as client:
        await login(client)
        items = (await client.get("/console/api/cdr")).json()["items"]
        assert {i["id"]: i["recording"] for i in items} == {
            "1.1": "/console/api/recordings/exten-1001-1002-1.1.wav", "2.2": None, "3.3": None}
        wav = await client.get("/console/api/recordings/exten-1001-1002-1.1.wav")
        assert (wav.status_code, wav.content) == (200, b"RIFF")
    await pbx.stop()


async def test_one_login_cannot_take_every_event_stream(start_pbx: Start) -> None:
    pbx = await start_pbx([])
    async with console(pbx) as client, console(pbx) as other:
        await login(client)
        await login(other)
        streams = [events(client) for _ in range(MAX_STREAMS_PER_LOGIN)]
        for stream in streams:
            await next_calls(stream, lambda data: True)
        refused = await client.get("/console/api/events")
        assert refused.status_code == 429
        extra = events(other)  # (another login still gets one)
        await next_calls(extra, lambda data: True)
        for stream in (*streams, extra):
            await stream.aclose()
    await pbx.stop()
