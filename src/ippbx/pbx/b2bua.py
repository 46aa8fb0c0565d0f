"""The back-to-back user agent: every call through ippbx is two SIP dialogs bridged here.

Theory of operation. The UA core hands us each new request (`on_request`). An INVITE
outside a dialog is a new call: the caller is identified (a trunk by its address, an
extension by digest authentication), the dial plan picks a destination, the call is
entered in the live-call registry, and a new INVITE goes out to the callee (an
extension's registered contact or a trunk; trunks are tried in order on failure). The
callee's provisional answers are relayed to the caller, its final answer too. Every SDP
that crosses goes through the media anchor when there is a media engine (each party then
sees the engine's address: `pbx/media_anchor.py`, offer or answer as the message makes it),
else passes through untouched and media flows end to end. A CANCEL from the caller
cancels the callee leg; a BYE from either side ends both. In-dialog re-INVITEs (hold)
are relayed to the other side. The registry is updated at every step so
`outbound/query` sees calls live, and a call leaves it only once both legs are over.

A 3xx from the callee is followed: each number its Contacts name (highest q first) is
dialled as a new dial by the caller, through the caller's own dial plan (an extension's
outbound permissions, or the inbound routes of the caller's trunk), the redirected
callee leg ending and a new one taking its place; a loop or more than three redirects
fail the call (482). With `[calls] redirects = "relay"` the 3xx goes to the caller
instead, its Contacts pointing at the same numbers through ippbx (`pbx/redirects.py`).

Where a call goes is the dial plan's decision (`pbx/dialplan.py`), carried out by
`deliver`: an extension rings as its settings say (do-not-disturb, forwarding always /
on busy / on no answer, its ring timeout, every phone it registered and its mobile at
once, its mailbox when nobody answers); a ring group rings its free members all at once
or in turn, then its failover; trunks in failover order; IVRs, mailboxes and feature
codes are applications that answer the caller themselves (`pbx/applications.py`). A
party reached after that (an IVR's choice) is bridged without a new answer to the
caller. Several INVITEs at once are a fork (`_fork`): the caller hears one 180, the
first 2xx wins, the others are CANCELled.

The public methods that are not `on_request` (new_bridge, build_invite, send_invite,
place_leg, deliver, call_extension, call_trunks, remember, bye, detach, release,
hangup_side, teardown, fail, spawn, digit) are the primitives `control.py` and the
applications build hang-up, hold, transfer, click-to-call and the menus on.

Failures as the caller sees them: 404 no route, 403 route not allowed, 480 callee not
registered or not answering, 486 busy (relayed), 503 every trunk failed, 483 when
Max-Forwards runs out, 482 a redirect loop (404/403 a redirect the dial plan refuses),
603 an inbound call an application refused (a route with `control_inbound_call` holds
its calls, ringing, for inbound/accept or inbound/refuse first: `pbx/inbound_control.py`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, Protocol, TypeVar

from ippbx.config import Config, Trunk
from ippbx.media.recordings import recording_name
from ippbx.pbx.auth import ExtensionAuth, next_attempt
from ippbx.pbx.calls import Call, CallStore, Leg, LegKind, LegStatus
from ippbx.pbx.capabilities import ALLOW, capability_headers, supported_header
from ippbx.pbx.cdr import zone
from ippbx.pbx.dialplan import (
    Destination,
    Dialplan,
    Refusal,
    Refused,
    ToExtension,
    ToRingGroup,
    ToTrunks,
)
from ippbx.pbx.inbound_control import Decision, InboundControl
from ippbx.pbx.leftover_dialogs import DialogJournal
from ippbx.pbx.media_anchor import MediaAnchor
from ippbx.pbx.redirects import (
    LOOP_STATUS,
    MAX_REDIRECTS,
    is_redirect,
    redirect_numbers,
    relayed_contacts,
    target_key,
)
from ippbx.pbx.registrar import Registrar
from ippbx.pbx.sdp import with_direction
from ippbx.pbx.session_keeper import SessionKeeper
from ippbx.pbx.session_timers import (
    MIN_SE,
    SessionTimer,
    TooSmall,
    allows_update,
    answer_headers,
    from_request,
    from_response,
    offer_headers,
    retry_interval,
)
from ippbx.pbx.trunks import Trunks
from ippbx.sip.dialog import TERMINATED, Dialog
from ippbx.sip.errors import SipParseError
from ippbx.sip.message import Request, Response
from ippbx.sip.one_shot import OneShot
from ippbx.sip.reliable import RELIABLE, has_tag, rack_of, rseq_of
from ippbx.sip.session import Offer, OfferStimulus, Verdict, offer_step
from ippbx.sip.ua import ClientInvite, ServerRequest, UserAgent
from ippbx.sip.uri import uri_host
from ippbx.sip.wire import Peer

log = logging.getLogger(__name__)

Side = Literal["a", "b"]
_Placed = TypeVar("_Placed")  # what dialling a target gives once it answers
FAILOVER_STATUSES = frozenset({408, 500, 502, 503, 504})
# the headers of an UPDATE or INFO that go across with its body
RELAYED_HEADERS = ("Content-Type", "Content-Disposition", "Info-Package")
CANCEL_GRACE = 2.0  # seconds to wait for the 487 to our CANCEL before answering the caller
# a stop waits for the answers to the BYEs of the calls it ends while they come: until
# STOP_GRACE seconds pass without one, STOP_LIMIT (a BYE transaction's own 64*T1) at most
STOP_GRACE = 4.0  # (T2: the longest gap between two sends of one BYE)
STOP_LIMIT = 32.0
# a stop hangs up STOP_BATCH calls at a time, then waits (STOP_PAUSE s at most) until
# no more than STOP_IN_FLIGHT BYEs are unanswered: their answers are read before the
# socket's receive buffer overflows (a peer that lost our call answers only once)
STOP_BATCH = 100
STOP_IN_FLIGHT = 400
STOP_PAUSE = 1.0
# an inbound call an application refused (inbound/refuse): 603 Decline, the answer of an
# explicit no that the caller should not try elsewhere (RFC 3261 §21.6.2), as for an
# inbound route that says hang up
REFUSED_STATUS = 603


OFFER_WAIT = 32.0  # seconds an offer of ours waits for the dialog to be free (64*T1)


async def _while_answered(waits: list[asyncio.Future[Any]], quiet: float, limit: float,
                          tick: float = 0.1) -> None:
    """Wait for `waits` (tasks and futures) while they keep finishing: until `quiet` s pass
    with none done, or `limit` s in all. Ten thousand calls hung up at once put twenty
    thousand BYEs on the wire, and the loop lags seconds behind while it sends them and
    reads their answers: a tick that comes late counts as `2 * tick` of quiet at most,
    so only a loop that is free and hears nothing gives up."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    pending = [wait for wait in waits if not wait.done()]
    silent = 0.0
    while pending and loop.time() < end:
        before = loop.time()
        await asyncio.sleep(tick)
        still = [wait for wait in pending if not wait.done()]
        if len(still) < len(pending):
            silent = 0.0
        else:
            silent += min(loop.time() - before, 2 * tick)
            if silent >= quiet:
                return
        pending = still


async def offer_turn(bridge: Bridge, side: Side, wait: float = OFFER_WAIT) -> bool:
    """Mark an offer of ours out in `side`'s dialog, once the one in progress there (a
    relayed re-INVITE, a refresh, the peer's own) is over: RFC 3261 §14.1 allows no new
    INVITE in a dialog while one is in progress in either direction. False if the call
    ended, or the dialog stayed busy for `wait` seconds. The caller must feed
    `OUR_ANSWERED` once its offer has its final answer."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + wait
    while bridge.offer(side, OfferStimulus.OUR_OFFER) is not Verdict.ACCEPT:
        if bridge.ended or loop.time() >= give_up:
            return False
        await asyncio.sleep(random.uniform(0.05, 0.25))
    if bridge.ended:
        bridge.offer(side, OfferStimulus.OUR_ANSWERED)
        return False
    return True


@dataclass(eq=False)
class Bridge:
    """The two dialogs of one call and the registry record they feed."""

    call: Call
    # the caller's INVITE until its ACK (then let go: a held call keeps its dialogs, not
    # parsed messages); None for calls ippbx originates
    a: ServerRequest | None
    a_tag: str
    originated: bool = False  # a call ippbx placed (click-to-call): no caller's INVITE
    a_transport: str = "udp"  # the transport the caller's INVITE came over
    a_dialog: Dialog | None = None
    b_invite: ClientInvite | None = None
    b_dialog: Dialog | None = None
    ended: bool = False
    aborted: bool = False  # hang up (an INVITE still out for this call gives up)
    _abort_event: OneShot | None = None  # made only while someone waits for it
    sdp: dict[Side, bytes] = field(default_factory=dict)  # the last SDP each side sent
    content_type: str = "application/sdp"
    dialling: Leg | None = None  # the leg whose INVITE is out (its 180/183 are its ringing)
    # where each dialog's offer/answer stands (sip/session.py `Offer`): our re-INVITE or
    # UPDATE offer out (relayed, a refresh, an API hold), or the peer's being answered;
    # one at a time per dialog (RFC 3261 §14, RFC 3311 §5.2), a crossing one gets 491
    a_offer: Offer = Offer.IDLE
    b_offer: Offer = Offer.IDLE
    a_session: SessionTimer | None = None  # what the caller's INVITE agreed (RFC 4028)
    b_asked: float = 0.0  # the Session-Expires our INVITE to the callee asked for
    # before the answer: the early dialogs of each side (tagged 1xx), where PRACK, UPDATE,
    # INFO and the caller's BYE may already come; let go once the call is up
    early: list[tuple[Side, Dialog]] | None = None
    # the callee's reliable 1xx whose SDP offer waits for the caller's answer (in the
    # caller's PRACK of our reliable copy of it: RFC 3262 offer/answer)
    offer_1xx: tuple[Response, Response] | None = None  # (the callee's, our copy)
    # the 3xx the last callee leg answered, and the targets this call (or transfer) has
    # dialled: the first and each redirect's (pbx/redirects.py); emptied once answered
    redirect: Response | None = None
    targets: tuple[str, ...] = ()
    # with anchored media: keeps the caller's answers in the order the callee's came
    # while their SDP is with the engine (made on demand, let go once answered), and
    # the side hearing music on hold ("" none)
    media_lock: asyncio.Lock | None = None
    # ippbx's own re-INVITEs of this call (API hold, unhold, answer by the PBX) one at a
    # time (pbx/control.py); made on demand
    reinvite_lock: asyncio.Lock | None = None
    moh: str = ""
    # the caller was answered by ippbx itself (an IVR, voicemail: pbx/applications.py):
    # a party connected later is bridged without a new answer to the caller
    answered_by_pbx: bool = False
    digits: asyncio.Queue[str] | None = None  # DTMF for the application answering

    def media_order(self) -> asyncio.Lock:
        if self.media_lock is None:
            self.media_lock = asyncio.Lock()
        return self.media_lock

    def reinvite_order(self) -> asyncio.Lock:
        if self.reinvite_lock is None:
            self.reinvite_lock = asyncio.Lock()
        return self.reinvite_lock

    def dialog(self, side: Side) -> Dialog | None:
        return self.a_dialog if side == "a" else self.b_dialog

    def set_dialog(self, side: Side, dialog: Dialog | None) -> None:
        if side == "a":
            self.a_dialog = dialog
        else:
            self.b_dialog = dialog

    def offer_state(self, side: Side) -> Offer:
        return self.a_offer if side == "a" else self.b_offer

    def offer(self, side: Side, stimulus: OfferStimulus) -> Verdict:
        """Feed `side`'s dialog offer table (sip/session.py); keep its next state."""
        state, verdict = offer_step(self.a_offer if side == "a" else self.b_offer, stimulus)
        if side == "a":
            self.a_offer = state
        else:
            self.b_offer = state
        return verdict

    def relay_offer(self, side: Side) -> Verdict:
        """`side`'s peer sent an offer that we relay to the other side: both dialogs must
        be free (this one to take it, the other to carry ours). The verdict for it; on
        ACCEPT both are marked until `offer_relayed`."""
        other: Side = "b" if side == "a" else "a"
        verdict = self.offer(side, OfferStimulus.PEER_OFFER)
        if verdict is not Verdict.ACCEPT:
            return verdict
        if self.offer(other, OfferStimulus.OUR_OFFER) is not Verdict.ACCEPT:
            self.offer(side, OfferStimulus.PEER_ANSWERED)  # (back: it gets 491)
            return Verdict.GLARE  # the other side is busy with an offer of its own
        return verdict

    def offer_relayed(self, side: Side) -> None:
        """The relayed offer of `side`'s peer is over (answered, or failed)."""
        self.offer("b" if side == "a" else "a", OfferStimulus.OUR_ANSWERED)
        self.offer(side, OfferStimulus.PEER_ANSWERED)

    def peer_dialog(self, side: Side) -> Dialog | None:
        """Where a request of `side`'s peer goes: that side's dialog once confirmed, else
        its latest early dialog."""
        dialog = self.dialog(side)
        if dialog is None and self.early:
            for early_side, early in reversed(self.early):
                if early_side == side:
                    return early
        return dialog

    def leg(self, side: Side) -> Leg | None:
        return self.call.caller if side == "a" else self.call.callee

    def side_of(self, leg_id: str) -> Side | None:
        if self.call.caller.id == leg_id:
            return "a"
        if self.call.callee is not None and self.call.callee.id == leg_id:
            return "b"
        return None

    def abort(self) -> None:
        """Hang up: an INVITE still out for this call gives up."""
        self.aborted = True
        if self._abort_event is not None:
            self._abort_event.set()

    def abort_event(self) -> OneShot:
        """A flag set by `abort()`, for waiting (made on demand: held calls keep none);
        `abort_event().waiter()` is a future to wait on beside others, no task needed."""
        if self._abort_event is None:
            self._abort_event = OneShot()
            if self.aborted:
                self._abort_event.set()
        return self._abort_event

    def stop_waiting(self, waiter: asyncio.Future[Any]) -> None:
        """A waiter of `abort_event()` no longer waits: the flag goes once no one else
        waits on it (an answered call keeps none)."""
        waiter.cancel()  # (a no-op once set)
        flag = self._abort_event
        if flag is not None and not self.aborted and not flag.waited_on:
            self._abort_event = None

    async def pause(self, seconds: float) -> None:
        """`seconds`, or until `abort()`. (Not `wait_for`: on 3.11 it loses a cancellation
        that comes as its wait ends, and a task cancelled while pausing in a hung-up call
        would go on.)"""
        aborted = self.abort_event().waiter()
        try:
            await asyncio.wait({aborted}, timeout=seconds)
        finally:
            self.stop_waiting(aborted)

    @property
    def gave_up(self) -> bool:
        """The caller cancelled or the API hung up before the answer."""
        return self.aborted or (self.a is not None and self.a.was_cancelled)


@dataclass(slots=True)
class Attempt:
    """One INVITE a dial may send: the leg, where to, the caller id it shows."""

    leg: Leg
    uri: str
    dest: Peer
    from_user: str
    trunk: Trunk | None = None


class Applications(Protocol):
    """What answers calls itself (pbx/applications.py): IVRs, voicemail, features."""

    async def run(self, bridge: Bridge, destination: Destination, max_forwards: int,
                  depth: int) -> int | None: ...

    async def answer(self, bridge: Bridge) -> bool:
        """Answer the caller side with the engine's SDP against ippbx's player."""
        ...

    async def go(self, bridge: Bridge, destination: Destination, max_forwards: int,
                 depth: int) -> int | None:
        """Put a caller ippbx answered through to `destination` (ringback meanwhile)."""
        ...


class ExtensionSettings(Protocol):
    """An extension's do-not-disturb and forward-always as they stand (feature codes
    change them at run time)."""

    def dnd(self, number: str) -> bool: ...

    def forward_always(self, number: str) -> str: ...


MAX_DEPTH = 8  # destinations one call may pass through (forwards, failovers, menus)


def dialog_now(sr: ServerRequest) -> Dialog | None:
    """`sr`'s dialog as it is now. (After a check that it was None, mypy holds
    `sr.dialog` to None even past the `respond` that made it, and code compiled from
    that belief checks for None at run time: read it here instead.)"""
    return sr.dialog


def _user_of(uri_text: str) -> str:
    """The user part of a SIP URI ("sip:1001@host" → "1001"), or "" if none."""
    _, _, rest = uri_text.partition(":")
    user, at, _ = rest.partition("@")
    return user.partition(";")[0] if at else ""


class B2BUA:
    """Turns requests from the UA core into bridged calls and registrations."""

    def __init__(
        self,
        config: Config,
        ua: UserAgent,
        registry: CallStore,
        registrar: Registrar,
        trunks: Trunks,
        auth: ExtensionAuth,
    ) -> None:
        self.config = config
        self.ua = ua
        self.registry = registry
        self.registrar = registrar
        self.trunks = trunks
        self.auth = auth
        self.dialplan = Dialplan(config)
        self._extensions = {e.number: e for e in config.extensions}
        self.extensions = self._extensions
        self._dialogs: dict[int, tuple[Bridge, Side, Dialog]] = {}
        self.bridges: dict[str, Bridge] = {}  # live calls by callid
        # REFER from a phone (blind transfer): set by CallControl
        self.on_refer: Callable[[Bridge, Side, ServerRequest], None] | None = None
        # SUBSCRIBE, new or in its dialog (message-waiting: pbx/mwi.py); None: 489
        self.on_subscribe: Callable[[ServerRequest], None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # the answers awaited to our BYEs (each forgets its dialog when it comes), and
        # those a stop gave up on (their dialogs stay in the journal)
        self._byes: set[asyncio.Future[Response]] = set()
        self._byes_given_up: set[asyncio.Future[Response]] = set()
        self._stopping = False
        # the dialogs of answered calls, for the next start to end after a crash
        self.journal: DialogJournal | None = None
        # The call timers, in seconds, from the configuration (a test shortens them
        # below what it allows, here and in `keeper.max_duration`): how long a callee
        # rings, and the session timers (RFC 4028; 0: off) and longest call, per call
        self.no_answer_seconds = float(config.sip.no_answer_seconds)
        self.session_expires = float(config.calls.session_expires)
        self.keeper = SessionKeeper(self, float(config.calls.max_duration))
        # the media engine every SDP goes through (pbx/media_anchor.py); None: SDP passes
        # end to end untouched
        self.media: MediaAnchor | None = None
        self.zone = zone(config.pbx.timezone)  # (recording names are in local time)
        # the routes whose calls are recorded (outbound and inbound names may coincide)
        self._recorded_out = frozenset(r.name for r in config.outbound_routes if r.record)
        self._recorded_in = frozenset(r.name for r in config.inbound_routes if r.record)
        self.groups = {g.number: g for g in config.ring_groups}
        self.apps: Applications | None = None  # IVRs, voicemail (None: 404 for those)
        self.settings: ExtensionSettings | None = None  # run-time DND and forwarding
        # Control Inbound Call: the inbound routes whose calls wait for an application's
        # inbound/accept or inbound/refuse, and the calls waiting (pbx/inbound_control.py)
        self._controlled_in = frozenset(
            r.name for r in config.inbound_routes if r.control_inbound_call)
        self.inbound = InboundControl(registry, config.calls.inbound_control_seconds)

    @property
    def min_se(self) -> float:
        """Our Min-SE: RFC 4028's 90 s, or the session interval where that is less (a
        test's; the configuration allows no less than 90)."""
        return min(MIN_SE, self.session_expires) or MIN_SE

    def reconfigure(self, config: Config) -> None:
        """A new configuration for the next call (calls in progress keep what they
        were set up with): extensions, routes, ring groups and their flags."""
        self.config = config
        self.no_answer_seconds = float(config.sip.no_answer_seconds)
        self.dialplan = Dialplan(config)
        self._extensions = self.extensions = {e.number: e for e in config.extensions}
        self._recorded_out = frozenset(r.name for r in config.outbound_routes if r.record)
        self._recorded_in = frozenset(r.name for r in config.inbound_routes if r.record)
        self.groups = {g.number: g for g in config.ring_groups}
        self._controlled_in = frozenset(
            r.name for r in config.inbound_routes if r.control_inbound_call)

    # -- lifecycle ----------------------------------------------------------------------
    def attach(self) -> None:
        self.ua.on_request = self.on_request

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """A stop hangs up every call first, as an administrator stopping the service
        expects, each as ippbx's hang-up (`hangup_by` "pbx"; its CDR and reports are
        made). The calls being set up end through their tasks' cancellation (CANCEL to
        a ringing callee, 503 to its caller), then the calls that are up get BYE on
        both sides. The stop waits for the BYEs' answers and the 487s to its CANCELs
        while they come (until `grace` s pass without one; STOP_LIMIT at most), so each
        ringing callee gets the ACK of its 487; a BYE still unanswered then keeps its
        journalled dialog, and the next start sends it again
        (`pbx/leftover_dialogs.py`)."""
        self._stopping = True
        live = 0
        for bridge in self.bridges.values():
            if not bridge.ended:
                live += 1
                self.registry.hung_up_by(bridge.call, "pbx")  # (whatever ends it below)
        # first the calls being set up: each task's own clean-up ends its call (a
        # ringing callee CANCELled and its caller answered 503; a click-to-call's
        # answered extension ACKed before its BYE)
        running = list(self._tasks)
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        await self._hang_up_all()  # then the calls that are up
        if live:
            log.warning("stopping: hung up %d call(s)", live)
        # the BYEs' answers, and the 487s to the CANCELs of the calls that were ringing
        pending: list[asyncio.Future[Any]] = [*self._byes, *self._tasks,
                                              *self.ua.unanswered_invites()]
        if pending:
            await _while_answered(pending, grace, STOP_LIMIT)
            self._byes_given_up = {bye for bye in self._byes if not bye.done()}
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(0)  # (the callbacks of the answers that came run now)

    async def _hang_up_all(self, batch: int = STOP_BATCH) -> None:
        """End every call as ippbx's own hang-up (answered: 200, else 503), and BYE the
        dialogs kept up without a call (a transferor waiting for NOTIFYs), `batch`
        calls at a time, paced by the BYEs still unanswered."""
        bridges = [bridge for bridge in self.bridges.values() if not bridge.ended]
        for start in range(0, len(bridges), batch):
            for bridge in bridges[start:start + batch]:
                if not bridge.ended:
                    self.teardown(bridge, 503 if bridge.call.answered is None else 200)
            loop = asyncio.get_running_loop()
            wait_until = loop.time() + STOP_PAUSE
            while len(self._byes) > STOP_IN_FLIGHT and loop.time() < wait_until:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0)
        for bridge, _, _ in list(self._dialogs.values()):
            if not bridge.ended and bridge.call.callid not in self.bridges:
                self.release(bridge)  # (a dialog `detach()` kept)

    @property
    def active_tasks(self) -> int:
        """The call tasks running and the BYEs awaiting their answer."""
        return len(self._tasks) + len(self._byes)

    def spawn(self, coro: Awaitable[None], answering: ServerRequest | None = None) -> None:
        """Run `coro` as a call task; if it fails before answering the request it serves
        (`answering`), that request gets a 500 rather than no answer at all (503 if a
        stop cancelled it)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(partial(self._task_done, answering))

    def _task_done(self, answering: ServerRequest | None, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():  # (a stop): the request it was relaying gets 503
            status = 503
        elif task.exception() is not None:
            log.error("call task failed", exc_info=task.exception())
            status = 500
        else:
            return
        if answering is not None and not answering.final_sent:
            try:
                answering.respond(status)
            except Exception:  # best effort on an error path
                log.debug("could not answer %d to %r", status, answering, exc_info=True)

    # -- dispatch -----------------------------------------------------------------------
    def on_request(self, sr: ServerRequest) -> None:
        method = sr.request.method
        if self._stopping:  # (a BYE crossing ours ends a call the stop ends anyway)
            sr.respond(200 if method == "BYE" and sr.dialog is not None else 503)
            return
        if method == "SUBSCRIBE":
            if self.on_subscribe is not None:
                self.on_subscribe(sr)
            else:
                sr.respond(489)  # Bad Event (RFC 6665 §8.2.2): no event package here
        elif sr.dialog is not None:
            self._in_dialog(sr)
        elif method == "INVITE":
            self._new_call(sr)
        elif method == "REGISTER":
            self._register(sr)
        elif method == "OPTIONS":
            sr.respond(200, headers=capability_headers(bool(self.session_expires)))
        elif method in ("BYE", "INFO", "UPDATE", "REFER", "NOTIFY", "PRACK"):
            sr.respond(481)
        else:  # a method ippbx implements for no one: 501, not 405 (RFC 3261 §8.2.1)
            sr.respond(501, headers=[("Allow", ALLOW)])

    def _register(self, sr: ServerRequest) -> None:
        ext = self.auth.authenticate(sr, proxy=False)
        if ext is None:
            return
        try:
            to_user = _user_of(sr.request.to.uri)
        except SipParseError:
            sr.respond(400)
            return
        if to_user != ext:
            sr.respond(403, "Username does not match To")
            return
        reply = self.registrar.register(sr.request, sr.source, ext)
        sr.respond(reply.status, reply.reason, headers=list(reply.headers))

    # -- new calls ----------------------------------------------------------------------
    def _new_call(self, sr: ServerRequest) -> None:
        """A new INVITE: checked, authenticated and routed at once, and answered at once
        when refused (an INVITE challenged 407 costs no task); a call admitted gets its
        task, which puts it through."""
        req = sr.request
        try:
            dialled = _user_of(req.uri)
            from_user = _user_of(req.from_.uri)
            max_forwards = int(req.get("Max-Forwards") or "70")
        except (SipParseError, ValueError):
            sr.respond(400)
            return
        if max_forwards <= 0:
            sr.respond(483)
            return
        trunk = self.trunks.match_source(sr.source, from_user, from_user in self._extensions)
        if trunk is not None:
            if not self.trunks.has_capacity(trunk):  # all its channels in use (both ways)
                sr.respond(503, "All Channels In Use")
                return
            did = dialled or _user_of(req.to.uri)
            caller = Leg(LegKind.TRUNK, from_user, did, trunk=trunk.name)
            destination = self.dialplan.route_inbound(trunk.name, did, from_user)
        else:
            ext = self.auth.authenticate(sr, proxy=True)
            if ext is None:
                return
            caller = Leg(LegKind.EXTENSION, ext, dialled, extension=ext)
            destination = self.dialplan.route_from_extension(ext, dialled)
        session: SessionTimer | None = None
        if self.session_expires:
            agreed = from_request(req, self.session_expires, self.min_se)
            if isinstance(agreed, TooSmall):  # RFC 4028 §9: ask for at least our Min-SE
                sr.respond(422, headers=agreed.headers)
                return
            session = agreed
        if isinstance(destination, Refused):
            # refused by the dial plan, but a call all the same: it gets its CallFailed
            # report and its FAILED CDR
            self.registry.start_call(caller, dialled).hangup_by = "pbx"
            self.registry.end_leg(caller.id, destination.sip_status)
            sr.respond(destination.sip_status)
            return
        sr.respond(100)
        call = self.registry.start_call(caller, dialled)
        if trunk is not None:
            self.registry.note(call, inbound_route=getattr(destination, "route", ""))
        bridge = self.new_bridge(call, sr)
        bridge.a_session = session
        bridge.sdp["a"] = req.body
        bridge.content_type = req.get("Content-Type") or bridge.content_type
        held = trunk is not None and call.inbound_route in self._controlled_in
        self.spawn(self._put_through(bridge, destination, max_forwards, held))

    async def _put_through(self, bridge: Bridge, destination: Destination, max_forwards: int,
                           held: bool) -> None:
        """The task of a call admitted by `_new_call`: held for an application first if
        its inbound route is controlled, then delivered."""
        try:
            if held and not await self._let_through(bridge):
                return
            status = await self.deliver(bridge, destination, max_forwards - 1)
            if status is not None:  # the call failed before being answered
                self.fail(bridge, status)
        except asyncio.CancelledError:
            self.teardown(bridge, 503)
            raise
        except Exception:
            log.exception("call %s failed", bridge.call.callid)
            self.teardown(bridge, 500)

    async def _let_through(self, bridge: Bridge) -> bool:
        """Hold an inbound call for an application's accept or refuse (Control Inbound
        Call, `pbx/inbound_control.py`), its caller hearing ringing (180) meanwhile.
        False if refused: the caller was answered 603 Decline. True otherwise: accepted
        (by default too), or given up while held (`deliver` then ends it, 487)."""
        a = bridge.a
        if a is None or bridge.gave_up:
            return True
        a.respond(180, headers=[("Allow", ALLOW)], to_tag=bridge.a_tag,
                  contact=self.caller_contact(bridge),
                  reliable=has_tag(a.request, "Require", RELIABLE))
        self._remember_early(bridge, "a", a.dialog)
        aborted, cancelled = bridge.abort_event().waiter(), a.cancelled.waiter()
        try:
            decision = await self.inbound.hold(bridge.call, (aborted, cancelled))
        finally:
            cancelled.cancel()
            bridge.stop_waiting(aborted)
        if decision is Decision.REFUSED:
            self.registry.note(bridge.call, hangup_by="api")
            self._reject(bridge, REFUSED_STATUS)
            return False
        return True

    def new_bridge(self, call: Call, sr: ServerRequest | None) -> Bridge:
        bridge = Bridge(call, sr, self.ua.new_tag(), originated=sr is None,
                        a_transport=sr.source.transport if sr is not None else "udp")
        self.bridges[call.callid] = bridge
        return bridge

    def finish(self, bridge: Bridge) -> None:
        self.forget_early(bridge)
        self.keeper.stop(bridge)
        if self.media is not None:
            self.media.end(bridge.call.callid)
        bridge.ended = True
        bridge.abort()  # an INVITE still out for this call (a transfer) gives up
        self.bridges.pop(bridge.call.callid, None)

    def fail(self, bridge: Bridge, status: int) -> None:
        """The call could not be put through (`status`): answer the caller so, or hang
        up a caller ippbx had answered itself."""
        if bridge.answered_by_pbx:
            self.teardown(bridge, status)
        else:
            self._reject(bridge, status)

    async def deliver(self, bridge: Bridge, destination: Destination, max_forwards: int,
                      depth: int = 0) -> int | None:
        """Put the call through to `destination`: None once a party answered it (or
        ippbx did, for an application), else the failure's SIP status. `depth` counts
        the destinations passed through (forwards, failovers), MAX_DEPTH at most."""
        if depth > MAX_DEPTH:
            log.info("call %s: more than %d destinations in a row; a loop", bridge.call.callid,
                     MAX_DEPTH)
            return LOOP_STATUS
        if bridge.gave_up or bridge.ended:
            return 487
        if isinstance(destination, Refused):
            return destination.sip_status
        if isinstance(destination, ToExtension):
            return await self.call_extension(bridge, destination.number, max_forwards, depth)
        if isinstance(destination, ToTrunks):
            return await self.call_trunks(bridge, destination, max_forwards)
        if isinstance(destination, ToRingGroup):
            return await self.ring_group(bridge, destination.number, max_forwards, depth)
        if self.apps is None or self.media is None:  # (applications need the engine)
            log.info("call %s: %s needs the media engine", bridge.call.callid, destination)
            return 480
        return await self.apps.run(bridge, destination, max_forwards, depth)

    def _presented(self, bridge: Bridge) -> str:
        """The caller id an extension rung for the call is shown."""
        caller = bridge.call.caller
        ext = self._extensions.get(caller.extension or "")
        return ext.callerid if ext and ext.callerid else caller.from_number

    def _extension_attempts(self, bridge: Bridge, number: str,
                            with_mobile: bool = True) -> list[Attempt]:
        """The INVITEs ringing extension `number` takes: one per registered phone, and its
        mobile (through the outbound routes, with its own permissions) when it rings
        with it."""
        presented = self._presented(bridge)
        attempts = [
            Attempt(Leg(LegKind.EXTENSION, presented, number, extension=number),
                    binding.contact, binding.source, presented)
            for binding in self.registrar.contacts(number)
        ]
        ext = self._extensions.get(number)
        if with_mobile and ext is not None and ext.ring_mobile and ext.mobile:
            routed = self.dialplan.route_outbound(number, ext.mobile_prefix + ext.mobile)
            if isinstance(routed, ToTrunks) and (found := self.free_trunk(routed)) is not None:
                trunk, dest, uri = found
                leg = Leg(LegKind.TRUNK, number, routed.number, trunk=trunk.name)
                attempts.append(Attempt(leg, uri, dest, trunk.callerid or presented, trunk))
        return attempts

    def free_trunk(self, plan: ToTrunks) -> tuple[Trunk, Peer, str] | None:
        """The first of `plan`'s trunks with a free channel: it, where its INVITE goes,
        and the Request-URI for `plan`'s number; None if none is free."""
        for name in plan.trunks:
            trunk = self.trunks.get(name)
            if trunk is not None and self.trunks.has_capacity(trunk):
                dest = self.trunks.destination(trunk)
                return trunk, dest, f"sip:{plan.number}@{uri_host(dest.host)}:{dest.port}"
        return None

    async def call_extension(self, bridge: Bridge, number: str, max_forwards: int,
                             depth: int = 0) -> int | None:
        """Ring extension `number` for the call, as its settings say: do-not-disturb,
        forwarding (always, on busy, on no answer), its ring timeout, every phone it has
        registered (and its mobile) at once, voicemail when nobody answers. None once
        answered and bridged, else the failure's SIP status. A 3xx it answers is
        followed (`_follow`)."""
        self._dialling(bridge, ToExtension(number))
        ext = self._extensions.get(number)
        settings = self.settings
        if ext is None:
            return 404
        if settings is not None and (always := settings.forward_always(number)):
            return await self._forward(bridge, number, always, max_forwards, depth)
        if settings is not None and settings.dnd(number):
            status: int | None = 486
        else:
            attempts = self._extension_attempts(bridge, number)
            timeout = float(ext.ring_timeout or self.no_answer_seconds)
            status = await self._ring(bridge, attempts, max_forwards, timeout)
            if len(attempts) == 1:
                status = await self._redirected(bridge, status, max_forwards)
        if status is None or bridge.gave_up or bridge.ended:
            return status
        # nobody took it: the extension's forwarding, else its mailbox
        busy = status in (486, 600)
        forward = ext.forward_busy if busy else ext.forward_noanswer
        if forward:
            return await self._forward(bridge, number, forward, max_forwards, depth)
        if ext.voicemail and status in (480, 486, 600, 603, 408, 404):
            return await self.deliver(bridge, self.dialplan.resolve(f"voicemail:{number}"),
                                      max_forwards, depth + 1)
        return status

    async def _forward(self, bridge: Bridge, number: str, spec: str, max_forwards: int,
                       depth: int) -> int | None:
        """Extension `number` forwards the call to `spec` (a number dialled with its
        permissions)."""
        log.info("call %s: extension %s forwards to %s", bridge.call.callid, number, spec)
        return await self.deliver(bridge, self.dialplan.resolve(spec, acting_ext=number),
                                  max_forwards, depth + 1)

    def _busy(self, number: str) -> bool:
        return bool(self.registry.by_extension(number))

    async def ring_group(self, bridge: Bridge, number: str, max_forwards: int,
                         depth: int = 0) -> int | None:
        """Ring group `number`: its members not in a call, all at once (`ringall`) or in
        turn (`sequential`), for `ring_seconds` in all; then its failover."""
        group = self.groups.get(number)
        if group is None:
            return 404
        loop = asyncio.get_running_loop()
        deadline = loop.time() + group.ring_seconds
        members = [m for m in group.members if not self._busy(m)]
        status: int | None = 480
        if group.strategy == "ringall":
            attempts = [a for m in members
                        for a in self._extension_attempts(bridge, m, with_mobile=False)]
            if attempts:
                status = await self._ring(bridge, attempts, max_forwards, group.ring_seconds)
        else:
            for member in members:
                left = deadline - loop.time()
                attempts = self._extension_attempts(bridge, member, with_mobile=False)
                if left <= 0.5 or bridge.gave_up or bridge.ended:
                    break
                if not attempts:
                    continue
                status = await self._ring(bridge, attempts, max_forwards,
                                          min(float(group.member_seconds), left))
                if status is None:
                    break
        if status is None or bridge.gave_up or bridge.ended:
            return 487 if status is not None else None
        log.info("call %s: ring group %s unanswered (%d); failover to %s",
                 bridge.call.callid, number, status, group.failover)
        return await self.deliver(bridge, self.dialplan.resolve(group.failover),
                                  max_forwards, depth + 1)

    async def _ring(self, bridge: Bridge, attempts: list[Attempt], max_forwards: int,
                    timeout: float) -> int | None:
        """Ring `attempts` for at most `timeout` s: one INVITE as a plain dial (its
        early media and 3xx relayed), several at once as a fork."""
        if not attempts:
            return 480
        if len(attempts) == 1:
            a = attempts[0]
            return await self._dial(bridge, a.leg, a.uri, a.dest, a.from_user,
                                    a.leg.to_number, max_forwards, a.trunk, timeout)
        return await self._fork(bridge, attempts, max_forwards, timeout)

    async def call_trunks(self, bridge: Bridge, plan: ToTrunks, max_forwards: int) -> int | None:
        """Send the call out through `plan`'s trunks, in failover order: None once
        answered and bridged, else the failure's SIP status. A 3xx is followed."""
        self._dialling(bridge, plan)
        self.registry.note(bridge.call, outbound_route=plan.route)
        caller = bridge.call.caller
        ext = self._extensions.get(caller.extension or "")
        status = 503
        for name in plan.trunks:
            trunk = self.trunks.get(name)
            if trunk is None or not self.trunks.has_capacity(trunk):
                continue
            from_number = (ext.callerid if ext and ext.callerid else "") or trunk.callerid \
                or caller.from_number
            dest = self.trunks.destination(trunk)
            host = uri_host(dest.host)
            uri = f"sip:{plan.number}@{host}:{dest.port}"
            # `from` in the API is the calling extension (what an application matches);
            # the caller id presented to the carrier goes only into the SIP From
            leg = Leg(LegKind.TRUNK, caller.extension or from_number, plan.number,
                      trunk=trunk.name)
            result = await self._dial(
                bridge, leg, uri, dest, from_number, plan.number, max_forwards, trunk
            )
            if result is None:
                return None
            status = result
            if result not in FAILOVER_STATUSES or bridge.gave_up:
                return await self._redirected(bridge, result, max_forwards)
        return 503 if status in FAILOVER_STATUSES else status

    # -- redirects (3xx from the callee; pbx/redirects.py) --------------------------------
    @staticmethod
    def _dialling(bridge: Bridge, destination: ToExtension | ToTrunks) -> None:
        """Note `destination` as dialled by this call (a redirect back to it is a loop)."""
        key = target_key(destination)
        if key not in bridge.targets:
            bridge.targets += (key,)

    def _caller_route(self, bridge: Bridge) -> Callable[[str], Destination]:
        """How the dial plan routes a number for the call's caller: an extension's
        outbound permissions, or the inbound routes of the trunk a caller came in on."""
        caller = bridge.call.caller
        if caller.kind is LegKind.TRUNK and not caller.outgoing:
            return partial(self._route_inbound, caller.trunk or "", caller.from_number)
        return partial(self.dialplan.route_from_extension, caller.extension or "")

    def _route_inbound(self, trunk: str, caller: str, number: str) -> Destination:
        return self.dialplan.route_inbound(trunk, number, caller)

    async def _redirected(self, bridge: Bridge, status: int | None,
                          max_forwards: int) -> int | None:
        """The outcome of a call's dial whose result was `status`: if that is the 3xx
        the callee answered, the outcome of following it as the caller's new dial."""
        redirect = bridge.redirect
        if redirect is None or status is None or redirect.status != status:
            if status is None:
                bridge.targets = ()  # answered: nothing more to compare with
            return status

        async def dial(destination: ToExtension | ToTrunks) -> int | None:
            if isinstance(destination, ToExtension):
                if destination.route:  # (a trunk caller: the route that admits it now)
                    self.registry.note(bridge.call, inbound_route=destination.route)
                return await self.call_extension(bridge, destination.number, max_forwards)
            return await self.call_trunks(bridge, destination, max_forwards)

        return await self._follow(bridge, status, redirect, self._caller_route(bridge), dial)

    async def _follow(
        self,
        bridge: Bridge,
        status: int,
        redirect: Response,
        route: Callable[[str], Destination],
        dial: Callable[[ToExtension | ToTrunks], Awaitable[_Placed | int]],
    ) -> _Placed | int:
        """Follow the 3xx `redirect` (whose `status` a dial just returned) when `[calls]
        redirects = "follow"`: each number its Contacts name, highest q first, routed by
        `route` (the dial plan of whoever placed the leg), is dialled with `dial` until
        one answers. Numbers the dial plan refuses and targets already dialled are
        skipped (the caller then gets the refusal's status, 482 for a loop); past
        MAX_REDIRECTS the call fails 482. Otherwise (`relay`), `status` is returned."""
        if self.config.calls.redirects != "follow":
            return status
        bridge.redirect = None
        callid = bridge.call.callid
        failure: int | None = None
        for number in redirect_numbers(redirect):
            if bridge.gave_up:
                return 487
            destination = route(number)
            if not isinstance(destination, ToExtension | ToTrunks | Refused):
                destination = Refused(Refusal.NO_ROUTE)  # (redirects reach parties only)
            if isinstance(destination, Refused):
                log.info("call %s: redirect to %s refused by the dial plan (%s)", callid,
                         number, destination.reason)
                failure = failure or destination.sip_status
                continue
            key = target_key(destination)
            if key in bridge.targets:
                log.info("call %s: redirect to %s, dialled already: a loop", callid, number)
                failure = failure or LOOP_STATUS
                continue
            if len(bridge.targets) > MAX_REDIRECTS:  # (the first target, then redirects)
                log.info("call %s: redirected more than %d times; giving up", callid,
                         MAX_REDIRECTS)
                return LOOP_STATUS
            log.info("call %s: redirected (%d) to %s", callid, status, number)
            bridge.targets += (key,)
            result = await dial(destination)
            if not isinstance(result, int) or bridge.gave_up:
                return result
            failure = result
        return failure if failure is not None else 480

    async def _dial(
        self,
        bridge: Bridge,
        leg: Leg,
        uri: str,
        dest: Peer,
        from_user: str,
        to_user: str,
        max_forwards: int,
        trunk: Trunk | None = None,
        timeout: float | None = None,
    ) -> int | None:
        """Place the callee leg (ringing `timeout` s at most); None once it is answered
        and bridged, else the failure (a 3xx is kept in `bridge.redirect`, for following
        or relaying)."""
        offer = await self.offer_sdp(bridge, bridge.call.caller, leg, bridge.sdp.get("a", b""))
        invite = self.build_invite(
            offer, bridge.content_type, uri, dest, from_user, to_user, max_forwards, trunk,
        )
        if self._caller_left(bridge):  # (while the engine made the offer)
            return 487
        self.registry.add_callee(bridge.call, leg)
        bridge.dialling = leg
        response = await self.send_invite(bridge, invite, dest, trunk, timeout)
        if response.status >= 300:
            if leg.live:
                self.registry.end_leg(leg.id, response.status)
            bridge.redirect = response if is_redirect(response.status) else None
            return response.status
        await self._connect(bridge, leg, response)
        return None

    async def _connect(self, bridge: Bridge, leg: Leg, response: Response) -> None:
        """The callee `leg` answered (`bridge.b_invite` its INVITE): bridge it to the
        caller, as the caller's state asks."""
        if bridge.answered_by_pbx:
            return await self._answered_connected(bridge, leg, response)
        if bridge.originated:
            return await self._answered_originated(bridge, leg, response)
        return await self._answered(bridge, leg, response)

    async def _fork(self, bridge: Bridge, attempts: list[Attempt], max_forwards: int,
                    timeout: float) -> int | None:
        """Ring every attempt at once (a ring group, an extension's several phones):
        the first to answer 2xx is bridged, the others get CANCEL. The caller hears
        ringing (a 180 without early media: which branch's would it be?). None once
        answered, else 487 (given up), 480 (no answer in `timeout` s), 486 (every branch
        busy) or the one branch's failure."""
        call, caller = bridge.call, bridge.call.caller
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        bridge.b_asked = self.session_expires  # (what each INVITE asks: offer_headers)
        ringing: dict[asyncio.Future[Response], tuple[Attempt, ClientInvite]] = {}
        invites: dict[str, Request] = {}  # leg id → its INVITE (for a challenge)

        def send(attempt: Attempt, invite: Request) -> None:
            holder: list[ClientInvite] = []
            ci = self.ua.invite(invite, attempt.dest, on_provisional=partial(
                self._fork_ringing, bridge, attempt.leg, holder))
            holder.append(ci)
            ringing[ci.final_future()] = (attempt, ci)

        for attempt in attempts:
            if bridge.gave_up or bridge.ended:
                break
            offer = await self.offer_sdp(bridge, caller, attempt.leg, bridge.sdp.get("a", b""))
            invite = self.build_invite(offer, bridge.content_type, attempt.uri, attempt.dest,
                                       attempt.from_user, attempt.leg.to_number,
                                       max_forwards, attempt.trunk)
            if self._caller_left(bridge):  # (while the engine made the offer)
                break
            self.registry.add_branch(call, attempt.leg)
            invites[attempt.leg.id] = invite
            send(attempt, invite)
        statuses: list[int] = []
        winner: tuple[Attempt, ClientInvite, Response] | None = None
        aborted = bridge.abort_event().waiter()
        cancelled = (bridge.a.cancelled.waiter()
                     if bridge.a is not None and not bridge.a.final_sent else None)
        try:
            while ringing and winner is None:
                waits: set[asyncio.Future[Any]] = {aborted, *ringing}
                if cancelled is not None:
                    waits.add(cancelled)
                done, _ = await asyncio.wait(waits, timeout=max(0.0, deadline - loop.time()),
                                             return_when=asyncio.FIRST_COMPLETED)
                if not done or aborted in done or (cancelled is not None and cancelled in done):
                    break
                for final in done:
                    attempt, ci = ringing.pop(final)
                    response = final.result()
                    if response.status < 300 and winner is None and ci.dialog is not None:
                        winner = (attempt, ci, response)
                    elif response.status < 300:  # (a second answer at the same moment)
                        self._drop_late_answer(ci, final)
                        self.registry.end_leg(attempt.leg.id, 487)
                    elif response.status in (401, 407) and attempt.trunk is not None \
                            and attempt.trunk.username and attempt.leg.id in invites:
                        # a register trunk's challenge (the mobile's leg): once, answered
                        first = invites.pop(attempt.leg.id)
                        send(attempt, self.auth.answer_challenge(first, response,
                                                                 attempt.trunk))
                    else:
                        statuses.append(response.status)
                        if attempt.leg.live:
                            self.registry.end_leg(attempt.leg.id, response.status)
        finally:
            if cancelled is not None:
                cancelled.cancel()
            bridge.stop_waiting(aborted)
            for final, (attempt, ci) in ringing.items():  # the branches that lost
                ci.cancel()
                final.add_done_callback(partial(self._drop_late_answer, ci))
                if attempt.leg.live:
                    self.registry.end_leg(attempt.leg.id, 487)
        if winner is None:
            if bridge.gave_up:
                return 487
            if ringing or not statuses:
                return 480
            if all(status == 486 for status in statuses):
                return 486
            return statuses[0] if len(statuses) == 1 else 480
        attempt, ci, response = winner
        self.registry.elect(call, attempt.leg)
        bridge.b_invite = ci
        bridge.dialling = attempt.leg
        await self._connect(bridge, attempt.leg, response)
        return None

    def _fork_ringing(self, bridge: Bridge, leg: Leg, holder: list[ClientInvite],
                      response: Response) -> None:
        """A branch's 1xx: PRACK it if reliable, and tell the caller it rings (once)."""
        if response.status == 100 or bridge.ended or bridge.gave_up:
            return
        self.registry.ringing(leg.id)
        if holder and rseq_of(response) is not None:
            holder[0].prack(response)
        a = bridge.a
        if a is None or a.final_sent or a.dialog is not None:  # (told already)
            return
        reliable = has_tag(a.request, "Require", RELIABLE)
        a.respond(180, headers=[("Allow", ALLOW)], to_tag=bridge.a_tag,
                  contact=self.caller_contact(bridge), reliable=reliable)
        self._remember_early(bridge, "a", dialog_now(a))

    async def _answered_connected(self, bridge: Bridge, leg: Leg, response: Response) -> None:
        """The callee answered a caller ippbx had answered itself (an IVR's choice, a
        voicemail's operator): the engine bridges their media; the caller's SDP with the
        engine stays as it was (its side of the engine keeps its ports)."""
        ci = bridge.b_invite
        assert ci is not None and ci.dialog is not None
        ended_before = bridge.ended
        bridge.b_dialog = ci.dialog
        bridge.sdp["b"] = response.body
        self.remember(bridge, "b", ci.dialog)
        self.ua.ack(ci.dialog)
        # answered now (its 2xx is ACKed): a BYE while the engine bridges the media ends
        # an answered call (ANSWER, BYE, an ANSWERED CDR), not one nobody picked up
        if leg.live:
            self.registry.set_status(leg.id, LegStatus.TALKING)
        await self.answer_sdp(bridge, bridge.call.caller, leg, response.body)
        if bridge.ended:
            # ended while with the engine: the callee's dialog was the bridge's then, so
            # whoever ended it (the callee's BYE, the caller's, a teardown) saw to it; a
            # second BYE would go out twice or on a dialog already forgotten
            if ended_before:
                self.bye(ci.dialog)
            if leg.live:
                self.registry.end_leg(leg.id, 487)
            return None
        if self.media is not None:  # the application's player is done with the caller
            self.spawn(self.media.stop_playing(bridge.call.callid, bridge.call.caller.id))
        self.registry.set_status(bridge.call.caller.id, LegStatus.TALKING)
        self._keep(bridge, response, False)
        return None

    async def place_leg(
        self,
        bridge: Bridge,
        destination: ToExtension | ToTrunks,
        offer: bytes,
        presented: str,
        attach: Callable[[Leg], None],
        on_behalf: str = "",
        reroute: Callable[[str], Destination] | None = None,
        offerer: Leg | None = None,
    ) -> tuple[Leg, Dialog, bytes] | int:
        """Call `destination` with `offer` (the SDP of `offerer`) as a new leg of an
        answered call (a transfer target), trunks in failover order; `attach(leg)` enters
        each attempt in the registry. `presented` is the caller id the target is shown,
        `on_behalf` the extension placing the leg (a trunk leg's `from` in the API). A 3xx
        is followed (as `[calls] redirects` says) where `reroute(number)`, the dial plan
        of whoever placed the leg, sends it; without `reroute` it is a failure. The
        answered leg, its dialog and its SDP answer (as the target sent it), or the
        failure's SIP status."""
        bridge.targets = (target_key(destination),)
        placed = await self._place(bridge, destination, offer, presented, attach, on_behalf,
                                   reroute, offerer)
        if not isinstance(placed, int):
            bridge.targets = ()
        return placed

    async def _place(
        self,
        bridge: Bridge,
        destination: ToExtension | ToTrunks,
        offer: bytes,
        presented: str,
        attach: Callable[[Leg], None],
        on_behalf: str,
        reroute: Callable[[str], Destination] | None,
        offerer: Leg | None,
    ) -> tuple[Leg, Dialog, bytes] | int:
        attempts: list[tuple[Leg, str, Peer, str, Trunk | None]] = []
        if isinstance(destination, ToExtension):
            status = 480  # (not registered)
            for binding in self.registrar.contacts(destination.number)[:1]:
                leg = Leg(LegKind.EXTENSION, presented, destination.number,
                          extension=destination.number)
                attempts.append((leg, binding.contact, binding.source, presented, None))
        else:
            status = 503  # (no trunk with a free channel)
            for name in destination.trunks:
                trunk = self.trunks.get(name)
                if trunk is None or not self.trunks.has_capacity(trunk):
                    continue
                dest = self.trunks.destination(trunk)
                host = uri_host(dest.host)
                from_number = trunk.callerid or presented
                leg = Leg(LegKind.TRUNK, on_behalf or from_number, destination.number,
                          trunk=trunk.name)
                attempts.append((leg, f"sip:{destination.number}@{host}:{dest.port}", dest,
                                 from_number, trunk))

        async def dial(target: ToExtension | ToTrunks) -> tuple[Leg, Dialog, bytes] | int:
            return await self._place(bridge, target, offer, presented, attach, on_behalf,
                                     reroute, offerer)

        for leg, uri, dest, from_user, trunk in attempts:
            if bridge.ended:
                return 487
            sdp = await self.offer_sdp(bridge, offerer, leg, offer)
            if bridge.ended:
                return 487
            invite = self.build_invite(
                sdp, bridge.content_type, uri, dest, from_user, leg.to_number, 70, trunk
            )
            attach(leg)
            bridge.dialling = leg
            response = await self.send_invite(bridge, invite, dest, trunk)
            ci = bridge.b_invite
            if response.status < 300 and ci is not None and ci.dialog is not None:
                self.ua.ack(ci.dialog)
                bridge.b_invite = None  # (answered: its request and future are garbage)
                # (the engine learns the answer; the caller of place_leg gets it as sent)
                await self.answer_sdp(bridge, offerer, leg, response.body)
                return leg, ci.dialog, response.body
            if leg.live:
                self.registry.end_leg(leg.id, response.status)
            status = response.status
            if is_redirect(status) and reroute is not None and not bridge.ended:
                return await self._follow(bridge, status, response, reroute, dial)
            if status not in FAILOVER_STATUSES:
                return status
        return 503 if status in FAILOVER_STATUSES else status

    def build_invite(
        self,
        body: bytes,
        content_type: str,
        uri: str,
        dest: Peer,
        from_user: str,
        to_user: str,
        max_forwards: int,
        trunk: Trunk | None,
    ) -> Request:
        local = uri_host(self.ua.transport.local_host)
        port = self.ua.transport.port_for(dest.transport)
        domain = uri_host(trunk.host if trunk is not None else dest.host)
        headers = [
            ("From", f"<sip:{from_user}@{local}:{port}>;tag={self.ua.new_tag()}"),
            ("To", f"<sip:{to_user}@{domain}>"),
            ("Call-ID", self.ua.new_call_id()),
            ("CSeq", "1 INVITE"),
            ("Contact", f"<{self.ua.contact_uri(from_user, dest.transport)}>"),
            ("Max-Forwards", str(max_forwards)),
            ("User-Agent", self.config.sip.user_agent),
            ("Allow", ALLOW),
            supported_header(bool(self.session_expires)),
        ]
        if self.session_expires:
            headers += offer_headers(self.session_expires, self.min_se)
        if body:
            headers.append(("Content-Type", content_type))
        return Request("INVITE", uri, headers, body)

    async def send_invite(
        self, bridge: Bridge, invite: Request, dest: Peer, trunk: Trunk | None,
        timeout: float | None = None,
    ) -> Response:
        """Send the INVITE (answering one digest challenge for register trunks); wait for a
        final answer, the caller's CANCEL (→ 487), or the no-answer timer (→ 480)."""
        bridge.b_asked = self.session_expires
        for attempt in range(2):
            ci = self.ua.invite(
                invite, dest, on_provisional=lambda r: self._relay_ringing(bridge, r)
            )
            bridge.b_invite = ci
            final = ci.final_future()
            aborted = bridge.abort_event().waiter()
            waits: set[asyncio.Future[Any]] = {final, aborted}
            cancelled = None
            if bridge.a is not None and not bridge.a.final_sent:
                cancelled = bridge.a.cancelled.waiter()
                waits.add(cancelled)
            try:
                done, _ = await asyncio.wait(
                    waits,
                    timeout=self._ring_timeout(bridge, timeout),
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                if cancelled is not None:
                    cancelled.cancel()
                bridge.stop_waiting(aborted)
            if final not in done:
                ci.cancel()
                if ci.provisional is None:
                    # Nothing heard from the callee (a dead trunk or phone): no CANCEL may
                    # go out before a provisional (RFC 3261 §9.1) and the INVITE can take
                    # until Timer B (32 s) to end. Don't hold the caller (or the next
                    # trunk) for that: the UA finishes the INVITE (and sends the CANCEL if
                    # a 1xx still comes); a late 2xx is ACKed and hung up.
                    final.add_done_callback(partial(self._drop_late_answer, ci))
                    return Response(487 if bridge.gave_up else 408)
                # the 487 (or a final that crossed the CANCEL) normally comes at once; a
                # callee that ignores the CANCEL does not hold the caller: the UA ends
                # the INVITE 64*T1 later (Timer C), and a late 2xx is ACKed and hung up
                done, _ = await asyncio.wait({final}, timeout=CANCEL_GRACE)
                if final not in done:
                    final.add_done_callback(partial(self._drop_late_answer, ci))
                    return Response(487 if bridge.gave_up else 480)
                response = final.result()
                if response.status < 300 and ci.dialog is not None:
                    self.remember(bridge, "b", ci.dialog)
                    self.ua.ack(ci.dialog)
                    self.bye(ci.dialog)
                return Response(487 if bridge.gave_up else _no_answer(response))
            response = final.result()
            if response.status in (401, 407) and attempt == 0 and trunk is not None \
                    and trunk.username:
                invite = self.auth.answer_challenge(invite, response, trunk)
                continue
            wanted = retry_interval(response, bridge.b_asked, self.min_se)
            if wanted is not None and attempt == 0:  # 422: ask again with its Min-SE
                invite = _retry_with(invite, wanted)
                bridge.b_asked = wanted
                continue
            return response
        return response

    async def call_first_party(self, bridge: Bridge, invite: Request, dest: Peer,
                               trunk: Trunk | None) -> Response | None:
        """INVITE the first party of a call ippbx places itself (click-to-call, a prompt
        call, a listener): once it answers, its 2xx (not ACKed yet), its dialog now the
        call's caller side; None if it did not (its leg ended with the failure, the call
        finished)."""
        leg = bridge.call.caller
        response = await self.send_invite(bridge, invite, dest, trunk)
        if response.status >= 300 or bridge.ended:
            if leg.live:
                self.registry.end_leg(leg.id, response.status)
            self.finish(bridge)
            return None
        ci = bridge.b_invite
        assert ci is not None and ci.dialog is not None
        bridge.b_invite = None
        bridge.a_dialog = ci.dialog
        self.remember(bridge, "a", ci.dialog)
        return response

    def _ring_timeout(self, bridge: Bridge, timeout: float | None = None) -> float:
        seconds = self.no_answer_seconds if timeout is None else timeout
        if bridge.originated and bridge.a_dialog is not None and not bridge.answered_by_pbx:
            # A call ippbx originated holds the first party's 200 un-ACKed until the
            # second answers (RFC 3725 flow I); that party gives up at 64*T1 = 32 s.
            return min(seconds, 25.0)
        return seconds

    def _caller_left(self, bridge: Bridge) -> bool:
        """The caller hung up (or was hung up): no callee leg may be added to its call,
        which may be gone from the registry already."""
        return bridge.gave_up or bridge.ended \
            or self.registry.get(bridge.call.callid) is not bridge.call

    def _drop_late_answer(self, ci: ClientInvite, task: asyncio.Future[Response]) -> None:
        """The final answer of an INVITE we gave up on before it said anything."""
        if task.cancelled() or task.exception() is not None:
            return
        if task.result().status < 300 and ci.dialog is not None:
            self.ua.ack(ci.dialog)
            self.bye(ci.dialog)

    def _relay_ringing(self, bridge: Bridge, response: Response) -> None:
        """The callee's 1xx: PRACK it if reliable, and relay it to a caller still waiting
        (reliably if the caller requires 100rel, or supports it and the callee's was)."""
        if response.status == 100 or bridge.ended or bridge.gave_up:
            return
        if bridge.dialling is not None:
            self.registry.ringing(bridge.dialling.id)
        a, ci = bridge.a, bridge.b_invite
        to_caller = a is not None and not a.final_sent
        reliable = ci is not None and rseq_of(response) is not None
        caller_requires = a is not None and has_tag(a.request, "Require", RELIABLE)
        caller_supports = caller_requires or (
            a is not None and has_tag(a.request, "Supported", RELIABLE))
        offer = False
        if reliable:
            assert ci is not None
            if to_caller:
                # an SDP in the callee's first reliable 1xx to an INVITE without one is an
                # offer (RFC 3262 §5): its answer is the caller's, in the PRACK of our copy
                offer = caller_supports and bool(response.body) \
                    and not bridge.sdp.get("a") and not bridge.sdp.get("b")
                if response.body:
                    bridge.sdp["b"] = response.body
            if not offer:
                ci.prack(response)
        if not to_caller:
            return
        assert a is not None
        if ci is not None and ci.early:
            self._remember_early(bridge, "b", ci.early.get(response.to.tag or ""))
        reliable_out = caller_requires or (reliable and caller_supports)
        if self.media is not None and (response.body or bridge.media_lock is not None):
            # its SDP goes through the engine first; what comes after waits its turn
            self.spawn(self._anchored_ringing(bridge, response, reliable_out, offer))
            return
        self._ringing_to_caller(bridge, response, response.body, reliable_out, offer)

    async def _anchored_ringing(self, bridge: Bridge, response: Response, reliable: bool,
                                offer: bool) -> None:
        async with bridge.media_order():
            caller, callee = bridge.call.caller, bridge.dialling
            body = (await self.offer_sdp(bridge, callee, caller, response.body) if offer
                    else await self.answer_sdp(bridge, caller, callee, response.body))
            a = bridge.a
            if a is None or a.final_sent or bridge.ended or bridge.gave_up:
                return
            self._ringing_to_caller(bridge, response, body, reliable, offer)

    def _ringing_to_caller(self, bridge: Bridge, response: Response, body: bytes,
                           reliable: bool, offer: bool) -> None:
        a = bridge.a
        assert a is not None
        headers = [("Allow", ALLOW)]  # (UPDATE in the early dialog, RFC 3311 §5.1)
        if body and (ct := response.get("Content-Type")):
            headers.append(("Content-Type", ct))
        relayed = a.respond(
            response.status, response.reason, headers=headers, body=body,
            to_tag=bridge.a_tag, contact=self.caller_contact(bridge), reliable=reliable,
        )
        self._remember_early(bridge, "a", a.dialog)
        if offer:
            bridge.offer_1xx = (response, relayed)
            a.on_prack = partial(self._caller_prack, bridge)

    def _caller_prack(self, bridge: Bridge, prack: Request) -> None:
        """The caller PRACKed one of our reliable 1xx: if that one relayed the callee's
        offer, PRACK the callee with the caller's answer."""
        pending, ci = bridge.offer_1xx, bridge.b_invite
        rack = rack_of(prack)
        if pending is None or ci is None or rack is None \
                or str(rack[0]) != (pending[1].get("RSeq") or ""):
            return
        bridge.offer_1xx = None
        headers = []
        if prack.body:
            bridge.sdp["a"] = prack.body
            headers.append(("Content-Type", prack.get("Content-Type") or bridge.content_type))
            if self.media is not None:
                self.spawn(self._anchored_prack(bridge, ci, pending[0], prack.body, headers))
                return
        ci.prack(pending[0], prack.body, headers)

    async def _anchored_prack(self, bridge: Bridge, ci: ClientInvite, provisional: Response,
                              body: bytes, headers: list[tuple[str, str]]) -> None:
        """PRACK the callee with the caller's answer, once through the engine."""
        async with bridge.media_order():
            body = await self.answer_sdp(bridge, bridge.dialling, bridge.call.caller, body)
            if not bridge.ended:
                ci.prack(provisional, body, headers)

    def _remember_early(self, bridge: Bridge, side: Side, dialog: Dialog | None) -> None:
        """An early dialog of this call: in-dialog requests in it find the bridge."""
        if dialog is None or id(dialog) in self._dialogs:
            return
        self._dialogs[id(dialog)] = (bridge, side, dialog)
        if bridge.early is None:
            bridge.early = []
        bridge.early.append((side, dialog))

    def forget_early(self, bridge: Bridge) -> None:
        """The call is up or over: let go of its early dialogs (but the confirmed ones)."""
        if bridge.early:
            for side, dialog in bridge.early:
                if dialog is not bridge.dialog(side):
                    self._dialogs.pop(id(dialog), None)
        bridge.early = None
        bridge.offer_1xx = None

    async def _answered(self, bridge: Bridge, leg: Leg, response: Response) -> None:
        ci = bridge.b_invite
        assert ci is not None and ci.dialog is not None
        callee = ci.dialog
        bridge.b_dialog = callee
        # a delayed offer (an INVITE without SDP): the callee's offer is in its 200, the
        # caller's answer will be in its ACK, and the callee's ACK must carry it
        late = bool(response.body) and not bridge.sdp.get("a")
        if response.body:
            bridge.sdp["b"] = response.body
        self.remember(bridge, "b", callee)
        assert bridge.a is not None
        if not late or bridge.gave_up:
            self.ua.ack(callee)
        body = response.body
        if self.media is not None:
            async with bridge.media_order():  # (after the 1xx still with the engine)
                caller = bridge.call.caller
                body = (await self.offer_sdp(bridge, leg, caller, body) if late
                        else await self.answer_sdp(bridge, caller, leg, body))
        if bridge.gave_up:  # the caller gave up as the callee answered
            self.bye(callee)
            self.registry.end_leg(leg.id, 487)
            self._reject(bridge, 487)
            return None
        headers = [("Allow", ALLOW)]
        if body and (ct := response.get("Content-Type")):
            headers.append(("Content-Type", ct))
        if bridge.a_session is not None:
            headers += answer_headers(bridge.a_session)
        bridge.a.respond(
            200, headers=headers, body=body, to_tag=bridge.a_tag,
            contact=self.caller_contact(bridge),
        )
        bridge.a_dialog = bridge.a.dialog
        if bridge.a_dialog is not None:
            self.remember(bridge, "a", bridge.a_dialog)
        self._keep(bridge, response, allows_update(bridge.a.request))
        self.registry.set_status(leg.id, LegStatus.TALKING)
        self.registry.set_status(bridge.call.caller.id, LegStatus.TALKING)
        ack = await bridge.a.acked()
        bridge.a = None  # (answered and ACKed: its INVITE and ACK are not needed again)
        if late:
            await self._ack_with_answer(bridge, callee, ack, "a")
        if ack is None and not bridge.ended:  # the caller never confirmed: tear down
            self.teardown(bridge, 408)
        return None

    async def _ack_with_answer(
        self, bridge: Bridge, dialog: Dialog, ack: Request | None, side: Side
    ) -> None:
        """ACK a 2xx that carried an offer, with the answer `side` sent in its ACK."""
        if ack is not None and ack.body:
            bridge.sdp[side] = ack.body
            content_type = ack.get("Content-Type") or bridge.content_type
            body = await self.answer_sdp(bridge, bridge.leg(_other(side)), bridge.leg(side),
                                         ack.body)
            self.ua.ack(dialog, body, [("Content-Type", content_type)])
        else:
            self.ua.ack(dialog)

    async def _answered_originated(self, bridge: Bridge, leg: Leg, response: Response) -> None:
        """The second party of a call ippbx originated answered: complete the first
        party's pending 2xx with this answer (RFC 3725 flow I) and bridge them."""
        ci = bridge.b_invite
        assert ci is not None and ci.dialog is not None and bridge.a_dialog is not None
        bridge.b_dialog = ci.dialog
        bridge.sdp["b"] = response.body
        self.remember(bridge, "b", ci.dialog)
        self.ua.ack(ci.dialog)
        if leg.live:  # (as above: answered now, before the engine's round trip)
            self.registry.set_status(leg.id, LegStatus.TALKING)
        headers = [("Content-Type", response.get("Content-Type") or bridge.content_type)]
        body = await self.answer_sdp(bridge, bridge.call.caller, leg, response.body)
        self.ua.ack(bridge.a_dialog, body, headers if body else ())
        if self.session_expires:  # (the first party's 200 came without our offer)
            bridge.a_session = SessionTimer(self.session_expires, we_refresh=True)
        self._keep(bridge, response, False)
        return None

    def _keep(self, bridge: Bridge, response: Response, a_allows_update: bool) -> None:
        """Both legs are up: start their session timers and the longest-call limit, and
        let go of the callee's INVITE (a held call keeps only what it needs)."""
        bridge.b_invite = None
        bridge.media_lock = None
        self.forget_early(bridge)
        b_session = (from_response(response, bridge.b_asked, self.min_se)
                     if self.session_expires else None)
        longest = self._max_duration(bridge.call)
        self.keeper.start(bridge, "a", bridge.a_session, a_allows_update, longest)
        self.keeper.start(bridge, "b", b_session, allows_update(response), longest)
        if self.media is not None and self.records(bridge.call):
            call = bridge.call
            name = recording_name(call.origin.from_number, call.dialled,
                                  call.answered or call.created, call.callid, self.zone)
            if self.media.record(call.callid, name):
                self.registry.note(call, recording=name)

    def _max_duration(self, call: Call) -> float | None:
        """The longest the call may last: the shortest `max_duration` of its extensions
        that set one, else None (`[calls] max_duration`)."""
        limits = [ext.max_duration for leg in call.legs()
                  if (ext := self._extensions.get(leg.extension or "")) is not None
                  and ext.max_duration]
        return float(min(limits)) if limits else None

    def records(self, call: Call) -> bool:
        """Is `call` to be recorded: one of its extensions, its trunks or its route
        says `record = true`."""
        for leg in call.legs():
            ext = self._extensions.get(leg.extension or "")
            if ext is not None and ext.record:
                return True
            trunk = self.trunks.get(leg.trunk) if leg.trunk else None
            if trunk is not None and trunk.record:
                return True
        return call.outbound_route in self._recorded_out \
            or call.inbound_route in self._recorded_in

    def caller_contact(self, bridge: Bridge) -> str:
        """Our Contact towards the caller, for the transport its INVITE came over."""
        user = bridge.call.caller.to_number or "ippbx"
        return f"<{self.ua.contact_uri(user, bridge.a_transport)}>"

    # -- keys for the applications ------------------------------------------------------
    def digit(self, callid: str, leg_id: str, digit: str) -> None:
        """The caller of call `callid` pressed `digit` (rtpengine's DTMF events, SIP
        INFO): an application answering the call gets it."""
        bridge = self.bridges.get(callid)
        if bridge is not None and bridge.digits is not None and not bridge.ended \
                and leg_id == bridge.call.caller.id and bridge.b_dialog is None \
                and not bridge.digits.full():  # (a caller pressing keys by the thousand)
            bridge.digits.put_nowait(digit)

    def _info_digit(self, bridge: Bridge, sr: ServerRequest) -> bool:
        """An INFO with a key (`application/dtmf-relay`, RFC 6086's common use) for an
        application answering the call: queued and answered here."""
        content_type = (sr.request.get("Content-Type") or "").partition(";")[0].strip()
        if content_type.lower() not in ("application/dtmf-relay", "application/dtmf"):
            return False
        digit = dtmf_relay_digit(sr.request.body)
        if digit is None:
            sr.respond(400, "Bad DTMF")
            return True
        sr.respond(200)
        self.registry.dtmf(bridge.call.callid, bridge.call.caller.id, digit)
        self.digit(bridge.call.callid, bridge.call.caller.id, digit)
        return True

    # -- in-dialog requests -------------------------------------------------------------
    def _in_dialog(self, sr: ServerRequest) -> None:
        entry = self._dialogs.get(id(sr.dialog))
        method = sr.request.method
        if entry is None:
            sr.respond(481)
            return
        bridge, side, _ = entry
        confirmed = bridge.dialog(side) is not None
        if method == "BYE":
            sr.respond(200)
            if confirmed:
                self.hangup_side(bridge, side, 200)
            else:  # in the early dialog (RFC 3261 §15): the caller gives up, as by CANCEL
                self.registry.hung_up_by(bridge.call, "caller" if side == "a" else "callee")
                bridge.abort()
        elif method == "INVITE":
            self.spawn(self._relay_reinvite(bridge, side, sr), sr)
        elif method == "UPDATE" and confirmed and not sr.request.body:  # a session refresh
            sr.respond(200, headers=self._session_headers(bridge, side))
            self.keeper.refreshed(bridge, side)
        elif method == "INFO" and bridge.answered_by_pbx and bridge.b_dialog is None \
                and side == "a" and self._info_digit(bridge, sr):
            pass
        elif method in ("UPDATE", "INFO"):
            self.spawn(self._relay_request(bridge, side, sr), sr)
        elif method == "OPTIONS":
            sr.respond(200)
        elif method == "REFER" and self.on_refer is not None:
            self.on_refer(bridge, side, sr)
        else:
            sr.respond(501)

    async def _relay_reinvite(self, bridge: Bridge, side: Side, sr: ServerRequest) -> None:
        other_side: Side = "b" if side == "a" else "a"
        other = bridge.dialog(other_side)
        if other is None or bridge.ended:
            sr.respond(491)
            return
        # glare: ours crossed theirs on this dialog, or the other side is busy with one
        # of its own (491: the sender tries again after a random pause, §14.1); or its
        # previous re-INVITE is still being answered (500 with Retry-After, §14.2)
        verdict = bridge.relay_offer(side)
        if verdict is not Verdict.ACCEPT:
            sr.respond(verdict.value, headers=[("Retry-After", "1")]
                       if verdict is Verdict.RETRY else ())
            return
        headers = []
        if sr.request.body and (ct := sr.request.get("Content-Type")):
            headers.append(("Content-Type", ct))
        leg, other_leg = bridge.leg(side), bridge.leg(other_side)
        try:
            offer = await self.offer_sdp(bridge, leg, other_leg, sr.request.body)
            if bridge.ended or other.state == TERMINATED:  # (over while with the engine)
                sr.respond(481)
                return
            response = await self.ua.request_in_dialog(other, "INVITE", offer, headers)
            answer = response.body
            if answer and response.status < 300:
                answer = (await self.answer_sdp(bridge, leg, other_leg, answer)
                          if sr.request.body
                          else await self.offer_sdp(bridge, other_leg, leg, answer))
        finally:
            bridge.offer_relayed(side)
        answered = response.status < 300
        # without SDP (many phones' unhold), the offer is in the other side's 2xx and the
        # answer comes in this side's ACK: the other side's ACK waits for it
        late = answered and not sr.request.body and bool(response.body)
        if answered:
            if not late:
                self.ua.ack(other)
                self._hold_status(bridge, sr.request.body, side)
            if sr.request.body:
                bridge.sdp[side] = sr.request.body
            if response.body:
                bridge.sdp[other_side] = response.body
            self.keeper.refreshed(bridge, side)  # (a re-INVITE refreshes both sessions)
            self.keeper.refreshed(bridge, other_side)
        out_headers = []
        if answer and (ct := response.get("Content-Type")):  # (dropped: no Content-Type)
            out_headers.append(("Content-Type", ct))
        if answered:
            out_headers += self._session_headers(bridge, side)
        sr.respond(response.status, response.reason, headers=out_headers, body=answer)
        if late:
            ack = await sr.acked()
            await self._ack_with_answer(bridge, other, ack, side)
            if ack is None:
                if not bridge.ended:
                    self.teardown(bridge, 408)
            else:
                self._hold_status(bridge, ack.body, side)

    def _hold_status(self, bridge: Bridge, sdp: bytes, holder: Side) -> None:
        """`holder`'s new SDP (offer or answer) puts the call on hold or takes it off."""
        held = b"a=sendonly" in sdp or b"a=inactive" in sdp
        self.set_held(bridge, _other(holder) if held else None)

    def set_held(self, bridge: Bridge, held: Side | None) -> None:
        """The call is on hold, `held` the party put on hold (None: off hold): the legs'
        status says so, and with anchored media the held party hears music on hold."""
        status = LegStatus.WAIT if held is not None else LegStatus.TALKING
        for leg in bridge.call.legs():
            if leg.live:
                self.registry.set_status(leg.id, status)
        media = self.media
        if media is None or bridge.moh == (held or ""):
            return
        if bridge.moh:
            was: Side = "a" if bridge.moh == "a" else "b"
            self.spawn(self._hold_music(media, bridge, was, False))
        bridge.moh = held or ""
        if held is not None:
            self.spawn(self._hold_music(media, bridge, held, True))

    @staticmethod
    async def _hold_music(media: MediaAnchor, bridge: Bridge, held: Side, on: bool) -> None:
        """Music on hold for the `held` side (on or off), the other side kept from it."""
        leg, holder = bridge.leg(held), bridge.leg(_other(held))
        if leg is not None:
            await media.hold_music(bridge.call.callid, leg.id,
                                   holder.id if holder is not None else None, on)

    async def _relay_request(self, bridge: Bridge, side: Side, sr: ServerRequest) -> None:
        """Relay an UPDATE (RFC 3311: an offer, in an early or a confirmed dialog) or an
        INFO (RFC 6086: DTMF as application/dtmf-relay and the like) to the other side,
        and answer with its answer."""
        request = sr.request
        other_side: Side = "b" if side == "a" else "a"
        other = bridge.peer_dialog(other_side)
        # (or an early dialog the UA has ended while the call goes on a moment: the
        # callee's at its final answer, the caller's at ours, e.g. 504 for a 1xx it
        # never PRACKed): 481, where the relay would fail and leave it unanswered
        if other is None or bridge.ended or other.state == TERMINATED:
            sr.respond(481)
            return
        offer = request.method == "UPDATE" and bool(request.body)
        if offer:  # one offer at a time (RFC 3311 §5.2), as for a re-INVITE
            verdict = bridge.relay_offer(side)
            if verdict is not Verdict.ACCEPT:
                sr.respond(verdict.value, headers=[("Retry-After", "1")]
                           if verdict is Verdict.RETRY else ())
                return
        headers = [(name, value) for name in RELAYED_HEADERS
                   for value in request.get_all(name)]
        leg, other_leg = bridge.leg(side), bridge.leg(other_side)
        if bridge.a_dialog is None:  # (early: the callee is the leg being dialled)
            if side == "b":
                leg = bridge.dialling
            else:
                other_leg = bridge.dialling
        try:
            body = (await self.offer_sdp(bridge, leg, other_leg, request.body) if offer
                    else request.body)
            if bridge.ended or other.state == TERMINATED:  # (over while with the engine)
                sr.respond(481)
                return
            response = await self.ua.request_in_dialog(other, request.method, body, headers)
            answer = response.body
            if offer and answer and response.status < 300:
                answer = await self.answer_sdp(bridge, leg, other_leg, answer)
        finally:
            if offer:
                bridge.offer_relayed(side)
        out_headers = []
        if answer and (ct := response.get("Content-Type")):  # (dropped: no Content-Type)
            out_headers.append(("Content-Type", ct))
        if offer and response.status < 300:
            bridge.sdp[side] = request.body
            if response.body:
                bridge.sdp[other_side] = response.body
            if bridge.a_dialog is not None and bridge.b_dialog is not None:
                self._hold_status(bridge, request.body, side)
                self.keeper.refreshed(bridge, side)
                self.keeper.refreshed(bridge, other_side)
                out_headers += self._session_headers(bridge, side)
        if not sr.final_sent:
            sr.respond(response.status, response.reason, headers=out_headers, body=answer)

    # -- anchored media (pbx/media_anchor.py) ------------------------------------------
    async def offer_sdp(self, bridge: Bridge, offerer: Leg | None, answerer: Leg | None,
                        sdp: bytes) -> bytes:
        """`offerer`'s SDP offer as `answerer` must see it (the engine's, when media is
        anchored; else as it is)."""
        if self.media is None or not sdp or offerer is None:
            return sdp
        if bridge.ended:  # (the engine's call is gone: nothing to say of its media)
            return b""
        return await self.media.offer(bridge.call.callid, offerer.id,
                                      answerer.id if answerer is not None else None, sdp,
                                      bridge.content_type)

    async def answer_sdp(self, bridge: Bridge, offerer: Leg | None, answerer: Leg | None,
                         sdp: bytes) -> bytes:
        """`answerer`'s SDP answer to `offerer`'s offer, as `offerer` must see it."""
        if self.media is None or not sdp or offerer is None or answerer is None:
            return sdp
        if bridge.ended:
            return b""
        return await self.media.answer(bridge.call.callid, offerer.id, answerer.id, sdp,
                                       bridge.content_type)

    def _session_headers(self, bridge: Bridge, side: Side) -> list[tuple[str, str]]:
        """Session-Expires (and Require) for a 2xx to a refresh from `side`, if that side
        does session timers (RFC 4028 §9)."""
        timer = self.keeper.timer(bridge, side)
        return answer_headers(timer) if timer is not None and timer.peer_supports else []

    # -- ending calls -------------------------------------------------------------------
    def remember(self, bridge: Bridge, side: Side, dialog: Dialog | None) -> None:
        if dialog is not None:
            if self.session_expires:  # a new party on a kept call: ippbx refreshes it
                self.keeper.replaced(
                    bridge, side, SessionTimer(self.session_expires, we_refresh=True), False)
            self._dialogs[id(dialog)] = (bridge, side, dialog)
            if self.journal is not None:
                self.journal.saved(dialog)

    def _forget(self, dialog: Dialog | None) -> None:
        if dialog is not None:
            self._dialogs.pop(id(dialog), None)
            self.ua.forget_dialog(dialog)
            if self.journal is not None:
                self.journal.ended(dialog)

    # -- in-dialog requests: what the parts built on the bridges send (never the UA) ----
    async def request(self, dialog: Dialog, method: str, body: bytes = b"",
                      headers: Iterable[tuple[str, str]] = ()) -> Response:
        """Send `method` in `dialog` (a re-INVITE, NOTIFY, UPDATE…): its final response.
        A 2xx to a re-INVITE wants `ack()`."""
        return await self.ua.request_in_dialog(dialog, method, body, headers)

    def ack(self, dialog: Dialog, body: bytes = b"",
            headers: Iterable[tuple[str, str]] = ()) -> None:
        """ACK the 2xx to the dialog's last INVITE; `body` answers an offer that 2xx made."""
        self.ua.ack(dialog, body, headers)

    def ack_declining(self, dialog: Dialog, offer: bytes, content_type: str) -> None:
        """ACK a 2xx whose offer nobody will answer: with that offer's own streams made
        inactive (an offer in a 2xx must be answered in the ACK, RFC 3264 §5), or bare
        when the 2xx made none."""
        if offer:
            self.ua.ack(dialog, with_direction(offer, "inactive"),
                        [("Content-Type", content_type)])
        else:
            self.ua.ack(dialog)

    def bye(self, dialog: Dialog | None) -> None:
        """Hang up `dialog`: its BYE goes now, and its answer (or the BYE's timeout)
        forgets the dialog. No task: a done callback on the answer's future."""
        if dialog is None:
            return
        try:
            answer = self.ua.bye(dialog)
        except Exception:  # (as a task's failure was: logged, and the hang-up goes on)
            log.exception("could not send the BYE of %r", dialog)
            return
        self._byes.add(answer)
        answer.add_done_callback(partial(self._bye_answered, dialog))

    def _bye_answered(self, dialog: Dialog, answer: asyncio.Future[Response]) -> None:
        self._byes.discard(answer)
        if answer not in self._byes_given_up:  # (given up by a stop: the dialog stays in
            self._forget(dialog)  # the journal, and the next start sends its BYE again)

    def detach(self, bridge: Bridge, side: Side) -> Bridge | None:
        """Take `side`'s dialog out of the call but keep it up: a transferor whose REFER
        ippbx carries out gets NOTIFYs on it (RFC 3515). It is filed under a bridge of its
        own that no call backs, so a BYE from that party ends this dialog alone, not the
        call; `release()` ends it from our side. None if `side` has no dialog."""
        dialog = bridge.dialog(side)
        if dialog is None:
            return None
        bridge.set_dialog(side, None)
        gone = Leg(LegKind.EXTENSION, "", "", status=LegStatus.ENDED)
        alone = Bridge(Call(gone, ""), None, "", a_dialog=dialog)
        self._dialogs[id(dialog)] = (alone, "a", dialog)
        return alone

    def release(self, alone: Bridge | None) -> None:
        """BYE a dialog `detach()` kept up, unless its party has ended it already."""
        if alone is None or alone.ended:
            return
        alone.ended = True
        self.bye(alone.a_dialog)

    def hangup_side(self, bridge: Bridge, side: Side, cause: int) -> None:
        """`side` hung up (or failed): release the other side and end the call."""
        if bridge.ended:
            return
        self.registry.hung_up_by(bridge.call, "caller" if side == "a" else "callee")
        self.finish(bridge)
        self._forget(bridge.dialog(side))
        self.bye(bridge.dialog("b" if side == "a" else "a"))
        gone = bridge.leg(side)  # the side that hung up ends first (BYE reports say so)
        for leg in sorted(bridge.call.legs(), key=lambda leg: leg is not gone):
            if leg.live:
                self.registry.end_leg(leg.id, cause)

    def _reject(self, bridge: Bridge, status: int) -> None:
        """The call failed before it was answered: answer the caller, end its leg. A 3xx
        the callee answered (`[calls] redirects = "relay"`) goes with its Contacts, made
        to reach the same numbers through ippbx."""
        if bridge.ended:
            return
        if bridge.a is not None and bridge.a.was_cancelled:
            self.registry.hung_up_by(bridge.call, "caller")
        self.finish(bridge)
        if bridge.a is not None and not bridge.a.final_sent:
            redirect, bridge.redirect = bridge.redirect, None
            if redirect is not None and redirect.status == status:
                transport = bridge.a.source.transport
                contacts = relayed_contacts(
                    redirect, lambda number: self.ua.contact_uri(number, transport))
                bridge.a.respond(status, redirect.reason,
                                 headers=[("Contact", value) for value in contacts],
                                 to_tag=bridge.a_tag)
            else:
                bridge.a.respond(status, to_tag=bridge.a_tag)
        for leg in bridge.call.legs():
            if leg.live:
                self.registry.end_leg(leg.id, status)

    def teardown(self, bridge: Bridge, status: int) -> None:
        """Abort: whatever state the call is in, leave nothing behind."""
        if bridge.ended:
            return
        self.registry.hung_up_by(bridge.call, "pbx")
        if bridge.a_dialog is None:
            if bridge.b_invite is not None and bridge.b_dialog is None:
                bridge.b_invite.cancel()
            self._reject(bridge, status)
            # a callee already up: the caller's side is not (yet) answered, or is away
            # while a transfer's target is dialled to take its place
            self.bye(bridge.b_dialog)
            return
        # Both sides are hung up by us (the caller never ACKed our 200, or we are
        # stopping): neither ended its dialog itself, so, unlike hangup_side(), each gets a BYE
        # (§13.3.1.4). hangup_side(bridge, "a") would forget the caller's dialog first.
        self.finish(bridge)
        self.bye(bridge.a_dialog)
        self.bye(bridge.b_dialog)
        for leg in bridge.call.legs():
            if leg.live:
                self.registry.end_leg(leg.id, status)


def dtmf_relay_digit(body: bytes) -> str | None:
    """The key of an `application/dtmf-relay` body (`Signal=5`) or a bare
    `application/dtmf` one (`5`): 0-9, *, #, A-D; None if there is none."""
    text = body.decode("ascii", "replace").strip()
    for line in text.splitlines() or [""]:
        name, sep, value = line.partition("=")
        if sep and name.strip().lower() == "signal":
            text = value.strip()
            break
    text = text.upper()
    if text == "10":
        return "*"
    if text == "11":
        return "#"
    return text if len(text) == 1 and text in "0123456789*#ABCD" else None


def _other(side: Side) -> Side:
    return "b" if side == "a" else "a"


def _retry_with(invite: Request, interval: float) -> Request:
    """`invite` to send again asking for `interval` seconds (after a 422)."""
    retry = next_attempt(invite)
    retry.set("Session-Expires", f"{int(interval)};refresher=uac")
    retry.set("Min-SE", str(int(interval)))
    return retry


def _no_answer(response: Response) -> int:
    """The callee was cancelled by our no-answer timer: report 480 unless it said more.
    A 2xx that crossed the CANCEL was just hung up: 480 too, never the 2xx itself (the
    caller would be answered and bridged to a leg that is gone)."""
    if response.status < 300:
        return 480
    return response.status if response.status not in (487, 408) else 480
