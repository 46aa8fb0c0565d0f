"""A simulated SIP endpoint: ippbx's own `UserAgent` on a loopback `SipTransport`.

The phones (`phones.py`) and the carrier (`carrier.py`) are both an `Endpoint`: one UA on
its own UDP/TCP port that places calls (`place_call`) and answers them (`answer`), with
a tiny SDP offer/answer and no media. They speak plain SIP to the PBX over loopback,
using only the public UA calls (`invite`, `ack`, `request_in_dialog`, `on_request`,
`ServerRequest.respond`/`acked`/`cancelled`), so the PBX sees them as it would see any
phone or carrier.

Caller side, `place_call`: INVITE (answering one 401/407 digest challenge when given
credentials), wait for the final answer, the caller's patience or the sandbox stopping
(then CANCEL), ACK a 2xx, talk for the planned time unless the other side sends BYE
first, then BYE. Callee side, `answer(sr, plan)`: 180, ring for the planned time (a
CANCEL ends it with 487), then answer 200 with SDP, refuse (e.g. 486) or ring on until
the CANCEL; once answered, talk until the BYE or the planned hold time (then BYE).
In-dialog requests are answered here: BYE 200 (and the call ends), a re-INVITE (hold)
200 with SDP mirroring the offered direction, anything else 200.

`stopping` is set when the sandbox stops: callers hang up (BYE or CANCEL) at once;
callees give the caller's BYE a moment to arrive, then hang up themselves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count

from ippbx.sip.dialog import Dialog, DialogError, DialogId
from ippbx.sip.digest import DigestClient, DigestError
from ippbx.sip.message import Request, Response
from ippbx.sip.transport import SipTransport
from ippbx.sip.ua import ClientInvite, ServerRequest, TransportFactory, UserAgent
from ippbx.sip.wire import Peer

__all__ = [
    "AnswerPlan", "CallOutcome", "Endpoint", "answer_direction", "make_sdp", "wait_first",
]

log = logging.getLogger(__name__)

SDP_HEADERS = [("Content-Type", "application/sdp")]
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS"
BYE_TIMEOUT = 5.0  # seconds to wait for the answer to our BYE
CANCEL_TIMEOUT = 35.0  # a CANCELled INVITE ends by 487, or by Timer B (32 s) at worst
NEVER_ANSWER_LIMIT = 300.0  # a call we let ring "forever" is refused after this long
STOP_GRACE = 1.0  # a callee waits this long for the caller's BYE once stopping

BuildInvite = Callable[[int, tuple[str, str] | None], Request]


def make_sdp(session: int, host: str, port: int, direction: str = "sendrecv") -> bytes:
    """A small valid SDP (RFC 4566) offering PCMU/PCMA; nothing listens on the port."""
    lines = [
        "v=0",
        f"o=- {session} {session} IN IP4 {host}",
        "s=ippbx sandbox",
        f"c=IN IP4 {host}",
        "t=0 0",
        f"m=audio {port} RTP/AVP 0 8 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        f"a={direction}",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


def answer_direction(offer: bytes) -> str:
    """The direction answering `offer` (RFC 3264 §6.1): sendonly ↔ recvonly."""
    for line in offer.splitlines():
        attr = line.strip()
        if attr == b"a=sendonly":
            return "recvonly"
        if attr == b"a=recvonly":
            return "sendonly"
        if attr == b"a=inactive":
            return "inactive"
    return "sendrecv"


@dataclass(frozen=True, slots=True)
class AnswerPlan:
    """What a callee does with one incoming call."""

    ring: float  # seconds before the final answer
    final: int  # 200 answer, a 4xx-6xx refusal, 0 never (ring until CANCEL)
    hold: float | None = None  # hang up after this much talk; None: wait for the BYE
    alert: bool = True  # send 180 Ringing first


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """How a call we placed went."""

    status: int  # the final answer to our INVITE (487 once we CANCELled)
    answered: bool = False
    hung_up_by: str = ""  # answered calls: "caller" (us) or "callee"

    @property
    def category(self) -> str:
        """answered / busy / no answer / abandoned / failed: for the status line."""
        if self.answered:
            return "answered"
        if self.status in (486, 600):
            return "busy"
        if self.status == 487:
            return "abandoned"
        if self.status in (480, 408, 603):
            return "no answer"
        return "failed"


class Endpoint:
    """One UA on a loopback port that calls and answers; see the module docstring."""

    def __init__(
        self, name: str, host: str, port: int, *, user_agent: str,
        transport: TransportFactory | None = None,
    ) -> None:
        """`transport(on_message)` replaces the `SipTransport(host, port)` (tests)."""
        self.name = name
        factory: TransportFactory = transport or (
            lambda on_message: SipTransport(host, port, on_message))
        self.ua = UserAgent(factory, user_agent=user_agent)
        self.ua.on_request = self._on_request
        self.stopping = asyncio.Event()
        self._hangups: dict[DialogId, asyncio.Event] = {}
        self._sessions = count(1)
        self.calls_in_progress = 0  # calls of this endpoint, either side, not over yet

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        self.stopping.clear()
        await self.ua.start()

    async def stop(self) -> None:
        """Stop the UA: its pending handler tasks are cancelled, its socket closed."""
        self.stopping.set()
        await self.ua.stop()

    @property
    def host(self) -> str:
        return self.ua.transport.local_host

    @property
    def port(self) -> int:
        return self.ua.transport.local_port

    def sdp(self, direction: str = "sendrecv") -> bytes:
        session = next(self._sessions)
        media_port = 20000 + (2 * (self.port + session)) % 20000
        return make_sdp(session, self.host, media_port, direction)

    # -- caller side ------------------------------------------------------------------------
    async def place_call(
        self,
        build: BuildInvite,
        dest: Peer,
        *,
        talk: float,
        patience: float | None = None,
        credentials: DigestClient | None = None,
    ) -> CallOutcome:
        """INVITE (built by `build(cseq, authorization)`), talk `talk` s, BYE."""
        self.calls_in_progress += 1
        try:
            return await self._place_call(build, dest, talk, patience, credentials)
        finally:
            self.calls_in_progress -= 1

    async def _place_call(
        self, build: BuildInvite, dest: Peer, talk: float, patience: float | None,
        credentials: DigestClient | None,
    ) -> CallOutcome:
        loop = asyncio.get_running_loop()
        deadline = None if patience is None else loop.time() + patience
        authorization: tuple[str, str] | None = None
        cseq = 1
        while True:
            invite = build(cseq, authorization)
            ci = self.ua.invite(invite, dest)
            response, gave_up = await self._final(ci, deadline)
            status = response.status
            if status in (401, 407) and credentials is not None and authorization is None \
                    and not gave_up:
                header = "Proxy-Authenticate" if status == 407 else "WWW-Authenticate"
                try:
                    value = credentials.answer(response.get(header) or "", "INVITE",
                                               invite.uri, invite.body)
                except DigestError:
                    return CallOutcome(status)
                authorization = ("Proxy-Authorization" if status == 407 else "Authorization",
                                 value)
                cseq += 1
                continue
            break
        if status >= 300 or ci.dialog is None:
            return CallOutcome(status if status >= 300 else 500)
        dialog = ci.dialog
        self.ua.ack(dialog)
        hangup = self._track(dialog)
        try:
            if gave_up:  # a 2xx crossed our CANCEL: end it
                await self._bye(dialog)
                return CallOutcome(487)
            fired = await wait_first((hangup, self.stopping), talk)
            if fired is hangup:
                return CallOutcome(status, True, "callee")
            await self._bye(dialog)
            return CallOutcome(status, True, "caller")
        finally:
            self._untrack(dialog)

    async def _final(self, ci: ClientInvite, deadline: float | None) -> tuple[Response, bool]:
        """The final answer to `ci`, CANCELling it at `deadline` or when stopping.
        Returns (response, whether we gave up)."""
        final = asyncio.ensure_future(ci.final())
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            timeout = None if deadline is None else \
                max(0.0, deadline - asyncio.get_running_loop().time())
            done, _ = await asyncio.wait({final, stop}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if final in done:
                return final.result(), False
            ci.cancel()
            try:
                return await asyncio.wait_for(asyncio.shield(final), CANCEL_TIMEOUT), True
            except TimeoutError:
                return Response(408), True
        finally:
            stop.cancel()
            final.cancel()

    # -- callee side ------------------------------------------------------------------------
    async def answer(self, sr: ServerRequest, plan: AnswerPlan) -> None:
        """Answer an incoming INVITE as `plan` says; return when the call is over."""
        self.calls_in_progress += 1
        try:
            await self._answer(sr, plan)
        finally:
            self.calls_in_progress -= 1

    async def _answer(self, sr: ServerRequest, plan: AnswerPlan) -> None:
        if plan.alert:
            sr.respond(180)
        wait = NEVER_ANSWER_LIMIT if plan.final == 0 else plan.ring
        if await wait_first((sr.cancelled,), wait) is not None:
            if not sr.final_sent:
                sr.respond(487)
            return
        if sr.final_sent:
            return
        if plan.final == 0:
            sr.respond(480)
            return
        if plan.final >= 300:
            sr.respond(plan.final)
            return
        offer = sr.request.body
        body = self.sdp(answer_direction(offer) if offer else "sendrecv")
        sr.respond(200, headers=SDP_HEADERS, body=body)
        dialog = sr.dialog
        if dialog is None:
            return
        hangup = self._track(dialog)
        try:
            ack = await sr.acked()
            if hangup.is_set():
                return
            if ack is None:  # never confirmed: end the session (RFC 3261 §13.3.1.4)
                await self._bye(dialog)
                return
            fired = await wait_first((hangup, self.stopping), plan.hold)
            if fired is self.stopping:  # the caller is hanging up too: let its BYE come
                fired = await wait_first((hangup,), STOP_GRACE)
            if fired is not hangup:
                await self._bye(dialog)
        finally:
            self._untrack(dialog)

    async def incoming(self, sr: ServerRequest) -> None:
        """A new INVITE for this endpoint; subclasses decide (default: 480)."""
        sr.respond(480)

    # -- requests in and in dialogs ---------------------------------------------------------
    async def _on_request(self, sr: ServerRequest) -> None:
        method = sr.method
        if sr.dialog is not None:
            await self._in_dialog(sr, sr.dialog)
        elif method == "INVITE":
            if self.stopping.is_set():
                sr.respond(480)
            else:
                await self.incoming(sr)
        elif method == "OPTIONS":
            sr.respond(200, headers=[("Allow", ALLOW), ("Accept", "application/sdp")])
        elif method in ("BYE", "INFO", "UPDATE", "NOTIFY", "REFER"):
            sr.respond(481)
        else:
            sr.respond(405, headers=[("Allow", ALLOW)])

    async def _in_dialog(self, sr: ServerRequest, dialog: Dialog) -> None:
        method = sr.method
        if method == "BYE":
            sr.respond(200)
            self.ua.forget_dialog(dialog)
            self._hangups.setdefault(dialog.id, asyncio.Event()).set()
        elif method == "INVITE":  # hold / unhold / new media: accept, mirror the direction
            offer = sr.request.body
            body = self.sdp(answer_direction(offer) if offer else "sendrecv")
            sr.respond(200, headers=SDP_HEADERS, body=body)
            await sr.acked()
        else:
            sr.respond(200)

    def _track(self, dialog: Dialog) -> asyncio.Event:
        """The event set when the other side hangs up `dialog` (it may already be)."""
        return self._hangups.setdefault(dialog.id, asyncio.Event())

    def _untrack(self, dialog: Dialog) -> None:
        self._hangups.pop(dialog.id, None)

    async def _bye(self, dialog: Dialog) -> None:
        """Hang up `dialog` (BYE) unless the other side already did; forget it."""
        event = self._hangups.get(dialog.id)
        try:
            if event is None or not event.is_set():
                await asyncio.wait_for(self.ua.request_in_dialog(dialog, "BYE"), BYE_TIMEOUT)
        except (TimeoutError, DialogError):
            log.debug("%s: BYE for %r got no answer", self.name, dialog)
        finally:
            self.ua.forget_dialog(dialog)


async def wait_first(
    events: tuple[asyncio.Event, ...], timeout: float | None
) -> asyncio.Event | None:
    """Wait until one of `events` is set (the first of them in order), or None on timeout."""
    for event in events:
        if event.is_set():
            return event
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
    return next((event for event in events if event.is_set()), None)

