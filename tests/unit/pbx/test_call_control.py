"""Call control (pbx/control.py) end to end over an in-memory network: what hang-up, hold,
blind transfer (by the API and by a phone's REFER) and click-to-call do to each party of
a call, what the registry shows, and the ControlErrors for what cannot be done.

The cast (pbx_stack): extension 1001 calls 9 + NUMBER out through the trunk `carrier`
(10.0.1.1); extensions 1002-1004 are registered phones; `second` (10.0.1.2) is the trunk
of route 8 where a test adds it. Each party's SDP names it (`s=1002`, `s=carrier`).
"""

from __future__ import annotations

import asyncio
from typing import NamedTuple

import pytest
from pbx_stack import (
    CARRIER,
    SECOND,
    Outgoing,
    Party,
    Pbx,
    World,
    pbx_config,
    sdp_name,
    until,
)
from sip_net import Msg

from ippbx.pbx import events
from ippbx.pbx.calls import Call, Leg, LegKind, LegStatus
from ippbx.pbx.control import ControlError
from ippbx.sip.message import Request, Response
from ippbx.sip.wire import Peer

NUMBER = "5551234"  # dialled as 9 + NUMBER
SECOND_ROUTE = ('[[outbound_routes]]\nname = "second"\nprefix = "8"\nmatch = "X."\n'
                'trunks = ["second"]\n')
ONLY_1002_ROUTE = ('[[outbound_routes]]\nname = "only1002"\nprefix = "7"\nmatch = "X."\n'
                   'trunks = ["carrier"]\nextensions = ["1002"]\n')


class Outbound(NamedTuple):
    """1001's call out through `carrier`, and who is in it."""

    pbx: Pbx
    phone: Party
    carrier: Party
    call: Call
    out: Outgoing  # 1001's INVITE


async def outbound_call(world: World, config_extra: str = "", *, answer: bool = True,
                        two_trunks: bool = False) -> Outbound:
    """1001 calling 9 + NUMBER through `carrier`: answered (and ACKed), or ringing."""
    trunks = (CARRIER, SECOND) if two_trunks else (CARRIER,)
    pbx = await world.start_pbx(pbx_config(trunks, config_extra, route_trunks=("carrier",)))
    carrier = await world.carrier()
    if two_trunks:
        await world.carrier(SECOND)
    phone = await world.phone("1001", register=False)
    if not answer:
        carrier.answer = None
    out = await phone.call("9" + NUMBER)
    if answer:
        assert (await out.final()).status == 200
        await until(lambda: carrier.acks, "the carrier's ACK")
    else:
        await until(lambda: any(r.status == 180 for r in out.provisional), "ringing")
    return Outbound(pbx, phone, carrier, pbx.only_call(), out)


def statuses(call: Call) -> list[LegStatus]:
    return [leg.status for leg in call.legs()]


def stranger_call() -> Call:
    return Call(Leg(LegKind.EXTENSION, "1001", "1002", extension="1001"), "1002")


# -- hang up -------------------------------------------------------------------------------
async def test_hangup_of_an_answered_call_byes_both_parties(world: World) -> None:
    pbx, phone, carrier, call, _ = await outbound_call(world)
    pbx.control.hangup(call.callid)
    await phone.wait_for("BYE")
    await carrier.wait_for("BYE")
    await pbx.idle()
    assert call.hangup_by == "api"
    with pytest.raises(ControlError) as refused:  # it is gone
        pbx.control.hangup(call.callid)
    assert refused.value.reason == ControlError.NO_CALL
    await world.settled()


async def test_hangup_of_a_ringing_call_cancels_the_callee(world: World) -> None:
    pbx, _, carrier, call, out = await outbound_call(world, answer=False)
    pbx.control.hangup(call.callid)
    assert (await out.final()).status == 487
    await until(lambda: carrier.requests[0].was_cancelled, "the carrier's CANCEL")
    await pbx.idle()
    assert call.hangup_by == "api" and call.callee is not None
    assert call.callee.end_cause == 487


async def test_hangup_extension_ends_its_calls(world: World) -> None:
    pbx, phone, carrier, _, _ = await outbound_call(world)
    assert pbx.control.hangup_extension("1002") == 0
    assert pbx.control.hangup_extension("1001") == 1
    await phone.wait_for("BYE")
    await carrier.wait_for("BYE")
    await pbx.idle()


async def test_hangup_of_an_unknown_call_is_refused(world: World) -> None:
    pbx = await world.start_pbx()
    with pytest.raises(ControlError) as refused:
        pbx.control.hangup(stranger_call().callid)
    assert refused.value.reason == ControlError.NO_CALL


# -- hold ----------------------------------------------------------------------------------
async def test_hold_and_unhold_reinvite_the_other_party(world: World) -> None:
    pbx, phone, carrier, call, _ = await outbound_call(world)
    pbx.control.hold(call.callid, "1001", True)
    hold = await carrier.wait_for("INVITE", 2)
    assert sdp_name(hold.body) == "1001"  # 1001's own SDP, re-offered
    assert b"a=sendonly" in hold.body and b"a=sendrecv" not in hold.body
    await until(lambda: statuses(call) == [LegStatus.WAIT, LegStatus.WAIT], "Wait")
    assert phone.got("INVITE") == []  # the held party's phone hears nothing of it

    pbx.control.hold(call.callid, "1001", False)
    unhold = await carrier.wait_for("INVITE", 3)
    assert b"a=sendrecv" in unhold.body and b"a=sendonly" not in unhold.body
    await until(lambda: statuses(call) == [LegStatus.TALKING, LegStatus.TALKING], "Talking")
    await until(lambda: len(carrier.acks) == 3, "the ACKs of both re-INVITEs")
    await phone.hangup()
    await pbx.idle()


async def test_hold_then_unhold_at_once_sends_one_reinvite_at_a_time(world: World) -> None:
    """RFC 3261 §14.1: the unhold re-INVITE waits for the hold's answer."""
    pbx, phone, carrier, call, _ = await outbound_call(world)
    pbx.control.hold(call.callid, "1001", True)
    pbx.control.hold(call.callid, "1001", False)
    unhold = await carrier.wait_for("INVITE", 3)
    hold = carrier.got("INVITE")[1]
    assert b"a=sendonly" in hold.body and b"a=sendrecv" in unhold.body
    to_carrier = [(m.method, m.cseq[0]) for _, dest, m in world.net.log
                  if dest.host == carrier.host and isinstance(m, Request)]
    # the hold (CSeq 2) was answered and ACKed before the unhold (CSeq 3) went out
    assert to_carrier.index(("ACK", 2)) < to_carrier.index(("INVITE", 3))
    await until(lambda: statuses(call) == [LegStatus.TALKING, LegStatus.TALKING], "Talking")
    await phone.hangup()
    await pbx.idle()


async def test_hold_waits_for_the_peers_own_reinvite_to_be_answered(world: World) -> None:
    """RFC 3261 §14.1: while the carrier's own re-INVITE is being relayed (1001 takes
    its time to answer it), the hold ippbx sends the carrier waits for it to end rather
    than crossing it in the same dialog."""
    pbx, phone, carrier, call, _ = await outbound_call(world)
    phone.reinvite_delay = 0.4
    carriers_own = asyncio.ensure_future(carrier.reinvite("sendrecv"))
    await phone.wait_for("INVITE")  # relayed to 1001, not answered yet
    pbx.control.hold(call.callid, "1001", True)
    assert (await carriers_own).status == 200
    hold = await carrier.wait_for("INVITE", 2)  # (the first: the call's own)
    assert b"a=sendonly" in hold.body
    log = [(dest.host, m) for _, dest, m in world.net.log]
    answered = next(i for i, (host, m) in enumerate(log) if host == carrier.host
                    and isinstance(m, Response) and m.cseq[1] == "INVITE"
                    and m.status == 200)  # to the carrier's re-INVITE (its only INVITE)
    sent = next(i for i, (host, m) in enumerate(log) if host == carrier.host
                and isinstance(m, Request) and m.method == "INVITE" and m.to.tag)
    assert answered < sent
    await until(lambda: statuses(call) == [LegStatus.WAIT, LegStatus.WAIT], "Wait")
    assert [r.status for r in carrier.byes] == []
    await phone.hangup()
    await pbx.idle()


async def test_a_hold_answered_491_is_sent_again_after_a_pause(world: World) -> None:
    """RFC 3261 §14.1: the carrier answers ippbx's hold 491 (a re-INVITE of its own
    crossed it); ippbx sends the hold again after 0-2 s (the carrier owns the Call-ID,
    so ippbx's pause is the short one) and the call is held."""
    pbx = await world.start_pbx()
    phone = await world.phone("1002")
    carrier = await world.carrier()
    out = await carrier.call("5550100", from_user="0612345678")
    assert (await out.final()).status == 200
    call = pbx.only_call()
    await until(lambda: phone.acks, "1002's ACK")
    carrier.reinvite_answers = [491]
    pbx.control.hold(call.callid, "1002", True)
    await until(lambda: len(carrier.got("INVITE")) == 2, "the hold sent again", timeout=4.0)
    first, again = carrier.got("INVITE")
    assert b"a=sendonly" in first.body and b"a=sendonly" in again.body
    assert again.cseq[0] > first.cseq[0]
    await until(lambda: statuses(call) == [LegStatus.WAIT, LegStatus.WAIT], "Wait")
    await until(lambda: len(carrier.acks) == 1, "the ACK of the second")
    await carrier.hangup()
    await phone.wait_for("BYE")
    await pbx.idle()


async def test_hold_is_refused_before_the_answer_and_for_strangers(world: World) -> None:
    pbx, phone, carrier, call, _ = await outbound_call(world, answer=False)
    with pytest.raises(ControlError) as refused:
        pbx.control.hold(call.callid, "1001", True)
    assert refused.value.reason == ControlError.NOT_CONNECTED
    with pytest.raises(ControlError) as refused:
        pbx.control.hold(call.callid, "1003", True)  # not a party of this call
    assert refused.value.reason == ControlError.NO_CALL
    with pytest.raises(ControlError) as refused:
        pbx.control.hold(stranger_call().callid, "1001", True)
    assert refused.value.reason == ControlError.NO_CALL
    pbx.control.hangup(call.callid)
    await pbx.idle()


# -- blind transfer ------------------------------------------------------------------------
async def test_transfer_to_an_extension(world: World) -> None:
    """1001 → carrier, transferred to 1002: 1001 gets BYE, 1002 an INVITE with the
    carrier's SDP, the carrier a re-INVITE with 1002's; the carrier's leg carries on."""
    pbx, phone, carrier, call, _ = await outbound_call(world)
    target = await world.phone("1002")
    callid, carrier_leg = call.callid, call.callee
    pbx.control.transfer(call.callid, "1001", "1002")
    await phone.wait_for("BYE")
    invite = await target.wait_for("INVITE")
    assert sdp_name(invite.body) == "carrier"
    assert invite.from_.uri.startswith(f"sip:{NUMBER}@")  # shown the remaining party
    reinvite = await carrier.wait_for("INVITE", 2)
    assert sdp_name(reinvite.body) == "1002"
    await until(lambda: call.caller.extension == "1002"
                and statuses(call) == [LegStatus.TALKING, LegStatus.TALKING], "1002 talking")
    assert call.callee is carrier_leg and call.callid == callid
    assert pbx.registry.find(callid) is call
    assert pbx.registry.by_extension("1001") == []
    assert [c.callid for c in pbx.registry.by_extension("1002")] == [callid]
    assert call.caller.replaces == call.origin.id and not call.origin.live
    await until(lambda: len(carrier.acks) == 2, "the re-INVITE's ACK")

    await carrier.hangup()
    await target.wait_for("BYE")
    await pbx.idle()
    await world.settled()


async def test_hold_then_transfer_an_inbound_call(world: World) -> None:
    """Carrier → DID → 1002, held by the API, then transferred by 1002 to 1003: the
    carrier's re-INVITE carries 1003's SDP (no longer sendonly), the inbound leg and its
    id stay, and the call is Talking again."""
    pbx = await world.start_pbx()
    first, second = await world.phone("1002"), await world.phone("1003")
    carrier = await world.carrier()
    out = await carrier.call("5550100", from_user="0612345678")
    assert (await out.final()).status == 200
    call = pbx.only_call()
    inbound_id = call.caller.id
    await until(lambda: first.acks, "1002's ACK")
    pbx.control.hold(call.callid, "1002", True)
    hold = await carrier.wait_for("INVITE")  # (the carrier's first INVITE was its own)
    assert b"a=sendonly" in hold.body and sdp_name(hold.body) == "1002"
    await until(lambda: statuses(call) == [LegStatus.WAIT, LegStatus.WAIT], "Wait")

    pbx.control.transfer(call.callid, "1002", "1003")
    await first.wait_for("BYE")
    invite = await second.wait_for("INVITE")
    assert sdp_name(invite.body) == "carrier" and b"a=recvonly" not in invite.body
    transfer = await carrier.wait_for("INVITE", 2)
    assert sdp_name(transfer.body) == "1003" and b"a=sendonly" not in transfer.body
    await until(lambda: statuses(call) == [LegStatus.TALKING, LegStatus.TALKING], "Talking")
    assert call.caller.id == inbound_id and pbx.registry.by_inboundid(inbound_id) is call
    assert call.callee is not None and call.callee.extension == "1003"
    await carrier.hangup()
    await second.wait_for("BYE")
    await pbx.idle()


async def test_transfer_to_an_external_number(world: World) -> None:
    pbx, phone, carrier, call, _ = await outbound_call(world, SECOND_ROUTE, two_trunks=True)
    [second] = [party for party in world.parties if party.name == "second"]
    pbx.control.transfer(call.callid, "1001", "85550199")
    await phone.wait_for("BYE")
    invite = await second.wait_for("INVITE")
    assert invite.uri == f"sip:5550199@{SECOND.host}:5060"
    assert sdp_name(invite.body) == "carrier"
    assert sdp_name((await carrier.wait_for("INVITE", 2)).body) == "second"
    await until(lambda: call.caller.trunk == "second"
                and statuses(call) == [LegStatus.TALKING, LegStatus.TALKING], "talking")
    # placed on behalf of the transferor: `from` is 1001, as if it had dialled it
    assert (call.caller.from_number, call.caller.to_number) == ("1001", "5550199")
    assert len(pbx.registry.outbound()) == 2 and pbx.trunks.in_use == {"carrier": 1,
                                                                         "second": 1}
    await second.hangup()
    await carrier.wait_for("BYE")
    await pbx.idle()


async def test_a_transfer_target_that_is_busy_releases_the_remaining_party(
    world: World
) -> None:
    pbx, phone, carrier, call, _ = await outbound_call(world)
    target = await world.phone("1002")
    target.answer = 486
    pbx.control.transfer(call.callid, "1001", "1002")
    await phone.wait_for("BYE")
    await target.wait_for("INVITE")
    await carrier.wait_for("BYE")
    await pbx.idle()


async def test_hangup_while_the_transfer_target_rings_cancels_it(world: World) -> None:
    pbx, phone, carrier, call, _ = await outbound_call(world)
    target = await world.phone("1002")
    target.answer = None
    pbx.control.transfer(call.callid, "1001", "1002")
    await target.wait_for("INVITE")
    await until(lambda: call.caller.ringing is not None, "1002 to ring")
    pbx.control.hangup(call.callid)
    await carrier.wait_for("BYE")
    await until(lambda: target.requests[0].was_cancelled, "the target's CANCEL")
    await pbx.idle()


@pytest.mark.parametrize(("transferor", "target", "reason"), [
    ("1003", "1002", ControlError.NO_CALL),  # not a party of the call
    ("1001", "1004", ControlError.NO_EXTENSION),  # an extension not registered
    ("1001", "0123", ControlError.NO_ROUTE),
    ("1001", "75550199", ControlError.NOT_PERMITTED),  # a route for 1002 only
    (NUMBER, "95550199", ControlError.NOT_PERMITTED),  # the carrier's party: no way out
])
async def test_transfers_that_cannot_be_done(world: World, transferor: str, target: str,
                                             reason: str) -> None:
    pbx, phone, carrier, call, _ = await outbound_call(world, ONLY_1002_ROUTE)
    with pytest.raises(ControlError) as refused:
        pbx.control.transfer(call.callid, transferor, target)
    assert refused.value.reason == reason
    assert phone.got("BYE") == [] and len(carrier.got("INVITE")) == 1  # nothing happened
    await phone.hangup()
    await pbx.idle()


async def test_transfer_before_the_answer_is_refused(world: World) -> None:
    pbx, _, _, call, _ = await outbound_call(world, answer=False)
    await world.phone("1002")
    with pytest.raises(ControlError) as refused:
        pbx.control.transfer(call.callid, "1001", "1002")
    assert refused.value.reason == ControlError.NOT_CONNECTED
    pbx.control.hangup(call.callid)
    await pbx.idle()


# -- REFER from the phone --------------------------------------------------------------------
async def test_refer_from_the_phone_transfers_the_call(world: World) -> None:
    """RFC 3515: 202, a NOTIFY with a 100 Trying sipfrag while the target is called, one
    with 200 once it answered, a BYE for the phone; reported as a transfer by 1001."""
    pbx, phone, carrier, call, _ = await outbound_call(world)
    target = await world.phone("1002")
    callid = call.callid
    assert (await phone.refer("1002")).status == 202
    trying = await phone.wait_for("NOTIFY")
    assert trying.body.startswith(b"SIP/2.0 100")
    assert (trying.get("Subscription-State") or "").startswith("active")
    notify = await phone.wait_for("NOTIFY", 2)
    assert notify.body.startswith(b"SIP/2.0 200")
    assert notify.get("Event") == "refer"
    assert (notify.get("Subscription-State") or "").startswith("terminated")
    await phone.wait_for("BYE")
    invite = await target.wait_for("INVITE")
    assert sdp_name(invite.body) == "carrier"
    assert sdp_name((await carrier.wait_for("INVITE", 2)).body) == "1002"
    await until(lambda: call.caller.extension == "1002"
                and call.caller.status is LegStatus.TALKING, "1002 to take 1001's place")
    [transferred] = [e for e in pbx.events if isinstance(e, events.CallTransferred)]
    assert (transferred.leg.extension, transferred.target) == ("1001", "1002")
    assert call.callid == callid
    await target.hangup()
    await carrier.wait_for("BYE")
    await pbx.idle()


@pytest.mark.parametrize("when", ["at once", "crossing ippbx's BYE",
                                  "crossing ippbx's BYE while the target rings"])
async def test_refer_from_a_phone_that_hangs_up_once_notified(world: World, when: str) -> None:
    """RFC 5589 §6.1: once the NOTIFY says 200, the transferor SHOULD send BYE itself (most
    phones do). That BYE ends the transferor's leg only: the carrier is connected to
    1002 all the same, and its call goes on. "at once": the phone's BYE follows its 200
    to the NOTIFY; "crossing": ippbx's own BYE to the phone is lost (UDP) until the
    phone's BYE, 2 ms after its 200, crosses it (1002 answering at once, or after
    ringing 50 ms)."""
    pbx, phone, carrier, call, _ = await outbound_call(world)
    target = await world.phone("1002")
    if when.endswith("rings"):
        target.delay = 0.05
    phone.bye_after_notify = True
    if when != "at once":
        phone.bye_delay = 0.002

        def phone_said_bye() -> bool:
            return any(src.host == phone.host and isinstance(m, Request) and m.method == "BYE"
                       for src, _, m in world.net.log)

        def lose_byes_to_the_phone_until_it_said_bye(message: Msg, dest: Peer) -> bool:
            return isinstance(message, Request) and message.method == "BYE" \
                and dest.host == phone.host and not phone_said_bye()

        world.net.drop = lose_byes_to_the_phone_until_it_said_bye
    assert (await phone.refer("1002")).status == 202
    await until(lambda: phone.byes, "the transferor's own BYE")
    assert phone.byes[0].status == 200
    await until(lambda: pbx.registry.get(call.callid) is None or (
        call.caller.extension == "1002" and call.caller.status is LegStatus.TALKING
        and len(carrier.acks) == 2), "the transfer to complete (or the call to end)")
    await asyncio.sleep(0.02)  # (time for any teardown to show)
    assert pbx.registry.get(call.callid) is call, "the call ended"
    assert carrier.got("BYE") == [] and target.got("BYE") == []
    [invite] = target.got("INVITE")
    assert sdp_name(invite.body) == "carrier"
    assert sdp_name(carrier.got("INVITE")[1].body) == "1002"
    assert call.caller.extension == "1002" and call.caller.live
    await target.hangup()
    await carrier.wait_for("BYE")
    await pbx.idle()


async def test_a_stop_hangs_up_the_transfer_in_progress_and_its_transferor(
        world: World) -> None:
    """A stop while a REFER's target rings: the carrier gets its BYE, the ringing target
    its CANCEL, and the transferor, whose dialog ippbx kept up for the NOTIFYs, its BYE
    too; the call ends as ippbx's hang-up."""
    pbx, phone, carrier, call, _ = await outbound_call(world)
    target = await world.phone("1002")
    target.answer = None  # rings until cancelled
    assert (await phone.refer("1002")).status == 202
    await target.wait_for("INVITE")
    await pbx.b2bua.stop()
    await carrier.wait_for("BYE")
    await phone.wait_for("BYE")
    await until(lambda: target.requests[0].was_cancelled, "the target's CANCEL")
    assert pbx.registry.get(call.callid) is None
    [ended] = [e.call for e in pbx.events if isinstance(e, events.CallEnded)]
    assert ended.hangup_by == "pbx"
    assert pbx.trunks.in_use == {"carrier": 0}


@pytest.mark.parametrize(("target", "status"), [("1004", 404), ("0123", 404),
                                                ("75550199", 403), ("", 400)])
async def test_refer_that_cannot_be_done_is_refused(world: World, target: str,
                                                    status: int) -> None:
    pbx, phone, carrier, _, _ = await outbound_call(world, ONLY_1002_ROUTE)
    if target:
        assert (await phone.refer(target)).status == status
    else:  # no Refer-To at all
        assert phone.dialog is not None
        response = await phone.ua.request_in_dialog(phone.dialog, "REFER")
        assert response.status == status
    assert phone.got("NOTIFY") == [] and phone.got("BYE") == []
    assert len(pbx.registry) == 1
    await phone.hangup()
    await pbx.idle()


# -- click-to-call ---------------------------------------------------------------------------
def click_to_call(pbx: Pbx, extension: str, target: str, autoanswer: bool = False) -> Call:
    """`CallControl.dial` (which answers a callid) and the call it started."""
    call = pbx.registry.get(pbx.control.dial(extension, target, autoanswer))
    assert call is not None
    return call


async def test_dial_rings_the_extension_then_the_target(world: World) -> None:
    """RFC 3725 flow I: 1003 is rung without SDP (auto-answer asked for); its 200 offers
    SDP, which the carrier gets; the carrier's answer reaches 1003 in the ACK."""
    pbx = await world.start_pbx()
    carrier = await world.carrier()
    ext = await world.phone("1003")
    call = click_to_call(pbx, "1003", "9" + NUMBER, autoanswer=True)
    assert pbx.registry.get(call.callid) is call
    assert (call.caller.extension, call.caller.to_number) == ("1003", "9" + NUMBER)

    invite = await ext.wait_for("INVITE")
    assert invite.body == b"" and invite.uri == f"sip:1003@{ext.host}:5060"
    assert "answer-after=0" in (invite.get("Call-Info") or "")
    far = await carrier.wait_for("INVITE")
    assert far.uri == f"sip:{NUMBER}@{CARRIER.host}:5060" and far.body == ext.sdp
    await until(lambda: ext.acks, "1003's ACK")
    [ack] = ext.acks
    assert ack is not None and sdp_name(ack.body) == "carrier"
    await until(lambda: statuses(call) == [LegStatus.TALKING, LegStatus.TALKING], "talking")
    assert call.callee is not None and call.callee.trunk == "carrier"
    assert pbx.registry.by_outboundid(call.callee.id) is call

    await carrier.hangup()
    await ext.wait_for("BYE")
    await pbx.idle()
    await world.settled()


async def test_dial_an_extension_without_autoanswer(world: World) -> None:
    pbx = await world.start_pbx()
    callee = await world.phone("1004")
    ext = await world.phone("1003")
    call = click_to_call(pbx, "1003", "1004")
    invite = await ext.wait_for("INVITE")
    assert invite.get("Call-Info") is None
    assert (await callee.wait_for("INVITE")).body == ext.sdp
    await until(lambda: statuses(call) == [LegStatus.TALKING, LegStatus.TALKING], "talking")
    assert pbx.registry.outbound() == []
    assert pbx.control.hangup_extension("1004") == 1
    await ext.wait_for("BYE")
    await callee.wait_for("BYE")
    await pbx.idle()


@pytest.mark.parametrize("case", ["extension busy", "carrier busy",
                                  "hung up while the extension rings",
                                  "hung up while the carrier rings"])
async def test_a_click_to_call_that_fails_leaves_nothing(world: World, case: str) -> None:
    pbx = await world.start_pbx()
    carrier = await world.carrier()
    ext = await world.phone("1003")
    if case == "extension busy":
        ext.answer = 486
    elif case == "carrier busy":
        carrier.answer = 486
    elif case == "hung up while the extension rings":
        ext.answer = None
    else:
        carrier.answer = None
    call = click_to_call(pbx, "1003", "9" + NUMBER)
    if case == "hung up while the extension rings":
        await ext.wait_for("INVITE")
        bridge = pbx.b2bua.bridges[call.callid]
        await until(lambda: bridge.b_invite is not None
                    and bridge.b_invite.provisional is not None, "1003 to ring")
        pbx.control.hangup(call.callid)
        await until(lambda: ext.requests[0].was_cancelled, "1003's CANCEL")
    elif case == "hung up while the carrier rings":
        await carrier.wait_for("INVITE")
        await until(lambda: call.callee is not None and call.callee.ringing is not None,
                    "the carrier to ring")
        pbx.control.hangup(call.callid)
        await until(lambda: carrier.requests[0].was_cancelled, "the carrier's CANCEL")
        await ext.wait_for("BYE")
    elif case == "carrier busy":
        await carrier.wait_for("INVITE")
        # 1003's 200 is completed with its own SDP made inactive, then hung up
        await until(lambda: ext.acks, "1003's ACK")
        assert ext.acks[0] is not None and b"a=inactive" in ext.acks[0].body
        await ext.wait_for("BYE")
    await pbx.idle()
    if case == "extension busy":
        assert carrier.got("INVITE") == []
        assert call.caller.end_cause == 486


@pytest.mark.parametrize(("extension", "target", "reason"), [
    ("1999", "95551234", ControlError.NO_EXTENSION),  # no such extension
    ("1005", "95551234", ControlError.NO_EXTENSION),  # not registered
    ("1003", "0123", ControlError.NO_ROUTE),
    ("1003", "1005", ControlError.NO_EXTENSION),  # a target not registered
    ("1003", "75551234", ControlError.NOT_PERMITTED),
])
async def test_click_to_calls_that_cannot_be_done(world: World, extension: str, target: str,
                                                  reason: str) -> None:
    pbx = await world.start_pbx(pbx_config(extra=ONLY_1002_ROUTE))
    ext = await world.phone("1003")
    with pytest.raises(ControlError) as refused:
        pbx.control.dial(extension, target)
    assert refused.value.reason == reason
    assert len(pbx.registry) == 0 and ext.requests == []
