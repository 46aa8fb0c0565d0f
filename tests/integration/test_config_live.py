"""The running configuration, end to end: changes made through the write API over real
HTTP (`extension/…`, `siptrunk/…`, `outroute/…` add|update|delete) are what real SIP peers
(sipp phones and carriers) meet at once, calls in progress go on, the changes survive a
restart, invalid ones and readonly users change nothing, and Yeastar sessions are told
(ConfigChange).

Every test starts its own ippbx (`PbxHarness`: extensions 1001-1005 with password
`secret100N`, route "9" + number out through the trunks, DID 5550100 on the first trunk
→ 1002) on fresh loopback ports; every wait is bounded.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pbx_harness import PbxHarness, Start, TrunkSpec, ext_password, rejected_with
from reports_harness import SN, Receiver, until
from sipp_harness import Sipp, SippFactory, SippResult, free_port

NUMBER = "5551234"  # dialled as 9 + NUMBER (or 8 + NUMBER where a test adds that route)
NEW, NEW_PASSWORD = "1006", "Fresh-pw-1006"
RO_USER, RO_PASSWORD = "ro", "ropass"
READONLY = (f'[[api.users]]\nusername = "{RO_USER}"\npassword = "{RO_PASSWORD}"\n'
            'role = "readonly"\n')


# -- helpers ----------------------------------------------------------------------------------
async def answer(pbx: PbxHarness, endpoint: str, body: dict[str, Any],
                 token: str | None = None, version: str | None = None) -> dict[str, Any]:
    """The JSON answer of `endpoint` (the harness's admin session unless `token`)."""
    url = (f"http://127.0.0.1:{pbx.app.api.port}/api/{version or pbx.api_version}/"
           f"{endpoint}?token={token or pbx.token}&type=json")
    result: dict[str, Any] = (await pbx.client.post(url, json=body)).json()
    return result


async def ok(pbx: PbxHarness, endpoint: str, body: dict[str, Any],
             token: str | None = None, version: str | None = None) -> dict[str, Any]:
    result = await answer(pbx, endpoint, body, token, version)
    assert result["status"] == "Success", (endpoint, body, result)
    return result


async def refused(pbx: PbxHarness, endpoint: str, body: dict[str, Any], errno: int,
                  token: str | None = None) -> None:
    result = await answer(pbx, endpoint, body, token)
    assert result == {"status": "Failed", "errno": str(errno)}, (endpoint, body, result)


async def login(pbx: PbxHarness, version: str, username: str = "api",
                password: str = "apipass", **fields: str) -> str:
    body = {"username": username, "password": hashlib.md5(password.encode()).hexdigest(),
            "port": "8260", **fields}
    url = f"http://127.0.0.1:{pbx.app.api.port}/api/{version}/login?type=json"
    result = (await pbx.client.post(url, json=body)).json()
    assert result["status"] == "Success", result
    return str(result["token"])


async def ext_info(pbx: PbxHarness, number: str, token: str | None = None) -> dict[str, Any]:
    [info] = (await ok(pbx, "extension/query", {"extid": number}, token))["extinfos"]
    assert info["extnumber"] == number
    return dict(info)


async def ext_list(pbx: PbxHarness) -> dict[str, str]:
    """extensionlist/query as number → status."""
    listed = (await ok(pbx, "extensionlist/query", {}))["extlist"]
    return {e["extnumber"]: e["status"] for e in listed}


async def snapshot(pbx: PbxHarness, token: str | None = None) -> dict[str, Any]:
    """Every object the queries show (statuses included)."""
    return {
        "extensions": (await ok(pbx, "extension/query", {}, token))["extinfos"],
        "trunks": (await ok(pbx, "siptrunk/query", {"trunkname": "all"}, token))["trunks"],
        "outroutes": (await ok(pbx, "outroute/query", {"name": "all"}, token))["outroutes"],
        "inroutes": (await ok(pbx, "inroute/query", {"name": "all"}, token))["inroutes"],
    }


def received(result: SippResult, first_line: str) -> int:
    return sum(1 for m in result.messages()
               if m.direction == "received" and m.first_line.startswith(first_line))


def first_invite(result: SippResult) -> str:
    return next(m.first_line for m in result.messages()
                if m.direction == "received" and m.first_line.startswith("INVITE"))


async def register(sipp: SippFactory, pbx: PbxHarness, ext: str, password: str, *,
                   port: int | None = None) -> SippResult:
    """A REGISTER with digest from `port` (fresh if None): 401, then 200."""
    run = sipp("pbx_register.xml", remote=pbx.sip_address, port=port, calls=1,
               auth=(ext, password), keys={"user": ext}, recv_timeout_ms=3000,
               sipp_timeout_s=10, trace_msg=True)
    await run.astart()
    result = (await run.await_result(10)).assert_ok(calls=1)
    assert pbx.app.pbx.registrar.contacts(ext), f"{ext} not registered"
    return result


async def register_refused(sipp: SippFactory, pbx: PbxHarness, ext: str,
                           password: str) -> SippResult:
    """A REGISTER with digest that ippbx must refuse: challenged (401), then 403."""
    run = sipp("pbx_register_forbidden.xml", remote=pbx.sip_address, calls=1,
               auth=(ext, password), keys={"user": ext}, recv_timeout_ms=3000,
               sipp_timeout_s=10, trace_msg=True)
    await run.astart()
    result = (await run.await_result(10)).assert_ok(calls=1)
    assert (received(result, "SIP/2.0 401"), received(result, "SIP/2.0 403")) == (1, 1)
    assert not pbx.app.pbx.registrar.contacts(ext)
    return result


def calling(sipp: SippFactory, pbx: PbxHarness, ext: str, password: str, dialled: str,
            scenario: str = "uac_auth.xml", **kwargs: Any) -> Sipp:
    """A sipp extension (REGISTER, then INVITE with digest) calling `dialled`."""
    kwargs.setdefault("recv_timeout_ms", 5000)
    kwargs.setdefault("sipp_timeout_s", 20)
    return sipp(scenario, remote=pbx.sip_address, calls=1, service=dialled,
                auth=(ext, password), keys={"user": ext}, **kwargs)


def carrier(sipp: SippFactory, port: int, calls: int = 1) -> Sipp:
    return sipp("uas.xml", port=port, calls=calls, sipp_timeout_s=30, trace_msg=True)


async def talking(pbx: PbxHarness) -> dict[str, str]:
    async def one() -> dict[str, str] | None:
        calls = await pbx.outbound()
        return calls[0] if len(calls) == 1 and calls[0]["status"] == "Talking" else None

    call: dict[str, str] = await pbx.wait_for(one, 10, "one outbound call Talking")
    return call


async def unroutable(sipp: SippFactory, pbx: PbxHarness, tmp_path: Path, dialled: str) -> None:
    """1001 dials `dialled` and gets 404 (no route)."""
    run = await calling(sipp, pbx, "1001", ext_password("1001"), dialled,
                        rejected_with(tmp_path, 404)).astart()
    (await run.await_result(15)).assert_ok(calls=1)


# -- 1. extension/add -------------------------------------------------------------------------
async def test_added_extension_registers_and_calls_at_once(
    start_pbx: Start, sipp: SippFactory
) -> None:
    carrier_port = free_port()
    pbx = await start_pbx([TrunkSpec("carrier", carrier_port)])
    await ok(pbx, "extension/add", {"number": NEW, "registerpassword": NEW_PASSWORD,
                                    "username": "Newcomer"})
    info = await ext_info(pbx, NEW)
    assert (info["registerpassword"], info["username"], info["status"]) == (
        NEW_PASSWORD, "Newcomer", "Unavailable")

    phone_port = free_port()
    await register(sipp, pbx, NEW, NEW_PASSWORD, port=phone_port)
    assert (await ext_info(pbx, NEW))["status"] == "Registered"

    # it is called: 1001 → 1006 rings the phone at the contact it registered, answered
    phone = await sipp("uas.xml", port=phone_port, calls=1, sipp_timeout_s=20,
                       trace_msg=True).astart()
    near = await calling(sipp, pbx, "1001", ext_password("1001"), NEW,
                         duration_ms=500).astart()
    (await near.await_result(15)).assert_ok(calls=1)
    answered = (await phone.await_result(10)).assert_ok(calls=1)
    assert first_invite(answered).startswith(f"INVITE sip:{NEW}@127.0.0.1:{phone_port}")

    # it calls out through the trunk, answered by the carrier
    far = await carrier(sipp, carrier_port).astart()
    out = await calling(sipp, pbx, NEW, NEW_PASSWORD, "9" + NUMBER, duration_ms=500).astart()
    call = await talking(pbx)
    assert (call["from"], call["to"], call["trunk"]) == (NEW, NUMBER, "carrier")
    (await out.await_result(15)).assert_ok(calls=1)
    got = (await far.await_result(10)).assert_ok(calls=1)
    assert first_invite(got).startswith(f"INVITE sip:{NUMBER}@127.0.0.1:{carrier_port} ")
    await pbx.stop()


# -- 2. extension/update of the password ------------------------------------------------------
async def test_password_update_refuses_the_old_and_drops_the_registration(
    start_pbx: Start, sipp: SippFactory
) -> None:
    pbx = await start_pbx([])
    registrar = pbx.app.pbx.registrar
    await register(sipp, pbx, "1003", ext_password("1003"))
    await register(sipp, pbx, "1004", ext_password("1004"))
    assert (await ext_list(pbx))["1003"] == "Registered"

    await ok(pbx, "extension/update", {"extid": "1003", "registerpassword": "changed-1003"})
    # applied before the answer: the registration is gone, the other extension keeps its
    assert not registrar.contacts("1003")
    statuses = await ext_list(pbx)
    assert (statuses["1003"], statuses["1004"]) == ("Unavailable", "Registered")
    assert registrar.contacts("1004")

    await register_refused(sipp, pbx, "1003", ext_password("1003"))  # the old one: 401, 403
    await register(sipp, pbx, "1003", "changed-1003")  # the new one: 401, 200
    info = await ext_info(pbx, "1003")
    assert (info["registerpassword"], info["status"]) == ("changed-1003", "Registered")
    await pbx.stop()


# -- 3. extension/delete during its call ------------------------------------------------------
async def test_deleting_an_extension_in_a_call_lets_the_call_end_normally(
    start_pbx: Start, sipp: SippFactory
) -> None:
    carrier_port = free_port()
    pbx = await start_pbx([TrunkSpec("carrier", carrier_port)])
    registrar = pbx.app.pbx.registrar
    await ok(pbx, "extension/add", {"number": NEW, "registerpassword": NEW_PASSWORD})
    far = await carrier(sipp, carrier_port).astart()
    near = await calling(sipp, pbx, NEW, NEW_PASSWORD, "9" + NUMBER, duration_ms=3000,
                         trace_msg=True).astart()
    call = await talking(pbx)
    assert call["from"] == NEW and registrar.contacts(NEW)

    await ok(pbx, "extension/delete", {"number": NEW})
    assert not registrar.contacts(NEW)  # at once
    assert NEW not in await ext_list(pbx)
    assert await pbx.outbound() == [call]  # the call goes on
    # a new REGISTER of the deleted extension: challenged (ippbx does not tell which
    # extensions exist), then 403 for its credentials
    await register_refused(sipp, pbx, NEW, NEW_PASSWORD)
    assert await pbx.outbound() == [call]

    # the phone hangs up: its BYE is answered 200 and reaches the carrier
    phone = (await near.await_result(15)).assert_ok(calls=1)
    bye_ok = [m for m in phone.messages() if m.direction == "received"
              and m.first_line.startswith("SIP/2.0 200") and "BYE" in (m.header("CSeq") or "")]
    assert len(bye_ok) == 1
    got = (await far.await_result(10)).assert_ok(calls=1)
    assert received(got, "BYE") == 1
    await pbx.wait_idle()
    [cdr] = pbx.app.store.cdrs()
    assert (cdr.outboundid, cdr.status, cdr.hangup_by) == (call["outboundid"], "ANSWERED",
                                                           "caller")
    await pbx.stop()


# -- 4. siptrunk/update -----------------------------------------------------------------------
async def test_trunk_update_sends_the_next_call_to_the_new_address(
    start_pbx: Start, sipp: SippFactory
) -> None:
    old_port, new_port = free_port(), free_port()
    pbx = await start_pbx([TrunkSpec("carrier", old_port)])
    [trunk] = (await ok(pbx, "siptrunk/query", {"trunkname": "carrier"}))["trunks"]
    assert (str(trunk["host"]), str(trunk["port"])) == ("127.0.0.1", str(old_port))
    old = await carrier(sipp, old_port, calls=2).astart()  # would take a second call
    first = await calling(sipp, pbx, "1001", ext_password("1001"), "9" + NUMBER,
                          duration_ms=300).astart()
    (await first.await_result(15)).assert_ok(calls=1)
    await pbx.wait_idle()

    await ok(pbx, "siptrunk/update", {"id": str(trunk["id"]), "host": "127.0.0.1",
                                      "port": str(new_port)})
    [moved] = (await ok(pbx, "siptrunk/query", {"trunkname": "carrier"}))["trunks"]
    assert moved == {**trunk, "port": moved["port"]} and str(moved["port"]) == str(new_port)

    new = await carrier(sipp, new_port).astart()
    second = await calling(sipp, pbx, "1001", ext_password("1001"), "9" + NUMBER,
                           duration_ms=300).astart()
    call = await talking(pbx)
    assert call["trunk"] == "carrier"
    (await second.await_result(15)).assert_ok(calls=1)
    got = (await new.await_result(10)).assert_ok(calls=1)
    assert first_invite(got).startswith(f"INVITE sip:{NUMBER}@127.0.0.1:{new_port} ")
    await pbx.wait_idle()
    old_result = old.stop()  # (SIGUSR1: it still waited for its second call)
    assert received(old_result, "INVITE") == 1 and received(old_result, "BYE") == 1
    await pbx.stop()


# -- 5. outroute/add and outroute/delete ------------------------------------------------------
async def test_outroute_add_and_delete_change_where_the_next_call_goes(
    start_pbx: Start, sipp: SippFactory, tmp_path: Path
) -> None:
    second_port = free_port()
    pbx = await start_pbx([TrunkSpec("carrier", free_port())])
    await unroutable(sipp, pbx, tmp_path, "8" + NUMBER)

    await ok(pbx, "siptrunk/add", {"trunkname": "second", "trunktype": "peer",
                                   "host": "127.0.0.1", "port": str(second_port)})
    await ok(pbx, "outroute/add", {"name": "eight", "prefix": "8", "matchpattern": "X.",
                                   "trunks": "second"})
    [route] = (await ok(pbx, "outroute/query", {"name": "eight"}))["outroutes"]
    assert {k: route[k] for k in ("prefix", "matchpattern", "trunks")} == {
        "prefix": "8", "matchpattern": "X.", "trunks": "second"}

    far = await carrier(sipp, second_port).astart()
    near = await calling(sipp, pbx, "1001", ext_password("1001"), "8" + NUMBER,
                         duration_ms=300).astart()
    call = await talking(pbx)
    assert (call["to"], call["trunk"]) == (NUMBER, "second")
    (await near.await_result(15)).assert_ok(calls=1)
    got = (await far.await_result(10)).assert_ok(calls=1)
    assert first_invite(got).startswith(f"INVITE sip:{NUMBER}@127.0.0.1:{second_port} ")
    await pbx.wait_idle()

    await ok(pbx, "outroute/delete", {"name": "eight"})
    assert (await ok(pbx, "outroute/query", {"name": "eight"}))["outroutes"] == []
    await unroutable(sipp, pbx, tmp_path, "8" + NUMBER)
    assert len(pbx.app.registry) == 0
    await pbx.stop()


# -- 6. a restart on the same store -----------------------------------------------------------
async def test_changes_survive_a_restart(tmp_path: Path, sipp: SippFactory) -> None:
    sip_port, old_port, new_port = free_port(), free_port(), free_port()
    trunks = [TrunkSpec("carrier", old_port)]
    pbx = await PbxHarness.start(tmp_path, trunks, sip_port=sip_port)
    try:
        [trunk] = (await ok(pbx, "siptrunk/query", {"trunkname": "carrier"}))["trunks"]
        await ok(pbx, "extension/add", {"number": "1007", "registerpassword": "pw-1007"})
        await ok(pbx, "extension/update", {"extid": "1004", "registerpassword": "pw-1004"})
        await ok(pbx, "extension/delete", {"number": "1005"})
        await ok(pbx, "siptrunk/update", {"id": str(trunk["id"]), "port": str(new_port)})
        await ok(pbx, "outroute/add", {"name": "eight", "prefix": "8", "matchpattern": "X.",
                                       "trunks": "carrier"})
        before = await snapshot(pbx)
    finally:
        await pbx.stop()

    # a new App, the same TOML (the file still has 1005, the old port, no route "eight")
    pbx = await PbxHarness.start(tmp_path, trunks, sip_port=sip_port)
    try:
        after = await snapshot(pbx)
        assert after == before
        statuses = await ext_list(pbx)
        assert "1007" in statuses and "1005" not in statuses
        assert (await ext_info(pbx, "1004"))["registerpassword"] == "pw-1004"
        [moved] = after["trunks"]
        assert str(moved["port"]) == str(new_port)
        assert [r["name"] for r in after["outroutes"]] == ["external", "eight"]

        # and a call uses them: the new extension, the new route, the trunk's new port
        far = await carrier(sipp, new_port).astart()
        near = await calling(sipp, pbx, "1007", "pw-1007", "8" + NUMBER,
                             duration_ms=300).astart()
        call = await talking(pbx)
        assert (call["from"], call["to"], call["trunk"]) == ("1007", NUMBER, "carrier")
        (await near.await_result(15)).assert_ok(calls=1)
        got = (await far.await_result(10)).assert_ok(calls=1)
        assert first_invite(got).startswith(f"INVITE sip:{NUMBER}@127.0.0.1:{new_port} ")
        await register(sipp, pbx, "1004", "pw-1004")
    finally:
        await pbx.stop()


# -- 7. invalid changes -----------------------------------------------------------------------
async def test_invalid_changes_are_refused_and_change_nothing(
    start_pbx: Start, sipp: SippFactory
) -> None:
    pbx = await start_pbx([TrunkSpec("carrier", free_port())])
    [route] = (await ok(pbx, "outroute/query", {"name": "external"}))["outroutes"]
    [trunk] = (await ok(pbx, "siptrunk/query", {"trunkname": "carrier"}))["trunks"]
    before = await snapshot(pbx)
    revision = pbx.app.running.revision
    cases: list[tuple[str, dict[str, Any], int]] = [
        ("extension/add", {"number": "1001", "registerpassword": "x"}, 10017),  # duplicate
        ("extension/add", {"registerpassword": "x"}, 10004),  # no number
        ("extension/add", {"number": "1009", "vmsecret": "abc"}, 10017),  # PIN not digits
        ("extension/update", {"extid": "1999", "registerpassword": "x"}, 10006),
        ("extension/update", {"extid": "1002", "extnumber": "1001"}, 10017),  # taken
        ("extension/update", {"registerpassword": "x"}, 10004),  # no extid
        ("extension/delete", {"number": "1999"}, 10006),
        ("outroute/add", {"name": "ghost", "matchpattern": "X.", "trunks": "nosuch"}, 10017),
        ("outroute/add", {"name": "bad", "prefix": "7", "matchpattern": "X[",
                          "trunks": "carrier"}, 10017),
        ("outroute/add", {"name": "external", "matchpattern": "X.", "trunks": "carrier"},
         10017),  # duplicate name
        ("outroute/add", {"name": "nopattern", "trunks": "carrier"}, 10004),
        ("outroute/update", {"id": str(route["id"]), "matchpattern": "X["}, 10017),
        ("outroute/update", {"id": str(route["id"]), "trunks": "nosuch"}, 10017),
        ("outroute/update", {"id": "999", "prefix": "7"}, 10017),
        ("outroute/delete", {"name": "nosuch"}, 10017),
        ("siptrunk/delete", {"trunkname": "carrier"}, 10017),  # the routes name it
        ("siptrunk/update", {"id": "999", "port": "5070"}, 10017),
        ("siptrunk/update", {"id": str(trunk["id"]), "port": "99999"}, 10017),
        ("siptrunk/add", {"trunkname": "carrier", "trunktype": "peer",
                          "host": "127.0.0.1"}, 10017),  # duplicate name
        ("inroute/add", {"name": "in", "did": "1", "desttype": "extension", "dest": "1999"},
         10017),
    ]
    for endpoint, body, errno in cases:
        await refused(pbx, endpoint, body, errno)
        assert pbx.app.running.revision == revision, (endpoint, body)
    assert await snapshot(pbx) == before
    # and SIP still meets the configuration as it was
    await register(sipp, pbx, "1001", ext_password("1001"))
    await register(sipp, pbx, "1002", ext_password("1002"))
    await pbx.stop()


# -- 8. a readonly API user -------------------------------------------------------------------
async def test_readonly_user_changes_nothing_and_sees_no_secrets(
    start_pbx: Start, sipp: SippFactory
) -> None:
    provider = TrunkSpec("provider", free_port(), "register",
                         'username = "acct1"\npassword = "provider-pw"')
    pbx = await start_pbx([TrunkSpec("carrier", free_port()), provider],
                          route_trunks=["carrier"], extra=READONLY)
    await ok(pbx, "extension/update", {"extid": "1001", "hasvoicemail": "on",
                                       "vmsecret": "4321"})
    [route] = (await ok(pbx, "outroute/query", {"name": "external"}))["outroutes"]
    [carrier_trunk] = (await ok(pbx, "siptrunk/query", {"trunkname": "carrier"}))["trunks"]
    readonly = await login(pbx, "v0.0.1", RO_USER, RO_PASSWORD)
    # every write endpoint, with a body an admin may send (below, one by one, they work)
    writes: list[tuple[str, dict[str, Any]]] = [
        ("extension/add", {"number": "1009", "registerpassword": "pw-1009"}),
        ("extension/update", {"extid": "1001", "registerpassword": "hijacked"}),
        ("siptrunk/add", {"trunkname": "other", "trunktype": "peer", "host": "127.0.0.1",
                          "port": "5099"}),
        ("siptrunk/update", {"id": str(carrier_trunk["id"]), "port": "5098"}),
        ("outroute/add", {"name": "seven", "prefix": "7", "matchpattern": "X.",
                          "trunks": "carrier"}),
        ("outroute/update", {"id": str(route["id"]), "prefix": "6"}),
        ("inroute/add", {"name": "in2", "did": "5550199", "desttype": "extension",
                         "dest": "1001"}),
        ("inroute/update", {"name": "did", "desttype": "extension", "dest": "1003"}),
        ("inroute/delete", {"name": "did"}),
        ("extension/delete", {"number": "1002"}),
        ("siptrunk/delete", {"trunkname": "provider"}),
        ("outroute/delete", {"name": "external"}),
    ]
    before = await snapshot(pbx)
    revision = pbx.app.running.revision
    for endpoint, body in writes:
        await refused(pbx, endpoint, body, 10003, readonly)
        await refused(pbx, endpoint, {}, 10003, readonly)  # (not 10004: no such endpoint)
    assert pbx.app.running.revision == revision
    assert await snapshot(pbx) == before

    # the readonly user reads everything but the secrets; the admin reads those too
    seen = await ext_info(pbx, "1001", readonly)
    assert (seen["registerpassword"], seen["vmsecret"]) == ("", "")
    admin = await ext_info(pbx, "1001")
    assert (admin["registerpassword"], admin["vmsecret"]) == (ext_password("1001"), "4321")
    assert {k: v for k, v in seen.items() if k not in ("registerpassword", "vmsecret")} == \
        {k: v for k, v in admin.items() if k not in ("registerpassword", "vmsecret")}
    [ro_trunk] = (await ok(pbx, "siptrunk/query", {"trunkname": "provider"}, readonly))["trunks"]
    [admin_trunk] = (await ok(pbx, "siptrunk/query", {"trunkname": "provider"}))["trunks"]
    assert (ro_trunk["password"], admin_trunk["password"]) == ("", "provider-pw")
    await register(sipp, pbx, "1001", ext_password("1001"))  # not "hijacked"

    # the same bodies from the admin: each is applied
    for endpoint, body in writes:
        await ok(pbx, endpoint, body)
    assert pbx.app.running.revision == revision + len(writes)
    await register_refused(sipp, pbx, "1001", ext_password("1001"))
    await register(sipp, pbx, "1001", "hijacked")
    await pbx.stop()


# -- 9. ConfigChange reports ------------------------------------------------------------------
async def test_config_change_is_reported_to_yeastar_sessions_only(
    start_pbx: Start, sipp: SippFactory
) -> None:
    receiver = await Receiver().start()
    pbx = await start_pbx([])
    try:
        port = str(receiver.port)
        await login(pbx, "v0.0.1", url="ov", port=port)
        yeastar = await login(pbx, "v1.1.0", url="ys", port=port)

        def changes(path: str) -> list[dict[str, Any]]:
            return [r for r in receiver.at(path) if r["action"] == "ConfigChange"]

        await ok(pbx, "extension/add", {"number": NEW, "registerpassword": NEW_PASSWORD})
        got = await until(lambda: changes("/ys"), 10, "ConfigChange at the Yeastar session")
        assert got == [{"action": "ConfigChange", "type": "extension", "extid": NEW,
                        "operation": "add", "sn": SN}]

        # the OpenVox session is told of the new extension registering, never of the change
        await register(sipp, pbx, NEW, NEW_PASSWORD)
        await until(lambda: [r for r in receiver.at("/ov") if r["action"] == "ExtensionStatus"
                             and r["extension"] == NEW and r["status"] == "Registered"],
                    10, "the OpenVox session's ExtensionStatus of the new extension")
        # (a change through the Yeastar API is reported alike)
        await ok(pbx, "extension/delete", {"number": NEW}, yeastar, "v1.1.0")
        assert not pbx.app.pbx.registrar.contacts(NEW)
        await until(lambda: len(changes("/ys")) == 2, 10, "the second ConfigChange")
        assert changes("/ys")[1] == {"action": "ConfigChange", "type": "extension",
                                     "extid": NEW, "operation": "del", "sn": SN}
        # reports are stored before the API answers: a ConfigChange for any destination
        # but the Yeastar session's would be delivered to it or still be in the outbox
        queued = [row.dest for row in pbx.app.store.outbox_load()
                  if b'"ConfigChange"' in row.body and not row.dest.endswith("/ys")]
        assert queued == []
        assert changes("/ov") == []
        assert len(changes("/ys")) == 2
    finally:
        await pbx.stop()
        await receiver.stop()
