"""Call-control acceptance tests (issue 6): an application drives live calls through the API
(hang up, blind transfer, click-to-call, hold/unhold) while sipp plays phones and carriers.

Every test starts its own ippbx (`PbxHarness`) on fresh loopback ports and ends with
`await pbx.stop()`, which asserts that no call, B2BUA task or SIP dialog is left.

Cast: extension 1001 is a sipp UAC with digest auth calling "9" + NUMBER out through the
trunk "carrier"; extensions 1002-1004 are sipp UASes registered from their own ports
(`phone()`); carriers are sipp UASes on the trunks' ports. The SDP each party sends names
it (`s=carrier`, `s=target`, `s=offerer`), so the scenarios in tests/sipp/ctl_*.xml check
with `<ereg check_it="true">` whose SDP reached them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pbx_harness import PbxHarness, Start, TrunkSpec, ext_password, phone, rejected_with
from sipp_harness import Sipp, SippFactory, SippResult, free_port

from ippbx.pbx.sdp import direction

NUMBER = "5551234"  # dialled as 9 + NUMBER, goes out through "carrier"
TRUNK_CALLERID = "66666"  # every harness trunk presents this
# a second route: 8 + number through the trunk "second" only
SECOND_ROUTE = """
[[outbound_routes]]
name = "second"
prefix = "8"
match = "X."
trunks = ["second"]
"""

# and 7 + number, a route extension 1002 alone may use
ONLY_1002_ROUTE = """
[[outbound_routes]]
name = "only1002"
prefix = "7"
match = "X."
trunks = ["carrier"]
extensions = ["1002"]
"""



# -- the cast ------------------------------------------------------------------------------
def caller(sipp: SippFactory, pbx: PbxHarness, scenario: str, dialled: str, *,
           ext: str = "1001", **kwargs: Any) -> Sipp:
    """A sipp extension `ext` calling `dialled` through the PBX with digest auth."""
    kwargs.setdefault("recv_timeout_ms", 10000)
    kwargs.setdefault("sipp_timeout_s", 20)
    return sipp(scenario, remote=pbx.sip_address, service=dialled, calls=1,
                auth=(ext, ext_password(ext)), keys={"user": ext}, **kwargs)


def uas(sipp: SippFactory, port: int, scenario: str, **kwargs: Any) -> Sipp:
    """A sipp UAS (a carrier, or a phone once registered) taking one call on `port`."""
    kwargs.setdefault("sipp_timeout_s", 20)
    return sipp(scenario, port=port, calls=1, **kwargs)


def received(result: SippResult, first_line: str) -> list[Any]:
    return [m for m in result.messages()
            if m.direction == "received" and m.first_line.startswith(first_line)]


# -- API helpers ---------------------------------------------------------------------------
async def api(pbx: PbxHarness, endpoint: str, body: Any) -> dict[str, Any]:
    answer = (await pbx.post(endpoint, body)).json()
    assert isinstance(answer, dict), answer
    return answer


async def ok(pbx: PbxHarness, endpoint: str, body: Any) -> dict[str, Any]:
    answer = await api(pbx, endpoint, body)
    assert answer.get("status") == "Success", (endpoint, body, answer)
    return answer


async def fails(pbx: PbxHarness, endpoint: str, body: Any, errno: int) -> None:
    answer = await api(pbx, endpoint, body)
    assert answer == {"status": "Failed", "errno": str(errno)}, (endpoint, body, answer)


async def outbound_with(pbx: PbxHarness, *statuses: str,
                        timeout: float = 10.0) -> list[dict[str, str]]:
    """Wait until outbound/query lists exactly len(statuses) legs with those statuses."""
    async def matching() -> list[dict[str, str]] | None:
        legs = await pbx.outbound()
        return legs if sorted(leg["status"] for leg in legs) == sorted(statuses) else None

    return await pbx.wait_for(matching, timeout, f"outbound legs {statuses}")  # type: ignore[no-any-return]


async def finish(pbx: PbxHarness, *runs: Sipp, retransmissions: int | None = 0) -> None:
    """Every sipp run ends happy, then the PBX is idle and stops clean."""
    for run in runs:
        (await run.await_result(15)).assert_ok(calls=1, retransmissions=retransmissions)
    await pbx.wait_idle()
    assert await pbx.outbound() == [] and await pbx.inbound() == []
    await pbx.stop()


def cdr_of(pbx: PbxHarness, callid: str) -> Any:
    """The CDR written for `callid` (exactly one)."""
    [record] = [r for r in pbx.app.store.cdrs() if r.callid == callid]
    return record


# -- 1. hang up ----------------------------------------------------------------------------
async def test_hangup_errors_without_calls(start_pbx: Start) -> None:
    pbx = await start_pbx([TrunkSpec("carrier", free_port())])
    for endpoint, key in (("outbound/hangup", "outboundid"), ("inbound/hangup", "inboundid"),
                          ("extension/hangup", "extid"), ("extension/hold", "extid"),
                          ("extension/unhold", "extid")):
        await fails(pbx, endpoint, {}, 10004)
        await fails(pbx, endpoint, {key: ""}, 10004)
        await fails(pbx, endpoint, {key: "1589938378.1130"}, 10007)
    await fails(pbx, "extension/hangup", {"extid": "1001"}, 10007)  # idle extension
    await fails(pbx, "calltransfer", {"transferor": "1001", "transferto": "1002"}, 10004)
    await fails(pbx, "calltransfer", {"callid": "1.1", "transferor": "1001",
                                      "transferto": "1002"}, 10007)
    await pbx.stop()


@pytest.mark.parametrize("by", ["outboundid", "extid"])
async def test_hangup_talking_outbound_call(start_pbx: Start, sipp: SippFactory,
                                            by: str) -> None:
    """outbound/hangup (or extension/hangup of the caller): both ends get a BYE."""
    trunk_port = free_port()
    pbx = await start_pbx([TrunkSpec("carrier", trunk_port)])
    far = await uas(sipp, trunk_port, "uas.xml").astart()
    near = await caller(sipp, pbx, "pbx_uac_auth_recv_bye.xml", "9" + NUMBER).astart()
    [leg] = await outbound_with(pbx, "Talking")
    oid = leg["outboundid"]
    callid = pbx.app.registry.by_outboundid(oid).callid  # type: ignore[union-attr]
    endpoint, body = (("outbound/hangup", {"outboundid": oid}) if by == "outboundid"
                      else ("extension/hangup", {"extid": "1001"}))
    assert await ok(pbx, endpoint, body) == {"status": "Success"}
    for run in (near, far):
        (await run.await_result(15)).assert_ok(calls=1)
    await pbx.wait_idle()
    cdr = cdr_of(pbx, callid)
    assert (cdr.status, cdr.type, cdr.outboundid, cdr.caller_ext, cdr.hangup_by) == \
        ("ANSWERED", "Outbound", oid, "1001", "api")
    await fails(pbx, endpoint, body, 10007)  # the call is gone
    await fails(pbx, "outbound/hangup", {"outboundid": oid}, 10007)
    await finish(pbx)


async def test_hangup_ringing_outbound_call(start_pbx: Start, sipp: SippFactory,
                                            tmp_path: Path) -> None:
    """Before the answer: the carrier gets CANCEL, the caller 487. Hold and transfer need
    an answered call (10015)."""
    trunk_port = free_port()
    pbx = await start_pbx([TrunkSpec("carrier", trunk_port)])
    far = await uas(sipp, trunk_port, "uas_ring_forever.xml").astart()
    near = await caller(sipp, pbx, rejected_with(tmp_path, 487), "9" + NUMBER).astart()
    [leg] = await outbound_with(pbx, "Progress")
    oid = leg["outboundid"]
    callid = pbx.app.registry.by_outboundid(oid).callid  # type: ignore[union-attr]
    await fails(pbx, "extension/hold", {"extid": "1001"}, 10015)
    await fails(pbx, "calltransfer",
                {"callid": callid, "transferor": "1001", "transferto": "1002"}, 10015)
    await ok(pbx, "outbound/hangup", {"outboundid": oid})
    for run in (near, far):  # caller: 487 + ACK; carrier: CANCEL → 200, 487, ACK
        (await run.await_result(15)).assert_ok(calls=1)
    await pbx.wait_idle()
    await fails(pbx, "outbound/hangup", {"outboundid": oid}, 10007)
    cdr = cdr_of(pbx, callid)
    assert (cdr.status, cdr.cause, cdr.type, cdr.hangup_by) == \
        ("NO ANSWER", 487, "Outbound", "api")
    await finish(pbx)


async def test_hangup_inbound_call(start_pbx: Start, sipp: SippFactory) -> None:
    """inbound/hangup: the carrier that called in and extension 1002 both get a BYE."""
    trunk_port = free_port()
    pbx = await start_pbx([TrunkSpec("carrier", trunk_port)])
    ext = await phone(sipp, pbx, "1002", "uas.xml")
    far = await sipp("ctl_uac_recv_bye.xml", remote=pbx.sip_address, port=trunk_port,
                     service="5550100", calls=1, recv_timeout_ms=10000,
                     sipp_timeout_s=20).astart()

    async def talking() -> list[dict[str, Any]]:
        calls = await pbx.inbound()
        return calls if len(calls) == 1 and calls[0]["status"] == "Talking" else []

    [call] = await pbx.wait_for(talking, 10, "the inbound call to be answered")
    iid = call["inboundid"]
    await fails(pbx, "outbound/hangup", {"outboundid": iid}, 10007)  # not an outbound id
    await ok(pbx, "inbound/hangup", {"inboundid": iid})
    for run in (far, ext):
        (await run.await_result(15)).assert_ok(calls=1)
    await pbx.wait_idle()
    await fails(pbx, "inbound/hangup", {"inboundid": iid}, 10007)
    await fails(pbx, "extension/hangup", {"extid": "1002"}, 10007)
    await finish(pbx)


# -- 2. blind transfer -----------------------------------------------------------------------
@pytest.mark.parametrize("dialect", ["openvox", "yeastar"])
async def test_transfer_outbound_call_to_extension(start_pbx: Start, sipp: SippFactory,
                                                   dialect: str) -> None:
    """1001 → carrier, transferred to extension 1002: 1001 gets BYE, 1002 an INVITE with the
    carrier's SDP, the carrier a re-INVITE with 1002's; the outbound leg carries on."""
    trunk_port = free_port()
    pbx = await start_pbx([TrunkSpec("carrier", trunk_port)], extra=ONLY_1002_ROUTE)
    far = await uas(sipp, trunk_port, "ctl_uas_carrier_reinvite.xml", trace_msg=True).astart()
    target = await phone(sipp, pbx, "1002", "ctl_uas_target.xml", trace_msg=True)
    near = await caller(sipp, pbx, "pbx_uac_auth_recv_bye.xml", "9" + NUMBER).astart()
    [before] = await outbound_with(pbx, "Talking")
    oid = before["outboundid"]
    call = pbx.app.registry.by_outboundid(oid)
    assert call is not None
    callid = call.callid
    # the target is routed as the transferor would dial it: 1001 may not use route 7
    await fails(pbx, "calltransfer",
                {"callid": callid, "transferor": "1001", "transferto": "75550199"}, 10024)
    await fails(pbx, "calltransfer",  # not a party of this call
                {"callid": callid, "transferor": "1003", "transferto": "1002"}, 10007)

    if dialect == "openvox":
        answer = await ok(pbx, "calltransfer",
                          {"callid": callid, "transferor": "1001", "transferto": "1002"})
    else:
        await pbx.login("v1.1.0")
        answer = await ok(pbx, "outbound/transfer_number", {"outboundid": oid, "number": "1002"})
        assert answer["callid"] == callid

    (await near.await_result(15)).assert_ok(calls=1)  # 1001 got its BYE
    [after] = await outbound_with(pbx, "Talking")
    assert after == before  # the same carrier leg, still talking

    async def reinvited() -> bool:
        return call.callee is not None and call.caller.extension == "1002"

    await pbx.wait_for(reinvited, 10, "1002 to replace 1001")
    assert pbx.app.registry.find(callid) is call and call.callid == callid
    assert [c.callid for c in pbx.app.registry.by_extension("1002")] == [callid]
    assert pbx.app.registry.by_extension("1001") == []

    await ok(pbx, "outbound/hangup", {"outboundid": oid})
    far_result = (await far.await_result(15)).assert_ok(calls=1)
    target_result = (await target.await_result(15)).assert_ok(calls=1)
    [_, reinvite] = received(far_result, "INVITE")
    assert "s=target" in reinvite.text
    [invite] = received(target_result, "INVITE")
    assert "s=carrier" in invite.text
    await finish(pbx)


async def test_transfer_after_the_phone_put_the_call_on_hold(start_pbx: Start,
                                                             sipp: SippFactory) -> None:
    """1001 holds the carrier from its phone (re-INVITE a=sendonly, relayed; the carrier
    answers a=recvonly), then is transferred to 1002 by the API: 1002 is offered the
    carrier's SDP as sendrecv, not the recvonly answer to 1001's hold, and the call is
    Talking again."""
    trunk_port = free_port()
    pbx = await start_pbx([TrunkSpec("carrier", trunk_port)])
    far = await uas(sipp, trunk_port, "ctl_uas_carrier_held_reinvite.xml").astart()
    target = await phone(sipp, pbx, "1002", "ctl_uas_target.xml", trace_msg=True)
    near = await caller(sipp, pbx, "ctl_uac_auth_hold_recv_bye.xml", "9" + NUMBER,
                        duration_ms=200).astart()
    [held] = await outbound_with(pbx, "Wait")
    callid = pbx.app.registry.by_outboundid(held["outboundid"]).callid  # type: ignore[union-attr]
    await ok(pbx, "calltransfer", {"callid": held["outboundid"],  # any leg id names the call
                                   "transferor": "1001", "transferto": "1002"})
    (await near.await_result(15)).assert_ok(calls=1)
    [after] = await outbound_with(pbx, "Talking")
    assert after == {**held, "status": "Talking"}
    assert pbx.app.registry.find(held["outboundid"]).caller.extension == "1002"  # type: ignore[union-attr]
    await fails(pbx, "calltransfer", {"callid": callid, "transferor": "1001",
                                      "transferto": "1003"}, 10007)  # 1001 has left
    await ok(pbx, "outbound/hangup", {"outboundid": held["outboundid"]})
    target_result = (await target.await_result(15)).assert_ok(calls=1)
    [invite] = received(target_result, "INVITE")
    assert "s=carrier" in invite.text and "a=recvonly" not in invite.text
    await finish(pbx, far)


async def test_transfer_outbound_call_to_external_number(start_pbx: Start,
                                                         sipp: SippFactory) -> None:
    """1001 → carrier, transferred to 8 + number through the trunk "second": a new
    outbound leg appears beside the carrier's, both Talking, each with its own id."""
    trunk_port, second_port = free_port(), free_port()
    pbx = await start_pbx([TrunkSpec("carrier", trunk_port), TrunkSpec("second", second_port)],
                          route_trunks=["carrier"], extra=SECOND_ROUTE)
    far = await uas(sipp, trunk_port, "ctl_uas_carrier_reinvite.xml").astart()
    second = await uas(sipp, second_port, "ctl_uas_target.xml", trace_msg=True).astart()
    near = await caller(sipp, pbx, "pbx_uac_auth_recv_bye.xml", "9" + NUMBER).astart()
    [before] = await outbound_with(pbx, "Talking")
    callid = pbx.app.registry.by_outboundid(before["outboundid"]).callid  # type: ignore[union-attr]

    await ok(pbx, "calltransfer",
             {"callid": callid, "transferor": "1001", "transferto": "85550199"})
    (await near.await_result(15)).assert_ok(calls=1)
    legs = await outbound_with(pbx, "Talking", "Talking")
    assert before in legs
    [new] = [leg for leg in legs if leg != before]
    assert new["outboundid"] != before["outboundid"]
    # placed on behalf of the transferor: `from` is 1001, as if it had dialled it
    assert new == {"outboundid": new["outboundid"], "from": "1001", "to": "5550199",
                   "trunk": "second", "status": "Talking"}
    assert pbx.app.registry.by_outboundid(new["outboundid"]).callid == callid  # type: ignore[union-attr]

    await ok(pbx, "outbound/hangup", {"outboundid": before["outboundid"]})
    second_result = (await second.await_result(15)).assert_ok(calls=1)
    [invite] = received(second_result, "INVITE")
    assert invite.first_line.startswith(f"INVITE sip:5550199@127.0.0.1:{second_port} ")
    (await far.await_result(15)).assert_ok(calls=1)
    await pbx.wait_idle()
    await fails(pbx, "outbound/hangup", {"outboundid": new["outboundid"]}, 10007)
    cdr = cdr_of(pbx, callid)  # two trunk legs we placed: still an outbound call
    assert (cdr.status, cdr.type, cdr.inboundid) == ("ANSWERED", "Outbound", "")
    await finish(pbx)


async def test_hold_then_transfer_inbound_call(start_pbx: Start, sipp: SippFactory) -> None:
    """Carrier → DID → 1002, put on hold by 1002, then `inbound/transfer_number` (Yeastar)
    to 1003: the carrier's re-INVITE carries 1003's SDP, the inboundid stays, and the call
    is off hold (Talking) once the carrier talks to 1003."""
    trunk_port = free_port()
    pbx = await start_pbx([TrunkSpec("carrier", trunk_port)], api_version="v1.1.0")
    first = await phone(sipp, pbx, "1002", "ctl_uas_target.xml")
    second = await phone(sipp, pbx, "1003", "ctl_uas_target.xml")
    far = await sipp("ctl_uac_hold_transfer.xml", remote=pbx.sip_address, port=trunk_port,
                     service="5550100", calls=1, recv_timeout_ms=10000, sipp_timeout_s=20,
                     trace_msg=True).astart()

    async def inbound(status: str, extid: str) -> list[dict[str, Any]]:
        calls = await pbx.inbound()
        return calls if len(calls) == 1 and calls[0]["status"] == status \
            and calls[0]["callee"] == [{"extid": extid}] else []

    [talking] = await pbx.wait_for(lambda: inbound("Talking", "1002"), 10, "1002 talking")
    iid = talking["inboundid"]
    await ok(pbx, "extension/hold", {"extid": "1002"})
    await pbx.wait_for(lambda: inbound("Wait", "1002"), 10, "the call on hold")
    # a transfer to nobody keeps the call as it is
    for number, errno in (("1005", 10006), ("0123", 10011)):
        await fails(pbx, "inbound/transfer_number", {"inboundid": iid, "number": number}, errno)
    await fails(pbx, "inbound/transfer_number", {"inboundid": iid}, 10004)
    await fails(pbx, "inbound/transfer_number", {"inboundid": "1.1", "number": "1003"}, 10007)
    answer = await ok(pbx, "inbound/transfer_number", {"inboundid": iid, "number": "1003"})
    assert answer["callid"] == iid  # the caller leg's id is the call's id
    (await first.await_result(15)).assert_ok(calls=1)  # 1002 got its BYE
    [after] = await pbx.wait_for(lambda: inbound("Talking", "1003"), 10, "1003 talking")
    assert after == {**talking, "callee": [{"extid": "1003"}]}

    await ok(pbx, "inbound/hangup", {"inboundid": iid})
    far_result = (await far.await_result(15)).assert_ok(calls=1)
    [hold, transfer] = received(far_result, "INVITE")  # (it sent the first one)
    assert "a=sendonly" in hold.text
    assert f"s=target-{second.port}" in transfer.text and "a=sendonly" not in transfer.text
    await finish(pbx, second)


@pytest.mark.parametrize("how", ["outbound/hangup", "B2BUA stopping"])
async def test_hangup_while_transfer_target_rings(start_pbx: Start, sipp: SippFactory,
                                                  how: str) -> None:
    """outbound/hangup (or a PBX shutdown) while the transfer target (1002) still rings:
    the carrier gets a BYE, 1002 a CANCEL, nothing is left."""
    trunk_port = free_port()
    pbx = await start_pbx([TrunkSpec("carrier", trunk_port)])
    far = await uas(sipp, trunk_port, "uas.xml").astart()
    target = await phone(sipp, pbx, "1002", "uas_ring_forever.xml")
    near = await caller(sipp, pbx, "pbx_uac_auth_recv_bye.xml", "9" + NUMBER).astart()
    [leg] = await outbound_with(pbx, "Talking")
    callid = pbx.app.registry.by_outboundid(leg["outboundid"]).callid  # type: ignore[union-attr]
    await ok(pbx, "calltransfer", {"callid": callid, "transferor": "1001", "transferto": "1002"})
    (await near.await_result(15)).assert_ok(calls=1)

    async def ringing() -> bool:
        call = pbx.app.registry.get(callid)
        bridge = pbx.app.pbx.b2bua.bridges.get(callid)
        return call is not None and call.caller.extension == "1002" and bridge is not None \
            and bridge.b_invite is not None and bridge.b_invite.provisional is not None

    await pbx.wait_for(ringing, 10, "1002 to ring")
    if how == "outbound/hangup":
        await ok(pbx, "outbound/hangup", {"outboundid": leg["outboundid"]})
    else:
        await pbx.app.pbx.b2bua.stop()  # cancels the transfer's task
        assert len(pbx.app.registry) == 0
    await finish(pbx, far, target)


# -- 3. click-to-call ------------------------------------------------------------------------
async def test_dial_outbound_click_to_call(start_pbx: Start, sipp: SippFactory) -> None:
    """extension/dial_outbound: 1003 is rung first (no SDP, auto-answer header), offers SDP
    in its 200; the carrier gets that offer and its answer reaches 1003 in the ACK."""
    trunk_port = free_port()
    pbx = await start_pbx([TrunkSpec("carrier", trunk_port)])
    far = await uas(sipp, trunk_port, "ctl_uas_target.xml", trace_msg=True).astart()
    ext = await phone(sipp, pbx, "1003", "ctl_uas_offer.xml", trace_msg=True)
    answer = await ok(pbx, "extension/dial_outbound",
                      {"extid": "1003", "outto": "9" + NUMBER, "autoanswer": "yes"})
    [leg] = await outbound_with(pbx, "Talking")
    assert leg == {"outboundid": leg["outboundid"], "from": "1003", "to": NUMBER,
                   "trunk": "carrier", "status": "Talking"}
    call = pbx.app.registry.by_outboundid(leg["outboundid"])
    assert call is not None and answer["callid"] == call.callid
    await ok(pbx, "outbound/hangup", {"outboundid": leg["outboundid"]})

    # 1003's 200 waits un-ACKed for the carrier's answer: sipp retransmits it meanwhile
    ext_result = (await ext.await_result(15)).assert_ok(calls=1, retransmissions=None)
    [invite] = received(ext_result, "INVITE")
    assert invite.header("Content-Length") == "0" and "\n\n" not in invite.text.strip()
    assert "answer-after=0" in (invite.header("Call-Info") or "")
    [ack] = received(ext_result, "ACK")
    assert "s=target" in ack.text
    far_result = (await far.await_result(15)).assert_ok(calls=1)
    [invite] = received(far_result, "INVITE")
    assert "s=offerer" in invite.text
    await finish(pbx)


async def test_dial_extension_click_to_call(start_pbx: Start, sipp: SippFactory) -> None:
    """extension/dial_extension 1003 → 1004 (no auto-answer), hung up by extension."""
    pbx = await start_pbx([TrunkSpec("carrier", free_port())])
    callee = await phone(sipp, pbx, "1004", "ctl_uas_target.xml")
    ext = await phone(sipp, pbx, "1003", "ctl_uas_offer.xml", trace_msg=True)
    answer = await ok(pbx, "extension/dial_extension", {"caller": "1003", "callee": "1004"})

    async def talking() -> bool:
        call = pbx.app.registry.get(answer["callid"])
        return call is not None and all(leg.status == "Talking" for leg in call.legs()) \
            and len(call.legs()) == 2

    await pbx.wait_for(talking, 10, "1003 and 1004 to talk")
    assert await pbx.outbound() == []
    await ok(pbx, "extension/hangup", {"extid": "1004"})
    ext_result = (await ext.await_result(15)).assert_ok(calls=1, retransmissions=None)
    [invite] = received(ext_result, "INVITE")
    assert invite.header("Call-Info") is None
    await finish(pbx, callee)


@pytest.mark.parametrize("case", ["extension busy", "carrier busy",
                                  "hung up while the extension rings",
                                  "hung up while the carrier rings",
                                  "PBX stopping while the carrier rings"])
async def test_click_to_call_that_fails_leaves_nothing(start_pbx: Start, sipp: SippFactory,
                                                       case: str) -> None:
    """A click-to-call that never connects: the extension refuses (486), or the carrier
    does once the extension answered (the extension's 200 is ACKed with its own SDP made
    inactive, then BYE), or the API hangs up first (CANCEL to whoever rings), or the
    B2BUA stops meanwhile (the same, from the cancelled click-to-call task)."""
    trunk_port = free_port()
    pbx = await start_pbx([TrunkSpec("carrier", trunk_port)])
    ext_scenario, far_scenario = {
        "extension busy": ("uas_busy.xml", None),
        "carrier busy": ("ctl_uas_offer_dropped.xml", "uas_busy.xml"),
        "hung up while the extension rings": ("uas_ring_forever.xml", None),
        "hung up while the carrier rings": ("ctl_uas_offer_dropped.xml",
                                            "uas_ring_forever.xml"),
        "PBX stopping while the carrier rings": ("ctl_uas_offer_dropped.xml",
                                                 "uas_ring_forever.xml"),
    }[case]
    runs = [] if far_scenario is None else [await uas(sipp, trunk_port, far_scenario).astart()]
    runs.append(await phone(sipp, pbx, "1003", ext_scenario))
    answer = await ok(pbx, "extension/dial_outbound",
                      {"extid": "1003", "outto": "9" + NUMBER, "autoanswer": "1"})
    callid = answer["callid"]
    if case == "hung up while the extension rings":
        async def ringing() -> bool:
            bridge = pbx.app.pbx.b2bua.bridges.get(callid)
            return bridge is not None and bridge.b_invite is not None \
                and bridge.b_invite.provisional is not None

        await pbx.wait_for(ringing, 10, "1003 to ring")
        await ok(pbx, "extension/hangup", {"extid": "1003"})
    elif case == "hung up while the carrier rings":
        [leg] = await outbound_with(pbx, "Progress")
        await ok(pbx, "outbound/hangup", {"outboundid": leg["outboundid"]})
    elif case == "PBX stopping while the carrier rings":
        await outbound_with(pbx, "Progress")
        await pbx.app.pbx.b2bua.stop()  # cancels the click-to-call's task
        assert len(pbx.app.registry) == 0
    for run in runs:
        (await run.await_result(15)).assert_ok(calls=1, retransmissions=None)
    await pbx.wait_idle()
    await fails(pbx, "extension/hangup", {"extid": "1003"}, 10007)
    await finish(pbx)


async def test_click_to_call_errors(start_pbx: Start, sipp: SippFactory) -> None:
    pbx = await start_pbx([TrunkSpec("carrier", free_port())], extra=ONLY_1002_ROUTE)
    await fails(pbx, "extension/dial_outbound", {"outto": "95551234"}, 10004)
    await fails(pbx, "extension/dial_outbound", {"extid": "1003"}, 10004)
    await fails(pbx, "extension/dial_extension", {"caller": "1003"}, 10004)
    await fails(pbx, "extension/dial_outbound", {"extid": "1999", "outto": "95551234"}, 10006)
    await fails(pbx, "extension/dial_outbound", {"extid": "1005", "outto": "95551234"}, 10006)
    await fails(pbx, "extension/dial_extension", {"caller": "1005", "callee": "1004"}, 10006)
    ext = await phone(sipp, pbx, "1003", "ctl_uas_offer.xml")  # registered, never rung
    await fails(pbx, "extension/dial_outbound", {"extid": "1003", "outto": "0123"}, 10011)
    for callee in ("1999", "1005", "95551234"):  # not an extension, or not registered
        await fails(pbx, "extension/dial_extension", {"caller": "1003", "callee": callee},
                    10006)
    await fails(pbx, "extension/dial_outbound", {"extid": "1003", "outto": "75551234"}, 10024)
    assert len(pbx.app.registry) == 0
    ext.kill()
    await pbx.stop()


# -- 4. hold / unhold ------------------------------------------------------------------------
@pytest.mark.parametrize("pace", ["api", "at once"])
async def test_hold_and_unhold(start_pbx: Start, sipp: SippFactory, pace: str) -> None:
    """extension/hold then unhold of 1001's call: the carrier gets re-INVITEs with
    a=sendonly, then a=sendrecv; outbound/query shows Wait while held. Asked for at once,
    the second re-INVITE waits for the first (RFC 3261 §14.1: never two at a time)."""
    trunk_port = free_port()
    pbx = await start_pbx([TrunkSpec("carrier", trunk_port)])
    far = await uas(sipp, trunk_port, "ctl_uas_hold_unhold.xml", trace_msg=True).astart()
    near = await caller(sipp, pbx, "pbx_uac_auth_recv_bye.xml", "9" + NUMBER).astart()
    [talking] = await outbound_with(pbx, "Talking")
    if pace == "api":
        await ok(pbx, "extension/hold", {"extid": "1001"})
        [held] = await outbound_with(pbx, "Wait")
        assert held == {**talking, "status": "Wait"}
        await ok(pbx, "extension/unhold", {"extid": "1001"})
    else:  # in one go, faster than any HTTP client could
        call = pbx.app.registry.by_outboundid(talking["outboundid"])
        assert call is not None
        bridge = pbx.app.pbx.b2bua.bridges[call.callid]
        before = bridge.sdp["a"]
        pbx.app.pbx.control.hold(call.callid, "1001", True)
        pbx.app.pbx.control.hold(call.callid, "1001", False)

        async def unheld() -> bool:  # 1001's SDP as last offered: sendrecv once more
            return bridge.sdp["a"] != before and direction(bridge.sdp["a"]) == "sendrecv"

        await pbx.wait_for(unheld, 10, "the unhold re-INVITE to be answered")
    [resumed] = await outbound_with(pbx, "Talking")
    assert resumed == talking
    await ok(pbx, "outbound/hangup", {"outboundid": talking["outboundid"]})
    far_result = (await far.await_result(15)).assert_ok(calls=1)
    [_, hold, unhold] = received(far_result, "INVITE")
    assert "a=sendonly" in hold.text and "a=sendrecv" not in hold.text
    assert "a=sendrecv" in unhold.text and "a=sendonly" not in unhold.text
    await finish(pbx, near)
