"""What a phone that transfers its call by REFER hears back (RFC 3515 §2.4.4-2.4.5): a
NOTIFY with a `SIP/2.0 100 Trying` sipfrag while the target is being called (the
subscription active), then one with the target's final status (`200 OK` once it
answered, `486 Busy Here` when it is busy), which ends the subscription; only then its
BYE. With `Refer-Sub: false` (RFC 4488) the 202 says so and no NOTIFY comes. A phone
that hangs up as soon as the transfer started ends only its own dialog: the transfer
goes on.

Extension 1001 (a sipp phone) calls out through the carrier, then REFERs the carrier
party to extension 1002 (another sipp, registered).
"""

from __future__ import annotations

from pathlib import Path

from pbx_harness import PbxHarness, TrunkSpec, ext_password, phone
from sipp_harness import SCENARIO_DIR, LoggedMessage, Sipp, SippFactory, SippResult, free_port

NUMBER = "95551234"  # route 9 → the carrier


def transferor(sipp: SippFactory, pbx: PbxHarness, scenario: str) -> Sipp:
    return sipp(scenario, remote=pbx.sip_address, calls=1, auth=("1001", ext_password("1001")),
                keys={"user": "1001", "target": "1002"}, service=NUMBER, duration_ms=1000,
                recv_timeout_ms=8000, sipp_timeout_s=30, trace_msg=True)


def received(result: SippResult, start: str) -> list[LoggedMessage]:
    return [m for m in result.messages()
            if m.direction == "received" and m.first_line.startswith(start)]


def sent(result: SippResult, start: str) -> list[LoggedMessage]:
    return [m for m in result.messages()
            if m.direction == "sent" and m.first_line.startswith(start)]


async def answered_by_1002(pbx: PbxHarness) -> dict[str, str]:
    """The outbound call (the carrier leg) once 1002 has answered in 1001's place."""
    [call] = await pbx.outbound()
    registry_call = pbx.app.registry.by_outboundid(call["outboundid"])
    assert registry_call is not None

    async def transferred() -> bool:
        caller = registry_call.caller
        return caller.extension == "1002" and caller.answered is not None

    await pbx.wait_for(transferred, 10, "1002 to answer in 1001's place")
    assert await pbx.outbound() == [{**call, "status": "Talking"}]
    return call


async def hang_up_the_transferred_call(pbx: PbxHarness, carrier: Sipp, target: Sipp) -> None:
    """Once 1002 took 1001's place, the API hangs up; the carrier and 1002 both end well."""
    call = await answered_by_1002(pbx)
    assert (await pbx.post("outbound/hangup", {"outboundid": call["outboundid"]})
            ).json() == {"status": "Success"}
    (await carrier.await_result(15)).assert_ok(calls=1)
    (await target.await_result(15)).assert_ok(calls=1)


SIPP_STAMP_SLACK = 0.002
"""Seconds by which two of sipp's log stamps may be out of order: sipp stamps a message
when it logs it, and has been seen to stamp an answer 0.4 ms before its request."""


def sipfrag(notify: LoggedMessage) -> str:
    """The status line a NOTIFY's message/sipfrag body carries."""
    return notify.text.split("\n\n", 1)[1].strip()


async def test_notifies_trying_then_the_targets_answer(tmp_path: Path, sipp: SippFactory) -> None:
    trunk_port = free_port()
    pbx = await PbxHarness.start(tmp_path, [TrunkSpec("carrier", trunk_port)])
    try:
        carrier = await sipp("ctl_uas_carrier_reinvite.xml", port=trunk_port, calls=1,
                             sipp_timeout_s=30).astart()
        target = await phone(sipp, pbx, "1002", "ctl_uas_target.xml", sipp_timeout_s=30,
                             trace_msg=True)
        near = await transferor(sipp, pbx, "refer_uac_notify.xml").astart()
        result = (await near.await_result(20)).assert_ok(calls=1)

        notifies = received(result, "NOTIFY ")
        assert [sipfrag(n) for n in notifies] == ["SIP/2.0 100 Trying", "SIP/2.0 200 OK"]
        assert [n.header("Event") for n in notifies] == ["refer", "refer"]
        assert (notifies[0].header("Subscription-State") or "").startswith("active")
        assert notifies[1].header("Subscription-State") == "terminated;reason=noresource"
        assert [n.header("Content-Type") for n in notifies] == [
            "message/sipfrag;version=2.0"] * 2
        [bye] = received(result, "BYE ")  # released once told
        assert notifies[1].time <= bye.time

        [call] = await pbx.outbound()  # (answered, so the transfer is done)
        registry_call = pbx.app.registry.by_outboundid(call["outboundid"])
        assert registry_call is not None and registry_call.caller.extension == "1002"
        assert registry_call.caller.answered is not None and call["status"] == "Talking"
        assert (await pbx.post("outbound/hangup", {"outboundid": call["outboundid"]})
                ).json() == {"status": "Success"}
        (await carrier.await_result(15)).assert_ok(calls=1)
        got = (await target.await_result(15)).assert_ok(calls=1)
    finally:
        await pbx.stop()
    # the 200 sipfrag told of an answer that had happened (same clock: one machine; sipp's
    # stamps are a little loose, SIPP_STAMP_SLACK)
    [answer] = [m for m in sent(got, "SIP/2.0 200 OK")
                if (m.header("CSeq") or "").endswith("INVITE")]
    [invite] = [m for m in got.messages()
                if m.direction == "received" and m.first_line.startswith("INVITE ")]
    slack = SIPP_STAMP_SLACK
    assert invite.time - slack <= answer.time <= notifies[1].time + slack


async def test_a_busy_target_is_notified_as_486(tmp_path: Path, sipp: SippFactory) -> None:
    trunk_port = free_port()
    pbx = await PbxHarness.start(tmp_path, [TrunkSpec("carrier", trunk_port)])
    try:
        carrier = await sipp("uas.xml", port=trunk_port, calls=1, sipp_timeout_s=30).astart()
        target = await phone(sipp, pbx, "1002", "uas_busy.xml", sipp_timeout_s=30)
        near = await transferor(sipp, pbx, "refer_uac_notify.xml").astart()
        result = (await near.await_result(20)).assert_ok(calls=1)

        notifies = received(result, "NOTIFY ")
        assert [sipfrag(n) for n in notifies] == ["SIP/2.0 100 Trying", "SIP/2.0 486 Busy Here"]
        assert notifies[1].header("Subscription-State") == "terminated;reason=noresource"
        [bye] = received(result, "BYE ")
        assert notifies[1].time <= bye.time
        (await target.await_result(15)).assert_ok(calls=1)
        # the transfer failed: the carrier party is released (BYE), nothing is left
        (await carrier.await_result(15)).assert_ok(calls=1)
        await pbx.wait_idle()
        assert await pbx.outbound() == []
    finally:
        await pbx.stop()


async def test_refer_sub_false_gets_no_notify(tmp_path: Path, sipp: SippFactory) -> None:
    trunk_port = free_port()
    pbx = await PbxHarness.start(tmp_path, [TrunkSpec("carrier", trunk_port)])
    try:
        carrier = await sipp("ctl_uas_carrier_reinvite.xml", port=trunk_port, calls=1,
                             sipp_timeout_s=30).astart()
        target = await phone(sipp, pbx, "1002", "ctl_uas_target.xml", sipp_timeout_s=30)
        near = await transferor(sipp, pbx, "refer_uac_norefersub.xml").astart()
        result = (await near.await_result(20)).assert_ok(calls=1)  # 202, BYE: no NOTIFY
        [accepted] = received(result, "SIP/2.0 202")
        assert accepted.header("Refer-Sub") == "false"
        assert received(result, "NOTIFY ") == []

        await hang_up_the_transferred_call(pbx, carrier, target)
    finally:
        await pbx.stop()


def slow_target(tmp_path: Path) -> str:
    """ctl_uas_target.xml answering 1.5 s after its 180 (a path for sipp)."""
    text = (SCENARIO_DIR / "ctl_uas_target.xml").read_text()
    anchor = '  <send retrans="500">\n    <![CDATA[\n\n      SIP/2.0 200 OK'
    assert text.count(anchor) == 1
    path = tmp_path / "ctl_uas_target_slow.xml"
    path.write_text(text.replace(anchor, '  <pause milliseconds="1500"/>\n\n' + anchor))
    return str(path)


async def test_a_transferor_hanging_up_early_does_not_end_the_transfer(
    tmp_path: Path, sipp: SippFactory
) -> None:
    trunk_port = free_port()
    pbx = await PbxHarness.start(tmp_path, [TrunkSpec("carrier", trunk_port)])
    try:
        carrier = await sipp("ctl_uas_carrier_reinvite.xml", port=trunk_port, calls=1,
                             sipp_timeout_s=30).astart()
        target = await phone(sipp, pbx, "1002", slow_target(tmp_path), sipp_timeout_s=30)
        near = await transferor(sipp, pbx, "refer_uac_bye_early.xml").astart()
        result = (await near.await_result(20)).assert_ok(calls=1)  # 202, NOTIFY, its BYE
        [notify] = received(result, "NOTIFY ")
        assert sipfrag(notify) == "SIP/2.0 100 Trying"

        # 1002 answers later: the carrier party is connected to it all the same
        await hang_up_the_transferred_call(pbx, carrier, target)
    finally:
        await pbx.stop()
