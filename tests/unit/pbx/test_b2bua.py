"""The B2BUA (pbx/b2bua.py) end to end over an in-memory network: phones and carriers are
real `UserAgent`s talking SIP to ippbx's real stack (`pbx_stack.World`), so each test
sees what the parties of a call would see — Request-URIs, From, relayed 1xx and SDP,
BYEs and CANCELs — and what the live-call registry shows meanwhile.

The cast (pbx_stack): extensions 1001-1005 (1001 calls without registering; a callee
registers first), the trunk `carrier` on 10.0.1.1 (and `second` on 10.0.1.2 where a
test adds it), route 9 + number out through the trunks, DID 5550100 → 1002; every trunk
presents caller id 66666.
"""

from __future__ import annotations

import asyncio
import gc
from typing import TYPE_CHECKING

import pytest
from pbx_stack import (
    CARRIER,
    PBX,
    SECOND,
    EngineModel,
    Party,
    Pbx,
    TrunkSpec,
    World,
    pbx_config,
    sdp_name,
    until,
)

from ippbx.pbx import events
from ippbx.pbx.b2bua import Bridge
from ippbx.pbx.calls import CallType, LegKind, LegStatus
from ippbx.pbx.media_anchor import MediaAnchor
from ippbx.sip.headers import NameAddr
from ippbx.sip.message import Request, Response
from ippbx.sip.uri import SipUri, UriError
from ippbx.sip.wire import Peer

if TYPE_CHECKING:
    from conftest import FakeClock

NUMBER = "5551234"  # dialled as 9 + NUMBER


def calls_created(world: World) -> list[events.CallCreated]:
    assert world.pbx is not None
    return [e for e in world.pbx.events if isinstance(e, events.CallCreated)]


def statuses(responses: list[Response]) -> list[int]:
    return [r.status for r in responses]


def sent_to(world: World, host: str, method: str) -> list[Request]:
    """The `method` requests the network carried to `host` (whether anyone saw them or
    not: a CANCEL is answered by the UA, never shown to its handler)."""
    return [m for _, dest, m in world.net.log
            if dest.host == host and isinstance(m, Request) and m.method == method]


# -- outbound calls --------------------------------------------------------------------------
@pytest.mark.parametrize("who_hangs_up", ["caller", "carrier"])
async def test_extension_calls_out_through_the_trunk(world: World, who_hangs_up: str) -> None:
    pbx = await world.start_pbx()
    carrier = await world.carrier()
    carrier.delay = 0.03  # rings a moment: the registry shows Progress meanwhile
    phone = await world.phone("1001", register=False)

    out = await phone.call("9" + NUMBER)
    await until(lambda: 180 in statuses(out.provisional), "the 180 to reach the caller")
    call = pbx.only_call()
    assert call.callee is not None
    assert (call.caller.status, call.callee.status) == (LegStatus.PROGRESS, LegStatus.PROGRESS)
    assert call.callee.ringing is not None  # (the carrier's 180 is the leg's ringing)
    assert (call.caller.kind, call.caller.extension, call.caller.to_number) == \
        (LegKind.EXTENSION, "1001", "9" + NUMBER)
    assert (call.callee.kind, call.callee.trunk, call.callee.from_number,
            call.callee.to_number) == (LegKind.TRUNK, "carrier", "1001", NUMBER)
    assert call.type is CallType.OUTBOUND and call.callid == call.caller.id
    assert pbx.registry.by_outboundid(call.callee.id) is call
    assert pbx.trunks.in_use == {"carrier": 1}

    final = await out.final()
    assert final.status == 200 and sdp_name(final.body) == "carrier"  # the carrier's SDP
    assert final.get("Content-Type") == "application/sdp"
    # what the carrier got: the stripped number at its address, the trunk's caller id,
    # one hop less, the caller's SDP untouched
    [invite] = carrier.got("INVITE")
    assert invite.uri == f"sip:{NUMBER}@{CARRIER.host}:5060"
    assert invite.from_.uri == f"sip:66666@{PBX.host}:5060"
    assert invite.to.uri == f"sip:{NUMBER}@{CARRIER.host}"
    assert invite.get("Max-Forwards") == "69"
    assert invite.body == phone.sdp
    assert invite.call_id != out.invite.request.call_id  # a B2BUA: two dialogs
    await until(lambda: carrier.acks, "the carrier's 200 to be ACKed")
    assert (call.caller.status, call.callee.status) == (LegStatus.TALKING, LegStatus.TALKING)
    assert call.answered is not None

    if who_hangs_up == "caller":
        assert (await phone.hangup()).status == 200
        await carrier.wait_for("BYE")
        assert phone.ended == 0
    else:
        assert (await carrier.hangup()).status == 200
        await phone.wait_for("BYE")
        assert carrier.ended == 0
    await pbx.idle()
    assert call.hangup_by == ("caller" if who_hangs_up == "caller" else "callee")
    assert [e.leg for e in pbx.events if isinstance(e, events.LegEnded)] == \
        ([call.caller, call.callee] if who_hangs_up == "caller" else [call.callee, call.caller])
    assert isinstance(pbx.events[-1], events.CallEnded)
    if who_hangs_up == "caller":
        await world.settled()  # every UA back to no transaction, dialog or task


async def test_an_ended_call_is_freed_while_its_transactions_linger(world: World) -> None:
    """A finished INVITE lingers 32 s for the 2xx's retransmissions; it must not keep the
    call it belonged to (at 600 calls/s, 19,000 ended calls stayed in memory, ~400 MiB)."""
    pbx = await world.start_pbx()
    await world.carrier()
    phone = await world.phone("1001", register=False)
    out = await phone.call("9" + NUMBER)
    assert (await out.final()).status == 200
    assert (await phone.hangup()).status == 200
    await pbx.idle()
    assert pbx.ua._clients  # the INVITE to the carrier (Timer M) and the BYE still linger
    gc.collect()
    assert [o for o in gc.get_objects() if isinstance(o, Bridge)] == []


async def test_a_busy_carrier_gives_the_caller_486_and_no_failover(world: World) -> None:
    pbx = await world.start_pbx(pbx_config((CARRIER, SECOND)))
    busy, second = await world.carrier(CARRIER), await world.carrier(SECOND)
    busy.answer = 486
    phone = await world.phone("1001", register=False)
    out = await phone.call("9" + NUMBER)
    assert (await out.final()).status == 486
    assert len(busy.got("INVITE")) == 1 and second.got("INVITE") == []  # 486 is an answer
    await pbx.idle()
    [ended] = [e for e in pbx.events if isinstance(e, events.CallEnded)]
    assert ended.call.callee is not None and ended.call.callee.end_cause == 486


async def test_503_fails_over_to_the_next_trunk(world: World) -> None:
    pbx = await world.start_pbx(pbx_config((CARRIER, SECOND)))
    down, up = await world.carrier(CARRIER), await world.carrier(SECOND)
    down.answer = 503
    phone = await world.phone("1001", register=False)
    out = await phone.call("9" + NUMBER)
    final = await out.final()
    assert final.status == 200 and sdp_name(final.body) == "second"
    assert len(down.got("INVITE")) == 1
    [invite] = up.got("INVITE")
    assert invite.uri == f"sip:{NUMBER}@{SECOND.host}:5060" and invite.body == phone.sdp
    call = pbx.only_call()
    assert call.callee is not None and call.callee.trunk == "second"
    added = [e.leg.trunk for e in pbx.events if isinstance(e, events.LegAdded)]
    assert added == ["carrier", "second"]  # one callee leg per attempt
    assert pbx.trunks.in_use == {"carrier": 0, "second": 1}
    await up.hangup()
    await phone.wait_for("BYE")
    await pbx.idle()


async def test_a_silent_trunk_fails_over_at_the_no_answer_timer(world: World) -> None:
    """Nothing answers on the first trunk's address (not even 100): the caller is not held
    until Timer B; at `no_answer_seconds` the next trunk is tried."""
    dead = TrunkSpec("dead", "10.0.1.9")
    pbx = await world.start_pbx(pbx_config((dead, SECOND)), no_answer_seconds=0.05)
    up = await world.carrier(SECOND)
    phone = await world.phone("1001", register=False)
    out = await phone.call("9" + NUMBER)
    assert (await out.final()).status == 200
    callee = pbx.only_call().callee
    assert callee is not None and callee.trunk == "second"
    assert len(sent_to(world, dead.host, "INVITE")) >= 1
    assert sent_to(world, dead.host, "CANCEL") == []  # (no CANCEL before a provisional)
    await phone.hangup()
    await up.wait_for("BYE")
    await pbx.idle()


async def test_every_trunk_failing_gives_503(world: World) -> None:
    pbx = await world.start_pbx(pbx_config((CARRIER, SECOND)))
    for trunk in (CARRIER, SECOND):
        (await world.carrier(trunk)).answer = 500
    phone = await world.phone("1001", register=False)
    out = await phone.call("9" + NUMBER)
    assert (await out.final()).status == 503
    await pbx.idle()


@pytest.mark.parametrize("carrier_says", ["180", "nothing yet"])
async def test_the_caller_cancels_and_the_callee_is_cancelled(
    world: World, carrier_says: str
) -> None:
    """The caller's CANCEL is answered 487 at once; the carrier gets a CANCEL as soon as
    it may (its 180, else its automatic 100 Trying 200 ms after the INVITE)."""
    pbx = await world.start_pbx()
    carrier = await world.carrier()
    carrier.answer = None  # rings until cancelled
    carrier.ring = carrier_says == "180"
    phone = await world.phone("1001", register=False)
    out = await phone.call("9" + NUMBER)
    await carrier.wait_for("INVITE")
    if carrier.ring:
        await until(lambda: 180 in statuses(out.provisional), "the 180")
    else:
        await until(lambda: out.invite.provisional is not None, "the PBX's 100")
    out.cancel()
    assert (await out.final()).status == 487
    await until(lambda: sent_to(world, carrier.host, "CANCEL"), "the carrier's CANCEL")
    [cancel] = sent_to(world, carrier.host, "CANCEL")
    assert cancel.call_id == carrier.got("INVITE")[0].call_id
    await until(lambda: carrier.requests[0].was_cancelled, "the carrier to be cancelled")
    await pbx.idle()
    [ended] = [e.call for e in pbx.events if isinstance(e, events.CallEnded)]
    assert ended.hangup_by == "caller"
    if carrier.ring:
        await world.settled()


async def test_the_caller_cancels_while_the_trunk_is_silent(world: World) -> None:
    """RFC 3261 §9.2: the CANCELled INVITE is answered 487 at once, although ippbx may not
    CANCEL the trunk's INVITE before the trunk says anything."""
    pbx = await world.start_pbx(pbx_config((TrunkSpec("dead", "10.0.1.9"),)))
    phone = await world.phone("1001", register=False)
    out = await phone.call("9" + NUMBER)
    await until(lambda: out.invite.provisional is not None, "the PBX's 100")
    loop = asyncio.get_running_loop()
    started = loop.time()
    out.cancel()
    assert (await out.final()).status == 487
    assert loop.time() - started < 0.1  # not Timer B (64*T1)
    await pbx.idle()


async def test_no_answer_gives_480_and_the_carrier_is_cancelled(world: World) -> None:
    pbx = await world.start_pbx(pbx_config(), no_answer_seconds=0.05)
    carrier = await world.carrier()
    carrier.answer = None
    phone = await world.phone("1001", register=False)
    out = await phone.call("9" + NUMBER)
    assert (await out.final()).status == 480
    assert 180 in statuses(out.provisional)
    assert len(sent_to(world, carrier.host, "CANCEL")) == 1
    await pbx.idle()
    [ended] = [e.call for e in pbx.events if isinstance(e, events.CallEnded)]
    assert ended.caller.end_cause == 480


@pytest.mark.parametrize("who", ["caller", "no-answer timer"])
async def test_an_answer_crossing_the_cancel_is_hung_up(world: World, who: str) -> None:
    """The carrier's 200 crosses ippbx's CANCEL: ippbx ACKs and BYEs it; the caller gets
    487 (it cancelled) or 480 (nobody answered in time), never that 200."""
    pbx = await world.start_pbx(no_answer_seconds=None if who == "caller" else 0.05)
    carrier = await world.carrier()
    carrier.answer, carrier.on_cancel = None, 200
    phone = await world.phone("1001", register=False)
    out = await phone.call("9" + NUMBER)
    if who == "caller":
        await until(lambda: 180 in statuses(out.provisional), "the 180")
        out.cancel()
    assert (await out.final()).status == (487 if who == "caller" else 480)
    await until(lambda: carrier.acks and carrier.acks[0] is not None, "the carrier's ACK")
    assert carrier.ended == 1  # and its BYE
    assert phone.dialog is None and phone.got("BYE") == []
    await pbx.idle()


async def test_a_carrier_that_ignores_the_cancel_does_not_hold_the_caller(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No 487 after our CANCEL: the caller gets 480 once the grace for it runs out, and
    the call leaves the registry and its trunk channel at once."""
    monkeypatch.setattr("ippbx.pbx.b2bua.CANCEL_GRACE", 0.05)
    pbx = await world.start_pbx(pbx_config(), no_answer_seconds=0.05)
    carrier = await world.carrier()
    carrier.answer, carrier.on_cancel = None, None
    phone = await world.phone("1001", register=False)
    loop = asyncio.get_running_loop()
    started = loop.time()
    out = await phone.call("9" + NUMBER)
    assert (await out.final()).status == 480
    assert loop.time() - started < 0.5
    assert len(sent_to(world, carrier.host, "CANCEL")) >= 1
    assert len(pbx.registry) == 0 and pbx.trunks.in_use == {"carrier": 0}


@pytest.mark.parametrize(("dialled", "status"), [
    ("0123", 404),  # no route
    ("1003", 480),  # an extension that is not registered
    ("75551234", 403),  # a route 1001 may not use
])
async def test_calls_that_go_nowhere(world: World, dialled: str, status: int) -> None:
    only_1002 = ('[[outbound_routes]]\nname = "only1002"\nprefix = "7"\nmatch = "X."\n'
                 'trunks = ["carrier"]\nextensions = ["1002"]\n')
    pbx = await world.start_pbx(pbx_config(extra=only_1002))
    carrier = await world.carrier()
    phone = await world.phone("1001", register=False)
    out = await phone.call(dialled)
    assert (await out.final()).status == status
    assert carrier.got("INVITE") == []
    await pbx.idle()
    [ended] = [e.call for e in pbx.events if isinstance(e, events.CallEnded)]
    assert ended.caller.end_cause == status  # a call all the same (its CDR says FAILED)


async def test_max_forwards_zero_gives_483(world: World) -> None:
    await world.start_pbx()
    carrier = await world.carrier()
    phone = await world.phone("1001", register=False)
    out = await phone.call("9" + NUMBER, headers=[("Max-Forwards", "0")])
    assert (await out.final()).status == 483  # (before any challenge)
    assert carrier.got("INVITE") == [] and calls_created(world) == []


async def test_a_wrong_password_is_refused_403(world: World) -> None:
    await world.start_pbx()
    phone = await world.phone("1001", register=False)
    phone.password = "wrong"
    out = await phone.call("9" + NUMBER)
    assert (await out.final()).status == 403
    assert calls_created(world) == []


async def test_a_bye_in_the_early_dialog_gives_up_like_a_cancel(world: World) -> None:
    """RFC 3261 §15: a caller may end a call that is ringing with a BYE in the early
    dialog of ippbx's 180: the carrier is CANCELled and the INVITE answered 487."""
    pbx = await world.start_pbx()
    carrier = await world.carrier()
    carrier.answer = None
    phone = await world.phone("1001", register=False)
    out = await phone.call("9" + NUMBER)
    await until(lambda: 180 in statuses(out.provisional), "the 180")
    assert out.invite.early
    [early] = out.invite.early.values()
    assert (await phone.ua.request_in_dialog(early, "BYE")).status == 200
    assert (await out.final()).status == 487
    await until(lambda: carrier.requests[0].was_cancelled, "the carrier's CANCEL")
    await pbx.idle()
    [ended] = [e.call for e in pbx.events if isinstance(e, events.CallEnded)]
    assert ended.hangup_by == "caller"


async def test_stopping_the_b2bua_while_the_carrier_rings(world: World) -> None:
    pbx = await world.start_pbx()
    carrier = await world.carrier()
    carrier.answer = None
    phone = await world.phone("1001", register=False)
    out = await phone.call("9" + NUMBER)
    await until(lambda: 180 in statuses(out.provisional), "the 180")
    await pbx.b2bua.stop()
    assert len(pbx.registry) == 0 and pbx.trunks.in_use == {"carrier": 0}
    # the stop waited for the 487 to its CANCEL: the carrier has its ACK already
    assert carrier.requests[0].was_cancelled and sent_to(world, carrier.host, "ACK")
    assert (await out.final()).status == 503
    again = await phone.call("9" + NUMBER)  # a stopping B2BUA takes no new call
    assert (await again.final()).status == 503


async def answered_call(world: World) -> tuple[Pbx, Party, Party]:
    """1001 calling out through `carrier`, answered and ACKed: (pbx, phone, carrier)."""
    pbx = await world.start_pbx()
    carrier = await world.carrier()
    phone = await world.phone("1001", register=False)
    out = await phone.call("9" + NUMBER)
    assert (await out.final()).status == 200
    await until(lambda: carrier.acks, "the carrier's ACK")
    return pbx, phone, carrier


async def test_a_stop_hangs_up_an_answered_call_on_both_sides(world: World) -> None:
    pbx, phone, carrier = await answered_call(world)
    call = pbx.only_call()
    await pbx.b2bua.stop()
    await carrier.wait_for("BYE")
    await phone.wait_for("BYE")
    assert len(pbx.registry) == 0 and pbx.trunks.in_use == {"carrier": 0}
    [ended] = [e.call for e in pbx.events if isinstance(e, events.CallEnded)]
    assert ended is not None and ended.callid == call.callid
    assert ended.hangup_by == "pbx" and ended.answered is not None


async def test_a_phones_bye_crossing_the_stop_is_answered_200(world: World) -> None:
    pbx, phone, carrier = await answered_call(world)

    def bye_to_the_phone(message: object, dest: Peer) -> bool:
        return isinstance(message, Request) and message.method == "BYE" \
            and dest.host == phone.host

    world.net.drop = bye_to_the_phone  # ippbx's BYE to the phone is lost...
    stopping = asyncio.ensure_future(pbx.b2bua.stop(grace=0.5))
    await carrier.wait_for("BYE")
    assert (await phone.hangup()).status == 200  # ...and the phone's own crosses it
    await stopping
    assert len(pbx.registry) == 0


# -- inbound calls -----------------------------------------------------------------------------
async def test_an_inbound_call_rings_the_registered_extension(world: World) -> None:
    pbx = await world.start_pbx()
    ext = await world.phone("1002")
    [binding] = pbx.registrar.contacts("1002")
    assert binding.contact == f"sip:1002@{ext.host}:5060"
    assert binding.source == Peer(ext.host, 5060)
    carrier = await world.carrier()
    out = await carrier.call("5550100", from_user="0612345678")  # no credentials: a trunk
    final = await out.final()
    assert final.status == 200 and sdp_name(final.body) == "1002"
    assert 180 in statuses(out.provisional)
    [invite] = ext.got("INVITE")
    assert invite.uri == binding.contact
    assert invite.from_.uri.startswith("sip:0612345678@")
    assert sdp_name(invite.body) == "carrier"
    call = pbx.only_call()
    assert call.type is CallType.INBOUND and pbx.registry.by_inboundid(call.caller.id) is call
    assert (call.caller.trunk, call.caller.from_number, call.caller.to_number) == \
        ("carrier", "0612345678", "5550100")
    assert call.callee is not None and call.callee.extension == "1002"
    assert call.inbound_route == "did"
    assert pbx.trunks.in_use == {"carrier": 1}  # an inbound call takes a channel too
    await until(lambda: ext.acks, "the ACK")
    assert [leg.status for leg in call.legs()] == [LegStatus.TALKING, LegStatus.TALKING]
    await ext.hangup()
    await carrier.wait_for("BYE")
    await pbx.idle()
    await world.settled()


async def test_an_extension_whose_registration_expired_is_not_rung(
    world: World, clock: FakeClock
) -> None:
    pbx = await world.start_pbx(clock=clock)
    ext = await world.phone("1002")  # (for 300 s)
    carrier = await world.carrier()
    clock.advance(299)
    assert pbx.registrar.is_registered("1002")
    clock.advance(2)
    out = await carrier.call("5550100")
    assert (await out.final()).status == 480
    assert ext.got("INVITE") == []
    await pbx.idle()
    unregistered = [e for e in pbx.events if isinstance(e, events.ExtensionRegistration)]
    assert [e.registered for e in unregistered] == [True, False]


async def test_an_inbound_call_from_an_unknown_address_is_challenged(world: World) -> None:
    """Only a trunk's address makes a call a trunk's; anyone else must be an extension."""
    await world.start_pbx()
    ext = await world.phone("1002")
    stranger = await world.party("stranger", "10.0.9.9")
    out = await stranger.call("5550100")
    final = await out.final()
    assert final.status == 407 and final.get("Proxy-Authenticate")
    assert calls_created(world) == [] and ext.got("INVITE") == []


async def test_an_internal_call_between_extensions(world: World) -> None:
    pbx = await world.start_pbx()
    callee = await world.phone("1002")
    phone = await world.phone("1001", register=False)
    out = await phone.call("1002")
    final = await out.final()
    assert final.status == 200 and sdp_name(final.body) == "1002"
    [invite] = callee.got("INVITE")
    assert invite.uri == f"sip:1002@{callee.host}:5060"
    assert invite.from_.uri.startswith("sip:1001@") and invite.body == phone.sdp
    call = pbx.only_call()
    assert call.type is CallType.INTERNAL and pbx.registry.outbound() == []
    assert [c.callid for c in pbx.registry.by_extension("1002")] == [call.callid]
    await callee.hangup()
    await phone.wait_for("BYE")
    await pbx.idle()


@pytest.mark.parametrize(("did", "status"), [("5550199", 603), ("5550111", 404)])
async def test_inbound_calls_the_routes_refuse(world: World, did: str, status: int) -> None:
    blocked = ('[[inbound_routes]]\nname = "blocked"\ntrunk = "carrier"\ndid = "5550199"\n'
               'destination = "hangup"\n')
    pbx = await world.start_pbx(pbx_config(extra=blocked))
    ext = await world.phone("1002")
    carrier = await world.carrier()
    out = await carrier.call(did)
    assert (await out.final()).status == status
    assert ext.got("INVITE") == []
    await pbx.idle()
    [created] = calls_created(world)
    [ended] = [e for e in world.pbx.events if isinstance(e, events.CallEnded)]
    assert created.call.caller.trunk == "carrier" and created.call.caller.end_cause is None
    assert ended.call == created.call and ended.call.caller.end_cause == status


async def test_a_busy_extension_gives_the_carrier_486(world: World) -> None:
    pbx = await world.start_pbx()
    ext = await world.phone("1002")
    ext.answer = 486
    carrier = await world.carrier()
    out = await carrier.call("5550100")
    assert (await out.final()).status == 486
    assert len(ext.got("INVITE")) == 1
    await pbx.idle()


# -- in the call -------------------------------------------------------------------------------
async def test_hold_from_the_phone_is_relayed_and_shows_wait(world: World) -> None:
    pbx = await world.start_pbx()
    carrier = await world.carrier()
    phone = await world.phone("1001", register=False)
    out = await phone.call("9" + NUMBER)
    assert (await out.final()).status == 200
    call = pbx.only_call()
    await until(lambda: carrier.acks, "the ACK")

    held = await phone.reinvite("sendonly")
    assert held.status == 200 and b"a=recvonly" in held.body  # the carrier's answer
    reinvite = await carrier.wait_for("INVITE", 2)
    assert b"a=sendonly" in reinvite.body and sdp_name(reinvite.body) == "1001"
    await until(lambda: len(carrier.acks) == 2, "the re-INVITE's ACK")
    assert [leg.status for leg in call.legs()] == [LegStatus.WAIT, LegStatus.WAIT]

    assert (await phone.reinvite("sendrecv")).status == 200
    assert b"a=sendrecv" in (await carrier.wait_for("INVITE", 3)).body
    assert [leg.status for leg in call.legs()] == [LegStatus.TALKING, LegStatus.TALKING]
    await phone.hangup()
    await pbx.idle()


async def test_info_is_relayed_to_the_other_party(world: World) -> None:
    """RFC 6086: an INFO (DTMF here) goes across with its body and Content-Type, and
    the other party's answer comes back."""
    await world.start_pbx()
    carrier = await world.carrier()
    phone = await world.phone("1001", register=False)
    out = await phone.call("9" + NUMBER)
    assert (await out.final()).status == 200
    dtmf = b"Signal=5\r\nDuration=160\r\n"
    assert phone.dialog is not None
    answer = await phone.ua.request_in_dialog(
        phone.dialog, "INFO", dtmf, [("Content-Type", "application/dtmf-relay")])
    assert answer.status == 200
    [info] = carrier.got("INFO")
    assert info.body == dtmf and info.get("Content-Type") == "application/dtmf-relay"
    await phone.hangup()
    await carrier.wait_for("BYE")


async def test_a_relay_that_fails_still_answers_the_request(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """A relay task that crashes (here: the media engine fails as nobody foresaw on an
    UPDATE's offer) answers 500, never leaves the request unanswered and its transaction
    behind; the call goes on."""
    pbx = await world.start_pbx()
    engine = BreakingEngine(0.0)
    pbx.b2bua.media = MediaAnchor(engine, "moh.wav", (LookupError,))
    carrier = await world.carrier()
    phone = await world.phone("1001", register=False)
    out = await phone.call("9" + NUMBER)
    assert (await out.final()).status == 200
    assert phone.dialog is not None
    engine.broken = True
    answer = await phone.ua.request_in_dialog(phone.dialog, "UPDATE", phone.sdp,
                                              [("Content-Type", "application/sdp")])
    assert answer.status == 500 and carrier.got("UPDATE") == []
    assert "call task failed" in caplog.text
    engine.broken = False
    await phone.hangup()
    await carrier.wait_for("BYE")
    await pbx.idle()


class BreakingEngine(EngineModel):
    """The engine model, whose offers fail with an error the anchor does not expect while
    `broken`."""

    broken = False

    async def offer(self, call_id: str, from_tag: str, sdp: bytes, *,
                    to_tag: str | None = None) -> bytes:
        if self.broken:
            raise RuntimeError("the engine is in a state nobody foresaw")
        return await super().offer(call_id, from_tag, sdp, to_tag=to_tag)


async def test_a_late_offer_gets_its_answer_through_the_acks(world: World) -> None:
    """An INVITE without SDP: the carrier's offer comes in its 200, the caller's answer in
    its ACK, and ippbx ACKs the carrier with that answer."""
    pbx = await world.start_pbx()
    carrier = await world.carrier()
    phone = await world.phone("1001", register=False)
    out = await phone.call("9" + NUMBER, body=b"")
    invite = await carrier.wait_for("INVITE")
    assert invite.body == b""
    final = await out.final(ack_body=phone.sdp)
    assert final.status == 200 and final.body == carrier.sdp  # the carrier's offer
    await until(lambda: carrier.acks, "the carrier's ACK")
    [ack] = carrier.acks
    assert ack is not None and ack.body == phone.sdp  # the caller's answer
    call = pbx.only_call()
    await until(lambda: [leg.status for leg in call.legs()] == [LegStatus.TALKING] * 2,
                "talking")
    await carrier.hangup()
    await phone.wait_for("BYE")
    await pbx.idle()


async def test_a_caller_that_never_acks_gets_bye_and_so_does_the_carrier(world: World) -> None:
    """No ACK for our 200 within 64*T1: both sides get a BYE (RFC 3261 §13.3.1.4)."""
    pbx = await world.start_pbx()
    carrier = await world.carrier()
    phone = await world.phone("1001", register=False)
    world.net.drop = lambda m, dest: (isinstance(m, Request) and m.method == "ACK"
                                      and dest == PBX)
    out = await phone.call("9" + NUMBER)
    assert (await out.final()).status == 200
    await phone.wait_for("BYE")
    await carrier.wait_for("BYE")
    await pbx.idle()
    [ended] = [e.call for e in pbx.events if isinstance(e, events.CallEnded)]
    assert ended.hangup_by == "pbx" and ended.caller.end_cause == 408


@pytest.mark.parametrize("where", ["trunk", "PBX"])
async def test_invites_over_ipv6_carry_valid_uris(world: World, where: str) -> None:
    """An IPv6 address in a SIP URI goes in brackets (RFC 3261 §25.1, `IPv6reference`),
    or the URI does not parse: here for a trunk on an IPv6 address, and for ippbx on one."""
    trunk = TrunkSpec("carrier", "2001:db8::1") if where == "trunk" else CARRIER
    address = Peer("2001:db8::100", 5060) if where == "PBX" else PBX
    await world.start_pbx(pbx_config((trunk,)), address)
    carrier = await world.carrier(trunk)
    phone = await world.phone("1001", register=False)
    out = await phone.call("9" + NUMBER)
    assert (await out.final()).status == 200
    [invite] = carrier.got("INVITE")
    bracketed = f"[{trunk.host}]" if where == "trunk" else trunk.host
    assert invite.uri == f"sip:{NUMBER}@{bracketed}:5060"
    contact = NameAddr.parse(invite.get("Contact") or "").uri
    for name, uri in (("Request-URI", invite.uri), ("From", invite.from_.uri),
                      ("To", invite.to.uri), ("Contact", contact)):
        try:
            SipUri.parse(uri)
        except UriError as exc:
            raise AssertionError(f"{name} {uri!r} is no SIP URI: {exc}") from None
    assert SipUri.parse(invite.to.uri).host == trunk.host
    assert SipUri.parse(invite.from_.uri).host == address.host
    await phone.hangup()
    await carrier.wait_for("BYE")


# -- requests outside calls ---------------------------------------------------------------------
async def test_options_bye_and_unknown_methods_outside_a_call(world: World) -> None:
    await world.start_pbx()
    phone = await world.phone("1001", register=False)

    def request(method: str) -> Request:
        return Request(method, f"sip:{PBX.host}", [
            ("From", f"<sip:1001@{PBX.host}>;tag={phone.ua.new_tag()}"),
            ("To", f"<sip:{PBX.host}>"), ("Call-ID", phone.ua.new_call_id()),
            ("CSeq", f"1 {method}"),
        ])

    options = await phone.ua.request(request("OPTIONS"), PBX)
    assert options.status == 200 and "INVITE" in (options.get("Allow") or "")
    assert (await phone.ua.request(request("BYE"), PBX)).status == 481
    unknown = await phone.ua.request(request("PUBLISH"), PBX)
    assert unknown.status == 501 and unknown.get("Allow")


async def test_register_for_another_extension_is_refused(world: World) -> None:
    pbx = await world.start_pbx()
    phone = await world.phone("1001", register=False)
    assert (await phone.register()).status == 200
    assert pbx.registrar.is_registered("1001")
    # 1001's credentials in a REGISTER for 1002's address: 403
    assert (await phone.register(aor_user="1002")).status == 403
    assert not pbx.registrar.is_registered("1002")


# -- calls that end by themselves ---------------------------------------------------------------
async def test_session_refreshes_keep_the_call_and_a_lost_one_ends_it(world: World) -> None:
    """Session timers (a 0.2 s interval here): ippbx refreshes both legs every half interval
    (UPDATE where the peer allows it, else a re-INVITE repeating the SDP it last sent
    there); answered, the call goes on. A phone that lost the call answers 481: both legs
    are torn down, the carrier getting its BYE."""
    pbx = await world.start_pbx(pbx_config(), session_expires=0.2)
    carrier = await world.carrier()
    phone = await world.phone("1001", register=False)
    allow = [("Allow", "INVITE, ACK, CANCEL, BYE, UPDATE")]
    out = await phone.call("9" + NUMBER, headers=allow)
    assert (await out.final()).status == 200
    [invite] = carrier.got("INVITE")
    assert invite.get("Session-Expires") == "0;refresher=uac"  # (int() of 0.2)
    await phone.wait_for("UPDATE", 2)
    refresh = await carrier.wait_for("INVITE", 3)  # its 200 had no Allow: re-INVITEs
    assert sdp_name(refresh.body) == "1001"  # the SDP it last got, unchanged
    assert phone.got("INVITE") == [] and len(pbx.registry) == 1
    assert pbx.b2bua.keeper.ended == 0

    assert phone.dialog is not None
    phone.ua.forget_dialog(phone.dialog)  # the phone lost the call (rebooted, say)
    phone.dialog = None
    await carrier.wait_for("BYE")
    await pbx.idle()
    assert pbx.b2bua.keeper.ended == 1
    [ended] = [e.call for e in pbx.events if isinstance(e, events.CallEnded)]
    assert ended.hangup_by == "pbx" and ended.caller.end_cause == 408


async def test_max_duration_hangs_up_both_legs(world: World) -> None:
    pbx = await world.start_pbx(pbx_config(), max_duration=0.05)
    carrier = await world.carrier()
    phone = await world.phone("1001", register=False)
    out = await phone.call("9" + NUMBER)
    assert (await out.final()).status == 200
    loop = asyncio.get_running_loop()
    answered = loop.time()
    await phone.wait_for("BYE")
    await carrier.wait_for("BYE")
    assert 0.04 <= loop.time() - answered < 0.5
    await pbx.idle()
    [ended] = [e.call for e in pbx.events if isinstance(e, events.CallEnded)]
    assert ended.hangup_by == "pbx" and ended.caller.end_cause == 200
