"""PBX acceptance tests (issue 4): real sipp phones and carriers calling through a real ippbx.

Every test starts its own ippbx (`PbxHarness`) on fresh loopback ports, plays extensions
and carriers with sipp scenarios from tests/sipp/, watches the call through the HTTP API
(`outbound/query`, `inbound/query`), checks what each sipp saw, and ends with
`await pbx.stop()`, which asserts that no call, B2BUA task or SIP dialog is left.

Extensions 1001-1005 have password `secret100N`; route "9" + number goes out through
the trunks (prefix stripped); DID 5550100 on the first trunk rings extension 1002.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import defusedxml.ElementTree as safe_et
import pytest
from pbx_harness import PbxHarness, Start, TrunkSpec, ext_password, rejected_with
from sipp_harness import Sipp, SippFactory, SippResult, free_port

LEG_ID = re.compile(r"^\d+\.\d+$")
CALLER = "1001"
NUMBER = "5551234"  # dialled as 9 + NUMBER
TRUNK_CALLERID = "66666"  # every harness trunk presents this; extensions have no callerid



def caller(sipp: SippFactory, pbx: PbxHarness, scenario: str, dialled: str, *,
           ext: str = CALLER, **kwargs: Any) -> Sipp:
    """A sipp extension `ext` calling `dialled` through the PBX with digest auth."""
    kwargs.setdefault("recv_timeout_ms", 5000)
    kwargs.setdefault("sipp_timeout_s", 20)
    kwargs.setdefault("calls", 1)
    return sipp(scenario, remote=pbx.sip_address, service=dialled,
                auth=(ext, ext_password(ext)), keys={"user": ext}, **kwargs)


def carrier(sipp: SippFactory, port: int, scenario: str = "uas.xml", **kwargs: Any) -> Sipp:
    kwargs.setdefault("sipp_timeout_s", 20)
    kwargs.setdefault("calls", 1)
    return sipp(scenario, port=port, **kwargs)


def received(result: SippResult, first_line: str) -> int:
    return sum(1 for m in result.messages()
               if m.direction == "received" and m.first_line.startswith(first_line))


async def wait_status(pbx: PbxHarness, status: str, timeout: float = 10.0) -> dict[str, str]:
    async def one_with_status() -> dict[str, str] | None:
        calls = await pbx.outbound()
        return calls[0] if len(calls) == 1 and calls[0]["status"] == status else None

    return await pbx.wait_for(one_with_status, timeout, f"one outbound call {status}")  # type: ignore[no-any-return]


async def xml_outbound(pbx: PbxHarness, body: str) -> list[dict[str, str]]:
    answer = await pbx.post("outbound/query", body, type="xml")
    assert answer.text.startswith('<?xml version="1.0" encoding="UTF-8" ?>')
    root = safe_et.fromstring(answer.content)
    assert root.tag == "xml" and root.findtext("status") == "Success", answer.text
    return [{child.tag: child.text or "" for child in call} for call in root.findall("outbound")]


# -- 1. outbound, answered -------------------------------------------------------------------
@pytest.mark.parametrize("hangup", ["caller", "carrier"])
async def test_outbound_call_answered_shows_talking(
    start_pbx: Start, sipp: SippFactory, hangup: str
) -> None:
    trunk_port = free_port()
    pbx = await start_pbx([TrunkSpec("carrier", trunk_port)])
    if hangup == "caller":  # the extension hangs up after 3 s
        far = carrier(sipp, trunk_port, "uas.xml", trace_msg=True)
        near = caller(sipp, pbx, "uac_auth.xml", "9" + NUMBER, duration_ms=3000)
    else:  # the carrier does
        far = carrier(sipp, trunk_port, "pbx_uas_bye.xml", duration_ms=3000, trace_msg=True)
        near = caller(sipp, pbx, "pbx_uac_auth_recv_bye.xml", "9" + NUMBER)
    await far.astart()
    await near.astart()

    call = await wait_status(pbx, "Talking")
    # `from` is the calling extension; the carrier is shown the trunk's caller id (below)
    assert call == {"outboundid": call["outboundid"], "from": "1001", "to": NUMBER,
                    "trunk": "carrier", "status": "Talking"}
    oid = call["outboundid"]
    assert LEG_ID.match(oid), oid
    assert await pbx.outbound("all") == [call]
    assert await pbx.outbound(oid) == [call]
    assert await pbx.outbound(f"1.1, {oid},2.2") == [call]
    assert await pbx.outbound("1.1") == []
    assert await xml_outbound(pbx, "") == [call]
    assert await xml_outbound(pbx, f"<xml><outboundid>{oid}</outboundid></xml>") == [call]
    assert len(pbx.app.registry) == 1

    (await near.await_result(15)).assert_ok(calls=1)
    far_result = (await far.await_result(10)).assert_ok(calls=1)
    await pbx.wait_idle()
    assert await pbx.outbound() == []
    [cdr] = pbx.app.store.cdrs()  # who hung up is on the record
    assert (cdr.outboundid, cdr.status) == (oid, "ANSWERED")
    assert cdr.hangup_by == ("caller" if hangup == "caller" else "callee")
    # what the carrier got: the stripped number, the trunk's caller id, one hop less
    invite = next(m for m in far_result.messages()
                  if m.direction == "received" and m.first_line.startswith("INVITE"))
    assert invite.first_line.startswith(f"INVITE sip:{NUMBER}@127.0.0.1:{trunk_port} ")
    assert f"<sip:{TRUNK_CALLERID}@" in (invite.header("From") or "")
    assert invite.header("Max-Forwards") == "69"
    await pbx.stop()


async def test_caller_never_acks_both_sides_get_bye(start_pbx: Start, sipp: SippFactory) -> None:
    """No ACK for our 200 within 64*T1: the session ends with a BYE to both sides (RFC 3261
    §13.3.1.4). T1 for the UA's 2xx retransmissions is cut to 50 ms (read when a 2xx goes
    out), so ippbx gives up after 3.2 s instead of 32 s."""
    trunk_port = free_port()
    pbx = await start_pbx([TrunkSpec("carrier", trunk_port)])
    pbx.app.pbx.ua.t1 = 0.05
    far = await carrier(sipp, trunk_port, "uas.xml").astart()
    near = await caller(sipp, pbx, "pbx_uac_auth_no_ack.xml", "9" + NUMBER,
                        recv_timeout_ms=8000, trace_msg=True).astart()
    result = (await near.await_result(15)).assert_ok(calls=1, retransmissions=None)
    assert received(result, "SIP/2.0 200") >= 5  # our 200, retransmitted until we gave up
    assert received(result, "BYE ") == 1
    (await far.await_result(10)).assert_ok(calls=1)  # ACK, then our BYE
    await pbx.wait_idle()
    await pbx.stop()


async def test_hold_shows_wait(start_pbx: Start, sipp: SippFactory) -> None:
    """A re-INVITE with a=sendonly is relayed to the carrier and the call shows `Wait`."""
    trunk_port = free_port()
    pbx = await start_pbx([TrunkSpec("carrier", trunk_port)])
    far = await carrier(sipp, trunk_port, "pbx_uas_hold.xml", trace_msg=True).astart()
    near = await caller(sipp, pbx, "pbx_uac_auth_hold.xml", "9" + NUMBER,
                        duration_ms=500).astart()
    talking = await wait_status(pbx, "Talking")
    held = await wait_status(pbx, "Wait", timeout=5)
    assert held == {**talking, "status": "Wait"}
    (await near.await_result(15)).assert_ok(calls=1)
    result = (await far.await_result(10)).assert_ok(calls=1)
    reinvite = [m for m in result.messages()
                if m.direction == "received" and m.first_line.startswith("INVITE")][1]
    assert "a=sendonly" in reinvite.text
    await pbx.wait_idle()
    await pbx.stop()


# -- 2. ringing --------------------------------------------------------------------------------
async def test_ringing_shows_progress_then_talking(start_pbx: Start, sipp: SippFactory) -> None:
    trunk_port = free_port()
    pbx = await start_pbx([TrunkSpec("carrier", trunk_port)])
    far = await carrier(sipp, trunk_port, "pbx_uas_ring_then_answer.xml").astart()
    near = await caller(sipp, pbx, "uac_auth.xml", "9" + NUMBER, duration_ms=1000,
                        trace_msg=True).astart()

    ringing = await wait_status(pbx, "Progress", timeout=5)
    answered = await wait_status(pbx, "Talking", timeout=5)
    assert answered["outboundid"] == ringing["outboundid"]
    assert {**ringing, "status": "Talking"} == answered

    result = (await near.await_result(15)).assert_ok(calls=1)
    assert received(result, "SIP/2.0 180") == 1  # the carrier's ringing reached the phone
    (await far.await_result(10)).assert_ok(calls=1)
    await pbx.wait_idle()
    assert await pbx.outbound() == []
    await pbx.stop()


# -- 3. inbound --------------------------------------------------------------------------------
async def test_inbound_call_reaches_registered_extension(
    start_pbx: Start, sipp: SippFactory
) -> None:
    trunk_port = free_port()
    pbx = await start_pbx([TrunkSpec("carrier", trunk_port)])
    phone_port = free_port()
    # sipp matches messages by Call-ID: register first, then answer calls on that port
    register = sipp("pbx_register.xml", remote=pbx.sip_address, port=phone_port, calls=1,
                    auth=("1002", ext_password("1002")), keys={"user": "1002"},
                    recv_timeout_ms=3000, sipp_timeout_s=10)
    await register.astart()
    (await register.await_result(10)).assert_ok(calls=1)
    [binding] = pbx.app.pbx.registrar.contacts("1002")
    assert binding.contact == f"sip:1002@127.0.0.1:{phone_port}"

    phone = await carrier(sipp, phone_port, "uas.xml").astart()
    # the carrier calls from the trunk's own address (that is how the trunk is recognised)
    far = sipp("uac.xml", remote=pbx.sip_address, port=trunk_port, service="5550100",
               calls=1, duration_ms=3000, recv_timeout_ms=5000, sipp_timeout_s=20)
    await far.astart()

    async def talking() -> list[dict[str, Any]]:
        calls = await pbx.inbound()
        return calls if len(calls) == 1 and calls[0]["status"] == "Talking" else []

    [call] = await pbx.wait_for(talking, 10, "the inbound call to be answered")
    assert LEG_ID.match(call["inboundid"]), call
    assert call == {"inboundid": call["inboundid"], "from": "sipp", "to": "5550100",
                    "trunk": "carrier", "callee": {"extid": "1002"}, "status": "Talking"}
    assert await pbx.inbound(call["inboundid"]) == [call]
    assert await pbx.outbound() == []

    (await far.await_result(15)).assert_ok(calls=1)
    (await phone.await_result(10)).assert_ok(calls=1)
    await pbx.wait_idle()
    assert await pbx.inbound() == []
    await pbx.stop()


# -- 4. failures -------------------------------------------------------------------------------
async def test_busy_carrier_gives_486(
    start_pbx: Start, sipp: SippFactory, tmp_path: Path
) -> None:
    trunk_port = free_port()
    pbx = await start_pbx([TrunkSpec("carrier", trunk_port)])
    far = await carrier(sipp, trunk_port, "uas_busy.xml").astart()
    near = await caller(sipp, pbx, rejected_with(tmp_path, 486), "9" + NUMBER).astart()
    (await near.await_result(15)).assert_ok(calls=1)
    (await far.await_result(10)).assert_ok(calls=1)
    await pbx.wait_idle()
    assert await pbx.outbound() == []
    await pbx.stop()


async def test_caller_cancels_while_carrier_rings(start_pbx: Start, sipp: SippFactory) -> None:
    trunk_port = free_port()
    pbx = await start_pbx([TrunkSpec("carrier", trunk_port)])
    far = await carrier(sipp, trunk_port, "uas_ring_forever.xml").astart()
    near = await caller(sipp, pbx, "pbx_uac_auth_cancel.xml", "9" + NUMBER,
                        duration_ms=1000).astart()
    await wait_status(pbx, "Progress", timeout=5)
    (await near.await_result(15)).assert_ok(calls=1)  # 200 to the CANCEL, 487, ACK
    (await far.await_result(10)).assert_ok(calls=1)  # the carrier saw the CANCEL
    await pbx.wait_idle()
    assert await pbx.outbound() == []
    await pbx.stop()


@pytest.mark.parametrize(("dialled", "status"), [("0123", 404), ("1003", 480)])
async def test_unroutable_calls(
    start_pbx: Start, sipp: SippFactory, tmp_path: Path, dialled: str, status: int
) -> None:
    pbx = await start_pbx([TrunkSpec("carrier", free_port())])
    near = await caller(sipp, pbx, rejected_with(tmp_path, status), dialled).astart()
    (await near.await_result(15)).assert_ok(calls=1)
    assert len(pbx.app.registry) == 0
    await pbx.stop()


async def test_failover_to_the_second_trunk(start_pbx: Start, sipp: SippFactory) -> None:
    down_port, up_port = free_port(), free_port()
    pbx = await start_pbx([TrunkSpec("down", down_port), TrunkSpec("carrier", up_port)])
    down = await carrier(sipp, down_port, "pbx_uas_unavailable.xml").astart()
    up = await carrier(sipp, up_port, "uas.xml").astart()
    near = await caller(sipp, pbx, "uac_auth.xml", "9" + NUMBER, duration_ms=1000).astart()
    call = await wait_status(pbx, "Talking")
    assert call["trunk"] == "carrier" and call["to"] == NUMBER
    (await near.await_result(15)).assert_ok(calls=1)
    (await down.await_result(10)).assert_ok(calls=1)
    (await up.await_result(10)).assert_ok(calls=1)
    await pbx.wait_idle()
    await pbx.stop()


async def test_dead_trunk_fails_over_after_no_answer_seconds(
    start_pbx: Start, sipp: SippFactory
) -> None:
    """Nothing listens on the first trunk's port and ippbx gets no ICMP error: the INVITE
    would run to Timer B (32 s); no CANCEL is allowed before a provisional. ippbx gives up
    on the silent trunk when `no_answer_seconds` runs out and tries the next one."""
    dead_port, up_port = free_port(), free_port()
    pbx = await start_pbx([TrunkSpec("dead", dead_port), TrunkSpec("carrier", up_port)],
                          no_answer_seconds=1)
    up = await carrier(sipp, up_port, "uas.xml").astart()
    started = time.monotonic()
    near = await caller(sipp, pbx, "uac_auth.xml", "9" + NUMBER, duration_ms=500).astart()
    call = await wait_status(pbx, "Talking")
    assert time.monotonic() - started < 5
    assert call["trunk"] == "carrier"
    (await near.await_result(15)).assert_ok(calls=1)
    (await up.await_result(10)).assert_ok(calls=1)
    await pbx.wait_idle()
    await pbx.stop()


async def test_caller_cancels_while_trunk_is_silent_gets_487_at_once(
    start_pbx: Start, sipp: SippFactory
) -> None:
    """RFC 3261 §9.2: the CANCELled INVITE is answered 487 right away, even though the
    trunk never answered and so cannot be CANCELled itself until it sends a 1xx."""
    pbx = await start_pbx([TrunkSpec("dead", free_port())])
    started = time.monotonic()
    near = await caller(sipp, pbx, "pbx_uac_auth_cancel_early.xml", "9" + NUMBER,
                        duration_ms=500).astart()
    (await near.await_result(15)).assert_ok(calls=1)  # 100, CANCEL → 200, 487, ACK
    assert time.monotonic() - started < 5  # not Timer B
    await pbx.wait_idle()
    await pbx.stop()


@pytest.mark.parametrize("who", ["caller", "no-answer timer"])
async def test_answer_crossing_the_cancel_is_hung_up(
    start_pbx: Start, sipp: SippFactory, tmp_path: Path, who: str
) -> None:
    """The carrier's 200 crosses ippbx's CANCEL: ippbx ACKs and BYEs it, and the caller
    gets 487 (it cancelled) or 480 (nobody answered in time), never that 200."""
    trunk_port = free_port()
    pbx = await start_pbx([TrunkSpec("carrier", trunk_port)], no_answer_seconds=1)
    far = await carrier(sipp, trunk_port, "pbx_uas_answer_on_cancel.xml").astart()
    if who == "caller":
        near = caller(sipp, pbx, "pbx_uac_auth_cancel.xml", "9" + NUMBER, duration_ms=200)
    else:
        near = caller(sipp, pbx, rejected_with(tmp_path, 480), "9" + NUMBER)
    await near.astart()
    (await near.await_result(15)).assert_ok(calls=1)
    (await far.await_result(10)).assert_ok(calls=1)  # 200, then ACK and BYE from ippbx
    await pbx.wait_idle()
    assert await pbx.outbound() == []
    await pbx.stop()


async def test_carrier_not_answering_gives_480(
    start_pbx: Start, sipp: SippFactory, tmp_path: Path
) -> None:
    trunk_port = free_port()
    pbx = await start_pbx([TrunkSpec("carrier", trunk_port)], no_answer_seconds=1)
    far = await carrier(sipp, trunk_port, "uas_ring_forever.xml").astart()
    started = time.monotonic()
    near = await caller(sipp, pbx, rejected_with(tmp_path, 480), "9" + NUMBER).astart()
    await wait_status(pbx, "Progress", timeout=5)
    (await near.await_result(15)).assert_ok(calls=1)
    assert time.monotonic() - started < 5
    (await far.await_result(10)).assert_ok(calls=1)  # ippbx CANCELled the carrier
    await pbx.wait_idle()
    await pbx.stop()


# -- 5. registration refused, then banned ------------------------------------------------------
async def test_wrong_password_403_then_banned(start_pbx: Start, sipp: SippFactory) -> None:
    pbx = await start_pbx([])
    ban_failures = pbx.app.config.security.ban_failures
    assert ban_failures == 10

    def register(password: str, calls: int) -> Sipp:
        return sipp("pbx_register_forbidden.xml", remote=pbx.sip_address, calls=calls,
                    rate=50, auth=("1001", password), keys={"user": "1001"},
                    recv_timeout_ms=3000, sipp_timeout_s=10, trace_msg=True)

    wrong = await register("wrong", 1).astart()
    result = (await wrong.await_result(10)).assert_ok(calls=1)
    assert received(result, "SIP/2.0 401") == 1 and received(result, "SIP/2.0 403") == 1
    assert not pbx.app.pbx.registrar.is_registered("1001")

    more = await register("wrong", ban_failures - 1).astart()
    result = (await more.await_result(10)).assert_ok(calls=ban_failures - 1)
    assert received(result, "SIP/2.0 401") == ban_failures - 1  # challenged until the 10th

    right = await register(ext_password("1001"), 1).astart()
    result = (await right.await_result(10)).assert_ok(calls=1)
    assert received(result, "SIP/2.0 401") == 0  # refused at once: the address is banned
    assert received(result, "SIP/2.0 403") == 1
    assert not pbx.app.pbx.registrar.is_registered("1001")
    await pbx.stop()


# -- 6. Max-Forwards ---------------------------------------------------------------------------
async def test_max_forwards_zero_gives_483(start_pbx: Start, sipp: SippFactory) -> None:
    pbx = await start_pbx([TrunkSpec("carrier", free_port())])
    near = sipp("pbx_uac_max_forwards.xml", remote=pbx.sip_address, service="9" + NUMBER,
                keys={"user": CALLER}, calls=1, recv_timeout_ms=3000, sipp_timeout_s=10)
    await near.astart()
    (await near.await_result(10)).assert_ok(calls=1)
    assert len(pbx.app.registry) == 0
    await pbx.stop()


# -- 7. a little load --------------------------------------------------------------------------
@pytest.mark.slow
async def test_fifty_calls_at_25_per_second(start_pbx: Start, sipp: SippFactory) -> None:
    calls = 50
    trunk_port = free_port()
    pbx = await start_pbx([TrunkSpec("carrier", trunk_port)])
    far = await carrier(sipp, trunk_port, "uas.xml", calls=calls, sipp_timeout_s=30).astart()
    near = await caller(sipp, pbx, "uac_auth.xml", "9" + NUMBER, calls=calls, rate=25,
                        duration_ms=500, sipp_timeout_s=30).astart()
    result = (await near.await_result(30)).assert_ok(calls=calls, retransmissions=None)
    (await far.await_result(15)).assert_ok(calls=calls, retransmissions=None)
    assert result.failed == 0
    await pbx.wait_idle()
    assert await pbx.outbound() == []
    counts = await pbx.ua_counts_zero(timeout=40)
    assert counts == dict.fromkeys(counts, 0)
    await pbx.stop()


async def test_a_named_node_prefixes_its_call_ids(start_pbx: Start, sipp: SippFactory) -> None:
    """`[calls] node` (Asterisk's systemname): every id the API and the CDR show starts
    with the node's name, so two nodes never hand out the same id."""
    trunk_port = free_port()
    pbx = await start_pbx([TrunkSpec("carrier", trunk_port)], extra='[calls]\nnode = "pbx2"\n')
    try:
        far = carrier(sipp, trunk_port, "uas.xml")
        near = caller(sipp, pbx, "uac_auth.xml", "9" + NUMBER, duration_ms=1000)
        await far.astart()
        await near.astart()
        call = await wait_status(pbx, "Talking")
        oid = call["outboundid"]
        assert re.fullmatch(r"pbx2-\d+\.\d+", oid), oid
        assert await pbx.outbound(oid) == [call]
        (await near.await_result(15)).assert_ok(calls=1)
        await pbx.wait_idle()
        [cdr] = pbx.app.store.cdrs()
        assert cdr.outboundid == oid and cdr.callid.startswith("pbx2-")
    finally:
        await pbx.stop()
