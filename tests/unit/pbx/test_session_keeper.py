"""The session keeper's decisions (pbx/session_keeper.py) with short real timers: who
refreshes, what a refresh's answer means, expiry without refreshes, the longest call.

The B2BUA and the UA are stand-ins recording what the keeper asks of them, each dialog
by its Call-ID (the wire is covered by tests/integration/test_call_lifetime.py with sipp
peers)."""

from __future__ import annotations

import asyncio
from typing import Any

from sip_net import until

from ippbx.pbx.b2bua import Bridge, offer_turn
from ippbx.pbx.calls import Call, Leg, LegKind
from ippbx.pbx.session_keeper import SessionKeeper
from ippbx.pbx.session_timers import SessionTimer
from ippbx.sip.dialog import Dialog
from ippbx.sip.message import Response
from ippbx.sip.session import Offer, OfferStimulus, expire_after
from ippbx.sip.ua import UNREACHABLE


class StandInUA:
    def __init__(self, answers: list[int | str | None]) -> None:
        self.answers = answers  # status per refresh, "unreachable", None: never answered
        self.sent: list[tuple[object, str, bytes]] = []
        self.acked: list[object] = []

    async def request_in_dialog(self, dialog: Dialog, method: str, body: bytes = b"",
                                headers: Any = ()) -> Response:
        self.sent.append((dialog.call_id, method, body))
        status = self.answers.pop(0) if self.answers else 200
        if status is None:
            await asyncio.sleep(3600)
        if status == "late":  # a 200 after the refresh's answer timeout (1 s here)
            await asyncio.sleep(1.5)
            status = 200
        if status == "unreachable":  # what the UA makes up when the transport fails
            return Response(503, UNREACHABLE, [("CSeq", f"2 {method}")])
        assert isinstance(status, int)
        return Response(status, None, [("CSeq", f"2 {method}")])

    def ack(self, dialog: Dialog) -> None:
        self.acked.append(dialog.call_id)


class StandInB2BUA:
    def __init__(self, ua: StandInUA) -> None:
        self.ua = ua
        self.torn_down: list[int] = []
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def teardown(self, bridge: Bridge, status: int) -> None:
        bridge.ended = True
        self.torn_down.append(status)

    async def request(self, dialog: Dialog, method: str, body: bytes = b"",
                      headers: Any = ()) -> Response:
        return await self.ua.request_in_dialog(dialog, method, body, headers)

    def ack(self, dialog: Dialog) -> None:
        self.ua.ack(dialog)


def confirmed_dialog(name: str, is_uac: bool = False) -> Dialog:
    """A confirmed dialog named `name` (its Call-ID); `is_uac`: we sent its INVITE."""
    return Dialog(call_id=name, local_tag="ours", remote_tag="theirs",
                  local_addr="<sip:pbx@127.0.0.1>;tag=ours",
                  remote_addr="<sip:1001@127.0.0.1>;tag=theirs", local_cseq=1,
                  remote_cseq=1, remote_target="sip:1001@127.0.0.1", route_set=[],
                  secure=False, is_uac=is_uac)


def bridge() -> Bridge:
    call = Call(Leg(LegKind.EXTENSION, "1001", "95551234", extension="1001"), "95551234")
    made = Bridge(call, None, "tag")
    made.a_dialog = confirmed_dialog("dialog-a")
    made.b_dialog = confirmed_dialog("dialog-b")
    made.sdp = {"a": b"v=0 a", "b": b"v=0 b"}
    return made


def keeper(answers: list[int | str | None], max_duration: float = 0.0
           ) -> tuple[SessionKeeper, StandInB2BUA]:
    b2bua = StandInB2BUA(StandInUA(answers))
    return SessionKeeper(b2bua, max_duration), b2bua  # type: ignore[arg-type]


async def test_we_refresh_with_update_or_reinvite_and_a_live_peer_keeps_the_call() -> None:
    keep, b2bua = keeper([200, 200, 200])
    call = bridge()
    keep.start(call, "a", SessionTimer(0.2, we_refresh=True), allows_update=True)
    keep.start(call, "b", SessionTimer(0.2, we_refresh=True), allows_update=False)
    await asyncio.sleep(0.35)
    sent = b2bua.ua.sent
    assert ("dialog-a", "UPDATE", b"") in sent
    assert ("dialog-b", "INVITE", b"v=0 a") in sent  # b gets the SDP a sent, unchanged
    assert "dialog-b" in b2bua.ua.acked and b2bua.torn_down == []
    keep.stop(call)


async def test_without_sdp_to_repeat_the_refresh_is_an_options() -> None:
    keep, b2bua = keeper([200])
    call = bridge()
    call.sdp = {}  # a late-offer call: no SDP was exchanged in the INVITE
    keep.start(call, "b", SessionTimer(0.2, we_refresh=True), allows_update=False)
    await asyncio.sleep(0.15)
    assert b2bua.ua.sent == [("dialog-b", "OPTIONS", b"")] and b2bua.ua.acked == []
    keep.stop(call)


async def test_a_refresh_answered_481_or_never_ends_the_call() -> None:
    for answers in ([481], [408], [None], ["unreachable"]):
        keep, b2bua = keeper(answers)
        call = bridge()
        keep.start(call, "a", SessionTimer(0.2, we_refresh=True), allows_update=True)
        await asyncio.sleep(0.1 + 1.0 + 0.2)  # refresh at 0.1 s, answer_timeout 1 s
        assert b2bua.torn_down == [408], answers
        assert keep.ended == 1 and len(keep) == 0
        for task in b2bua.tasks:
            task.cancel()


async def test_a_2xx_to_a_refresh_that_came_too_late_is_still_acked() -> None:
    keep, b2bua = keeper(["late"])
    call = bridge()
    keep.start(call, "b", SessionTimer(0.2, we_refresh=True), allows_update=False)
    await asyncio.sleep(0.1 + 1.0 + 0.2)  # refresh at 0.1 s, answer_timeout 1 s
    assert b2bua.torn_down == [408] and b2bua.ua.acked == []
    await asyncio.sleep(0.6)  # its 200 at 1.6 s
    assert b2bua.ua.sent == [("dialog-b", "INVITE", b"v=0 a")]
    assert b2bua.ua.acked == ["dialog-b"]  # RFC 3261 §13.2.2.4: every 2xx gets its ACK
    assert call.b_offer is Offer.IDLE


async def test_491_is_retried_later_and_update_not_allowed_falls_back_to_reinvite() -> None:
    keep, b2bua = keeper([501, 200])
    call = bridge()
    keep.start(call, "a", SessionTimer(0.2, we_refresh=True), allows_update=True)
    await asyncio.sleep(0.2)
    assert [m for _, m, _ in b2bua.ua.sent] == ["UPDATE", "INVITE"]  # at once, as INVITE
    assert b2bua.torn_down == []
    keep.stop(call)

    keep, b2bua = keeper([491])
    call = bridge()
    # (a dialog whose INVITE we sent: §14.1's pause is 2.1-4 s; for the other side it is
    # 0-2 s, a random draw this wait would sometimes see end)
    call.a_dialog = confirmed_dialog("dialog-a", is_uac=True)
    keep.start(call, "a", SessionTimer(0.2, we_refresh=True), allows_update=True)
    await asyncio.sleep(0.3)
    assert len(b2bua.ua.sent) == 1 and b2bua.torn_down == []  # the retry waits 2.1-4 s
    keep.stop(call)

    for answers in ([503], [488]):  # the peer itself answered: it is there
        keep, b2bua = keeper(answers)
        call = bridge()
        keep.start(call, "a", SessionTimer(0.2, we_refresh=True), allows_update=True)
        await asyncio.sleep(0.3)
        assert len(b2bua.ua.sent) >= 2 and b2bua.torn_down == [], answers  # refreshed on
        keep.stop(call)


async def test_a_peer_that_stops_refreshing_is_ended_and_refreshes_keep_it() -> None:
    keep, b2bua = keeper([])
    call = bridge()
    timer = SessionTimer(1.5, we_refresh=False, peer_supports=True)
    assert expire_after(timer.interval) == 1.0
    keep.start(call, "a", timer, allows_update=False)
    for _ in range(4):  # refreshed every 0.3 s (a third of the expiry): kept
        await asyncio.sleep(0.3)
        keep.refreshed(call, "a")
    assert b2bua.torn_down == [] and b2bua.ua.sent == []
    await asyncio.sleep(1.5)  # no more refreshes
    assert b2bua.torn_down == [408]


async def test_max_duration_hangs_up() -> None:
    keep, b2bua = keeper([], max_duration=0.5)
    call = bridge()
    keep.start(call, "a", None, allows_update=False)
    keep.start(call, "b", None, allows_update=False)
    await asyncio.sleep(0.2)
    assert b2bua.torn_down == []
    await asyncio.sleep(0.7)
    assert b2bua.torn_down == [200] and len(keep) == 0


async def test_an_extensions_own_longest_call_wins() -> None:
    keep, b2bua = keeper([], max_duration=0.0)  # (no limit for the system)
    call = bridge()
    keep.start(call, "a", None, allows_update=False, max_duration=0.3)
    keep.start(call, "b", None, allows_update=False, max_duration=0.3)
    await asyncio.sleep(0.1)
    assert b2bua.torn_down == []
    await asyncio.sleep(0.5)
    assert b2bua.torn_down == [200] and len(keep) == 0


async def test_stop_cancels_everything() -> None:
    keep, b2bua = keeper([], max_duration=0.1)
    call = bridge()
    keep.start(call, "a", SessionTimer(0.1, we_refresh=True), allows_update=True)
    keep.stop(call)
    await asyncio.sleep(0.2)
    assert b2bua.ua.sent == [] and b2bua.torn_down == [] and len(keep) == 0


async def test_ended_calls_leave_no_timers_behind() -> None:
    """A call's timers are due up to half an hour after it ended; at a few hundred calls a
    second the cancelled ones must not pile up until then (they did: 3 per call here)."""
    keep, b2bua = keeper([])
    held = bridge()
    keep.start(held, "a", SessionTimer(1800, we_refresh=True), allows_update=True,
               max_duration=0.5)
    for _ in range(5000):
        call = bridge()
        keep.start(call, "a", SessionTimer(1800, we_refresh=True), allows_update=True,
                   max_duration=3600)
        keep.start(call, "b", SessionTimer(1800, we_refresh=False), allows_update=True)
        keep.stop(call)
    assert len(keep) == 1
    assert len(keep._heap) <= 2 * 1024 + 2  # the held call's two timers, and a sweep's slack
    # the held call's limit (0.5 s) survived the sweeps: it hangs up
    await until(lambda: b2bua.torn_down, "the held call's longest duration")
    assert b2bua.torn_down == [200] and len(keep) == 0


# -- offer_turn: one offer at a time per dialog (RFC 3261 §14.1) ------------------------

async def test_our_offer_waits_for_the_peers_to_be_answered() -> None:
    call = bridge()
    call.offer("a", OfferStimulus.PEER_OFFER)  # the caller's re-INVITE, being answered
    turn = asyncio.ensure_future(offer_turn(call, "a", wait=5.0))
    await asyncio.sleep(0.4)
    assert not turn.done() and call.a_offer is Offer.THEIRS
    call.offer("a", OfferStimulus.PEER_ANSWERED)
    assert await asyncio.wait_for(turn, 1.0) is True
    assert call.a_offer is Offer.OURS and call.b_offer is Offer.IDLE


async def test_our_offer_gives_up_on_a_dialog_that_stays_busy() -> None:
    call = bridge()
    call.offer("b", OfferStimulus.PEER_OFFER)  # never answered
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await offer_turn(call, "b", wait=0.5) is False
    assert 0.5 <= loop.time() - started < 1.5  # (it checks every 50-250 ms)
    # the peer's offer is still the one out: its answer is still expected
    assert call.b_offer is Offer.THEIRS
    call.offer("b", OfferStimulus.PEER_ANSWERED)
    assert call.b_offer is Offer.IDLE


async def test_our_offer_is_dropped_when_the_call_ends() -> None:
    call = bridge()
    call.offer("a", OfferStimulus.OUR_OFFER)  # a refresh of ours, out
    turn = asyncio.ensure_future(offer_turn(call, "a", wait=30.0))
    await asyncio.sleep(0.3)
    call.ended = True
    assert await asyncio.wait_for(turn, 1.0) is False  # not the 30 s
    # a call that ended before its turn came marks nothing
    other = bridge()
    other.ended = True
    assert await offer_turn(other, "b") is False
    assert other.b_offer is Offer.IDLE

