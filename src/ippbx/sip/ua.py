"""The SIP user agent core: the asyncio glue between the transport and the PBX.

`UserAgent` owns a `TransactionLayer` (sans-IO, RFC 3261 §17), a `DialogStore` (§12) and
one timer (`loop.call_at` at the earliest deadline of the transaction layer and of the
2xx retransmissions). It knows SIP, not PBX policy. What an INVITE's session does when
(its early dialogs, the CANCEL once a provisional came, the 2xx resent until the ACK, the
final answer made up on a timeout) is the table of `sip/session.py`; `ClientInvite` and
`ServerRequest` hold its state and this module runs its actions.

Client side::

    response = await ua.request(req, dest)            # any method; 408 on Timer B/F
    call = ua.invite(req, dest, on_provisional=cb)    # INVITE: a ClientInvite
    final = await call.final(); call.cancel()         # CANCEL per §9.1
    ua.ack(call.dialog)                               # ACK for the 2xx (re-sent on retransmits)
    await ua.request_in_dialog(dialog, "BYE")

The UA completes outgoing requests: a top Via with a fresh branch (only if the request
has no Via yet), Max-Forwards: 70 and User-Agent when absent. The request object is
changed in place. A new request bound for a UDP destination that is larger than
`udp_max_request` bytes (0, the default here: never) goes over TCP to the same host and
port instead (RFC 3261 §18.1.1, `sip/oversize.py`); if that connect fails or takes over
2.5 s it goes over UDP after all, as a new transaction. Its CANCEL and the ACK for its
2xx go the way it went.

Server side: `ua.on_request(server_request)` (a plain function or a coroutine function)
is called once per new request; retransmissions, CANCELs (answered 200 here, the INVITE's
`ServerRequest.cancelled` is set) and ACKs for 2xx (`await server_request.acked()`) are
handled here. Before the handler sees a request, the UA applies the checks of
`sip/checks.py` (RFC 3261 §8.2.2): a message whose Via/From/To/CSeq/Contact do not parse
never reaches the transaction layer (a request gets a stateless 400, an ACK or a response
is dropped: one rate-limited WARNING line each, no traceback); an unsupported
Request-URI scheme gets 416, a REGISTER whose To is not a SIP URI 400, a `Require` we do
not support (`supported`: none by default) 420 with `Unsupported`. A request with a To
tag that matches no dialog is answered 481 (except REGISTER, whose refreshes often keep
the tag); an in-dialog request with an old CSeq 500. A handler that raises, or returns
without answering and then fails, gets a 500 sent for it.

The transport is either a `SipTransport` instance whose owner routes `on_message` to
`ua.receive` (the owner starts and stops it), or a factory `f(on_message) -> transport`
(then the UA starts and stops it).
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from itertools import count
from typing import Any, Protocol

from ippbx.sip.checks import SIP_SCHEMES, check_request, malformed
from ippbx.sip.dialog import CONFIRMED, Dialog, DialogError, DialogStore, Retransmit2xx
from ippbx.sip.errors import SipParseError
from ippbx.sip.headers import NameAddr
from ippbx.sip.message import Outgoing, Request, Response, Sent, SentResponse, make_response
from ippbx.sip.one_shot import OneShot
from ippbx.sip.overload import SHED_METHODS, LoadShedder
from ippbx.sip.oversize import TCP_CONNECT_TIMEOUT, UdpOnly, rewrite_top_via, tcp_instead
from ippbx.sip.ratelog import RateLimitedLog
from ippbx.sip.reliable import ReliableRetransmit, first_rseq, rack_of, rseq_of
from ippbx.sip.session import (
    Action,
    Role,
    State,
    Stimulus,
    step,
    uac_response_stimulus,
    uas_response_stimulus,
)
from ippbx.sip.transaction import (
    CALLING,
    TRYING,
    AckReceived,
    Cancelled,
    Event,
    RequestReceived,
    ResponseReceived,
    Send,
    StrayResponse,
    Terminated,
    Timeout,
    TransactionError,
    TransactionLayer,
    TransportError,
    TxKey,
    make_cancel,
)
from ippbx.sip.uri import SipUri, UriError, uri_host
from ippbx.sip.wire import Peer

__all__ = ["UNREACHABLE", "UserAgent", "ServerRequest", "ClientInvite", "Peer",
           "RequestHandler"]

log = logging.getLogger(__name__)

RequestHandler = Callable[["ServerRequest"], "None | Awaitable[None]"]
ProvisionalHandler = Callable[[Response], "None | Awaitable[None]"]


class Transport(Protocol):
    """What the UA needs of `ippbx.sip.transport.SipTransport`. (It also uses
    `connect(dest, timeout) -> bool` when the transport has it, to send large requests
    over TCP: see `udp_max_request`.)"""

    local_host: str
    local_port: int

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def send(self, message: Outgoing, dest: Peer) -> None: ...

    def response_destination(self, response: Response | SentResponse, source: Peer) -> Peer: ...

    def port_for(self, transport: str) -> int: ...


TransportFactory = Callable[[Callable[[Request | Response, Peer], None]], Transport]


UNREACHABLE = "Service Unavailable (unreachable)"  # the reason of a 503 we make up when
# the transport could not deliver a request (a refused connect, a failed handshake)


def _synthesize(request: Request, status: int, reason: str | None = None) -> Response:
    """A response we make up locally for `request` (timeouts, transport failures)."""
    return make_response(request, status, reason)


class _ClientCall:
    """A client transaction the UA waits on (or, without a future, fires and forgets)."""

    __slots__ = ("ua", "request", "dest", "key", "future", "on_provisional", "fallback")

    def __init__(
        self, ua: UserAgent, request: Request, dest: Peer,
        on_provisional: ProvisionalHandler | None, want_future: bool = True,
    ) -> None:
        self.ua = ua
        self.request = request
        self.dest = dest
        self.key: TxKey | None = None
        self.future: asyncio.Future[Response] | None = (
            ua._loop_now().create_future() if want_future else None
        )
        self.on_provisional = on_provisional
        self.fallback: Peer | None = None  # sent over TCP instead of to this UDP address

    async def final(self) -> Response:
        """The final response (408 on timeout, 503 on transport failure)."""
        assert self.future is not None
        return await asyncio.shield(self.future)

    def final_future(self) -> asyncio.Future[Response]:
        """The future of `final()` itself, to wait on beside other things with
        `asyncio.wait` (which never cancels what it waits on): no task per INVITE. Never
        cancel it."""
        assert self.future is not None
        return self.future

    @property
    def done(self) -> bool:
        return self.future is not None and self.future.done()

    def _provisional(self, response: Response) -> None:
        if self.on_provisional is not None:
            self.ua._call_user(self.on_provisional, response, "on_provisional")

    def _final(self, response: Response) -> None:
        if self.future is not None and not self.future.done():
            self.future.set_result(response)
        # no provisional is delivered after the final answer, and a finished INVITE
        # lingers 32 s for the 2xx's retransmissions (Timer M): its handler, a closure
        # over the caller's whole call, must not linger with it
        self.on_provisional = None


class ClientInvite(_ClientCall):
    """An INVITE we sent: `await final()`, `cancel()`, `.dialog` once a 2xx came."""

    __slots__ = ("dialog", "provisional", "state", "_cancel_requested", "_in_dialog", "early",
                 "_rseqs")

    def __init__(
        self, ua: UserAgent, request: Request, dest: Peer,
        on_provisional: ProvisionalHandler | None, dialog: Dialog | None = None,
    ) -> None:
        super().__init__(ua, request, dest, on_provisional)
        self.dialog: Dialog | None = dialog
        self.provisional: Response | None = None  # the last 1xx received
        self.state = State.CALLING  # its INVITE session (sip/session.py, role UAC)
        self._cancel_requested = False
        self._in_dialog = dialog is not None  # a re-INVITE
        # the early dialogs of tagged 1xx answers (by To tag) until the final answer, and
        # the last RSeq of reliable 1xx in each (RFC 3262 §4)
        self.early: dict[str, Dialog] | None = None
        self._rseqs: dict[str, int] | None = None

    def cancel(self) -> None:
        """CANCEL the INVITE (§9.1): now if a provisional came, else as soon as one does.

        No effect once a final response arrived. If a 2xx still crosses the CANCEL,
        `final()` returns it and the caller must ACK and BYE.
        """
        if self._cancel_requested or self.done:
            return
        self._cancel_requested = True
        self.ua._uac_step(self, Stimulus.TU_CANCEL, None)

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_requested

    def prack(
        self, response: Response, body: bytes = b"", headers: Iterable[tuple[str, str]] = ()
    ) -> bool:
        """Acknowledge a reliable 1xx (RFC 3262 §4) with a PRACK in its early dialog; the
        body is the answer when the 1xx carried an offer. False if `response` is not a
        reliable 1xx to this INVITE."""
        rseq = rseq_of(response)
        dialog = self.early.get(response.to.tag or "") if self.early else None
        if rseq is None or dialog is None:
            return False
        request = dialog.create_request(
            "PRACK", body, [("RAck", f"{rseq} {self.request.cseq[0]} INVITE"), *headers])
        self.ua._start_client(_ClientCall(self.ua, request, self.ua.dialog_destination(dialog),
                                          None, want_future=False))
        return True

    def _send_cancel(self) -> None:
        # (once per INVITE: the session table sends it on the way to CANCELLING)
        # its early dialogs leave the dialog store (nothing more is to be said in them)
        # but stay with the INVITE until its final answer: a 2xx crossing the CANCEL
        # confirms one, and the BYE for it must count on from the PRACKs and UPDATEs
        # sent in it (a fresh dialog's CSeq would be too low: 500, the call left up)
        if self.early:
            for dialog in self.early.values():
                self.ua.dialogs.remove(dialog)
        self.ua._start_client(_ClientCall(self.ua, make_cancel(self.request), self.dest, None,
                                          want_future=False))
        if self.key is not None:  # no 487 within 64*T1: the INVITE ends all the same
            self.ua._cancelling(self.key)


_FORK_HEADERS = ("From", "Call-ID", "CSeq", "Contact")


class _AnsweredInvite(_ClientCall):
    """What the UA keeps of an INVITE we sent once it has its final answer, while its
    transaction lingers (32 s after a 2xx, Timer M; Timer D after a failure): its session
    state, where it went, and of its request the headers a dialog is made of, for a late
    2xx (another fork's, to ACK and BYE; a retransmission is re-ACKed from the dialog).
    Not its answers, its early dialogs, its waiters or its 1xx handler: at hundreds of
    calls a second those were most of what ended calls kept in memory."""

    __slots__ = ("in_dialog", "state")

    def __init__(self, call: ClientInvite) -> None:
        # of the request, what a fork's dialog is made of (`Dialog.from_uac`): not its
        # body, its other headers or their parses
        request = call.request
        headers: list[tuple[str, str]] = []
        for name in _FORK_HEADERS:  # (by `get`: whatever spelling the request used)
            value = request.get(name)
            if value is not None:
                headers.append((name, value))
        super().__init__(call.ua, Request(request.method, request.uri, headers), call.dest,
                         None, want_future=False)
        self.key = call.key
        self.in_dialog = call._in_dialog
        self.state = call.state  # (Confirmed or Terminated: only a late 2xx matters)

    @property
    def done(self) -> bool:
        return True


class ServerRequest:
    """A request for the TU to answer with `respond` (exactly one final response)."""

    __slots__ = (
        "ua", "key", "request", "source", "dialog", "state", "_to_tag", "_final_status",
        "_cancelled", "_cancel_event", "_ack", "_ack_state", "_ack_future", "_ack_key",
        "_rseq", "_unacked", "_queued", "on_prack",
    )

    def __init__(
        self, ua: UserAgent, key: TxKey, request: Request, source: Peer, dialog: Dialog | None
    ) -> None:
        self.ua = ua
        self.key = key
        self.request = request
        self.source = source
        self.dialog = dialog
        self.state = State.INCOMING  # an INVITE's session (sip/session.py, role UAS)
        self._to_tag: str | None = None
        self._final_status = 0
        self._cancelled = False
        self._cancel_event: OneShot | None = None
        self._ack: Request | None = None
        self._ack_state = 0  # 0 waiting, 1 resolved
        self._ack_future: asyncio.Future[Request | None] | None = None
        self._ack_key: tuple[str, str, str, int] | None = None
        # reliable provisional responses (RFC 3262): the last RSeq sent, the 1xx still
        # waiting for its PRACK and those queued behind it (one at a time, §3)
        self._rseq = 0
        self._unacked: ReliableRetransmit | None = None
        self._queued: list[Response] | None = None
        # called with each PRACK that acknowledges one of our reliable 1xx (the UA has
        # answered it 200): a PRACK may carry the answer to an offer in that 1xx
        self.on_prack: Callable[[Request], Any] | None = None

    def __repr__(self) -> str:
        return f"<ServerRequest {self.request.method} {self.request.call_id} from {self.source}>"

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def final_sent(self) -> bool:
        return self._final_status != 0

    @property
    def was_cancelled(self) -> bool:
        """A CANCEL for this INVITE arrived (without making an Event to say so)."""
        return self._cancelled

    @property
    def cancelled(self) -> OneShot:
        """Set when a CANCEL for this INVITE arrived (already answered 200 by the UA);
        `cancelled.waiter()` is a future to wait on beside others. Once the final
        response went out no CANCEL can matter; the flag is let go then (a long call
        keeps no waiter machinery)."""
        if self._cancel_event is None:
            self._cancel_event = OneShot()
            if self._cancelled:
                self._cancel_event.set()
        return self._cancel_event

    @property
    def to_tag(self) -> str:
        """Our To tag for this request (the existing one in a dialog, else a fresh one)."""
        tag = self.request.to.tag or self._to_tag
        if tag is None:
            tag = self._to_tag = self.ua.new_tag()
        return tag

    def respond(
        self,
        status: int,
        reason: str | None = None,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        to_tag: str | None = None,
        contact: str | None = None,
        reliable: bool = False,
    ) -> Response:
        """Send a response. An INVITE 2xx creates the UAS dialog (`.dialog`) and is
        retransmitted until the ACK arrives (`await acked()`). A tagged 1xx to an INVITE
        creates the early dialog (in-dialog requests such as PRACK, UPDATE, INFO or the
        caller's BYE can reach it); `reliable=True` sends it reliably (RFC 3262: with
        `Require: 100rel` and `RSeq`, resent until PRACKed, queued behind an earlier one
        still unacknowledged). Raises TransactionError after a final response."""
        request = self.request
        if to_tag is not None and not request.to.tag:
            self._to_tag = to_tag
        tag = None if status == 100 else self.to_tag
        response = make_response(request, status, reason, to_tag=tag, headers=headers, body=body)
        is_invite = request.method == "INVITE"
        if is_invite and 100 < status < 300:
            if contact is None and not response.has("Contact"):
                contact = f"<{self.ua.contact_uri(None, self.source.transport)}>"
            if contact is not None:
                response.set("Contact", contact if ">" in contact or "<" in contact
                             else f"<{contact}>")
            for rr in request.get_all("Record-Route"):
                response.add("Record-Route", rr)
        if self.ua.user_agent and not response.has("Server"):
            response.add("Server", self.ua.user_agent)
        if is_invite:
            self._step(uas_response_stimulus(status), response, reliable)
            return response
        self.ua._respond(self, response)
        if status >= 200:
            self._final_status = status
        return response

    async def acked(self) -> Request | None:
        """The ACK for our 2xx to this INVITE; None if it never came (64*T1) or there is
        no 2xx (another method, a non-2xx answer, or the UA stopped)."""
        if self._ack_state:
            return self._ack
        if self.request.method != "INVITE":
            return None
        if self._ack_future is None:
            self._ack_future = self.ua._loop_now().create_future()
        return await asyncio.shield(self._ack_future)

    # -- reliable provisional responses (RFC 3262) ---------------------------------------------
    def _send_reliable(self, response: Response) -> None:
        if self._unacked is not None:  # one unacknowledged at a time (§3): queue it
            if self._queued is None:
                self._queued = []
            self._queued.append(response)
            return
        self._rseq = self._rseq + 1 if self._rseq else first_rseq()
        response.set("RSeq", str(self._rseq))
        self.ua._respond(self, response)
        self._unacked = self.ua._start_reliable(self, response)

    def _acknowledged(self, prack: Request) -> bool:
        """A PRACK in our early dialog: does it acknowledge the 1xx we are resending?"""
        unacked = self._unacked
        if unacked is None or rack_of(prack) != (self._rseq, self.request.cseq[0], "INVITE"):
            return False
        unacked.acknowledge()
        self._unacked = None
        if self._queued:
            self._send_reliable(self._queued.pop(0))
        return True

    def _stop_reliable(self) -> None:
        if self._unacked is not None:
            self._unacked.acknowledge()
            self._unacked = None
        self._queued = None

    def _prack_timeout(self) -> None:
        """No PRACK within 64*T1: reject the INVITE (RFC 3262 §3) and let the TU know as
        if the caller had cancelled."""
        self._unacked = None
        self._step(Stimulus.NO_PRACK)

    # -- the INVITE session (sip/session.py) ---------------------------------------------------
    def _step(
        self, stimulus: Stimulus, response: Response | None = None, reliable: bool = False,
        ack: Request | None = None,
    ) -> None:
        """Feed the INVITE session table `stimulus` and run its actions. If an action
        raises (the transaction layer refused the response), the state goes back."""
        before = self.state
        after, actions = step(Role.UAS, before, stimulus)
        self.state = after
        try:
            for action in actions:
                self._run(action, response, reliable, ack)
        except BaseException:
            if self.state is after:
                self.state = before
            raise

    def _run(
        self, action: Action, response: Response | None, reliable: bool, ack: Request | None
    ) -> None:
        ua = self.ua
        if action is Action.SEND_PROVISIONAL:
            assert response is not None
            if (reliable and response.status > 100 and not self.request.to.tag
                    and self.dialog is not None):
                response.add("Require", "100rel")
                self._send_reliable(response)
            else:
                ua._respond(self, response)
        elif action is Action.CREATE_EARLY:
            assert response is not None
            if response.status > 100 and not self.request.to.tag and self.dialog is None:
                ua._early_uas(self, response)  # (not for a re-INVITE: its dialog exists)
        elif action is Action.SEND_FINAL:
            assert response is not None
            ua._respond(self, response)
            self._final_status = response.status
            self._cancel_event = None
            ua._servers.pop(self.key, None)  # (kept for CANCEL, which no longer matters)
        elif action is Action.START_2XX:
            assert response is not None
            ua._start_2xx(self, response)
        elif action is Action.STOP_RELIABLE:
            if self._unacked is not None or self._queued:
                self._stop_reliable()
        elif action is Action.CLOSE_EARLY:
            ua._end_early(self)
        elif action is Action.RESOLVE_ACK:
            self._resolve_ack(ack)
        elif action is Action.RESOLVE_NO_ACK:
            self._resolve_ack(None)
        elif action is Action.MARK_CANCELLED:
            self._set_cancelled()
        elif action is Action.REJECT_504:
            self.respond(504, "Reliable Provisional Response Not Acknowledged")
        elif action is Action.REFUSE:
            raise TransactionError(f"{self!r} was already answered {self._final_status}")
        else:
            raise AssertionError(f"not a UAS action: {action!r}")

    # -- called by the UA -------------------------------------------------------------------
    def _set_cancelled(self) -> None:
        self._cancelled = True
        if self._cancel_event is not None:
            self._cancel_event.set()

    def _resolve_ack(self, ack: Request | None) -> None:
        if self._ack_state:
            return
        self._ack_state = 1
        self._ack = ack
        if self._ack_future is not None and not self._ack_future.done():
            self._ack_future.set_result(ack)

    def _fail(self) -> None:
        """The handler crashed: answer 500 if it had not answered."""
        if not self.final_sent:
            try:
                self.respond(500)
            except Exception:  # best effort on an error path
                log.debug("could not answer 500 to %r", self, exc_info=True)


class UserAgent:
    """Transactions + dialogs + one timer over a transport. See the module docstring."""

    def __init__(
        self,
        transport: Transport | TransportFactory,
        *,
        user_agent: str = "ippbx",
        t1: float = 0.5,
        t2: float = 4.0,
        t4: float = 5.0,
        timer_d: float = 32.0,
        host: str | None = None,
        symmetric: bool = True,
        supported: Iterable[str] = (),
        uri_schemes: Iterable[str] = SIP_SCHEMES,
        shedder: LoadShedder | None = None,
        udp_max_request: int = 0,
    ) -> None:
        if hasattr(transport, "send"):
            self.transport: Transport = transport  # type: ignore[assignment]
            self._owns_transport = False
        else:
            self.transport = transport(self.receive)  # type: ignore[operator]
            self._owns_transport = True
        self.user_agent = user_agent
        self.t1, self.t2 = t1, t2
        self.host = host  # advertised host for Via/Contact (default: transport.local_host)
        self.symmetric = symmetric  # in-dialog requests go where the dialog's peer is
        self.supported = frozenset(tag.lower() for tag in supported)  # Require option tags
        self.uri_schemes = frozenset(scheme.lower() for scheme in uri_schemes)
        self.rejects = RateLimitedLog(log)  # malformed messages: one line each, rate-limited
        self.shedder = shedder  # overload control (sip/overload.py), or None
        self.udp_max_request = udp_max_request  # larger new requests go over TCP (0: never)
        self.udp_only = UdpOnly()  # peers whose TCP connect failed: large requests by UDP
        self._probe_handle: asyncio.TimerHandle | None = None
        self.transactions = TransactionLayer(t1, t2, t4, timer_d=timer_d)
        self.dialogs = DialogStore()
        self.on_request: RequestHandler | None = None
        self._clients: dict[TxKey, _ClientCall] = {}
        self._servers: dict[TxKey, ServerRequest] = {}  # INVITEs, for CANCEL
        # INVITEs we answered with a tagged 1xx and no final answer yet, by early dialog
        self._early_servers: dict[tuple[str, str, str], ServerRequest] = {}
        self._awaiting_ack: dict[tuple[str, str, str, int], Retransmit2xx] = {}
        self._timers: list[tuple[float, int, Retransmit2xx]] = []
        self._seq = count()
        self._tasks: set[asyncio.Future[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._handle_when = 0.0
        self._running = False

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._running = True
        if self._owns_transport:
            await self.transport.start()
        self._schedule()
        if self.shedder is not None:
            now = self._loop.time()
            self._probe_handle = self._loop.call_at(
                now + self.shedder.interval, self._probe, now + self.shedder.interval,
                time.thread_time())

    async def stop(self) -> None:
        """Cancel the timer and every task; unblock waiters (503 / None)."""
        self._running = False
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._probe_handle is not None:
            self._probe_handle.cancel()
            self._probe_handle = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        for call in list(self._clients.values()):
            call._final(_synthesize(call.request, 503, "Shutting Down"))
        for sr in self._servers.values():
            sr._resolve_ack(None)
        self._early_servers.clear()
        for r in self._awaiting_ack.values():
            if isinstance(r.data, ServerRequest):
                r.data._resolve_ack(None)
            r.acknowledge()
        self._awaiting_ack.clear()
        self._timers.clear()
        if self._owns_transport:
            await self.transport.stop()

    @property
    def pending_tasks(self) -> int:
        return len(self._tasks)

    def counts(self) -> dict[str, int]:
        """Live objects, for leak checks: all zero once calls ended and timers ran out."""
        return {
            "transactions": len(self.transactions),
            "dialogs": len(self.dialogs),
            "tasks": len(self._tasks),
            "clients": len(self._clients),
            "servers": len(self._servers),
            "awaiting_ack": len(self._awaiting_ack),
        }

    # -- identifiers and our addresses ------------------------------------------------------
    @staticmethod
    def new_branch() -> str:
        return "z9hG4bK" + secrets.token_hex(8)

    @staticmethod
    def new_tag() -> str:
        return secrets.token_hex(6)

    def new_call_id(self) -> str:
        return f"{secrets.token_hex(10)}@{self.advertised_host}"

    @property
    def advertised_host(self) -> str:
        host = self.host or self.transport.local_host
        return uri_host(host)

    def via(self, transport: str = "udp", branch: str | None = None) -> str:
        """Our Via value for a new request (fresh branch unless given; asks for rport)."""
        return (f"SIP/2.0/{transport.upper()} {self.advertised_host}:"
                f"{self.transport.port_for(transport)};branch={branch or self.new_branch()};"
                "rport")

    def contact_uri(self, user: str | None = None, transport: str = "udp") -> str:
        """A SIP URI reaching this UA over `transport` (no angle brackets): our port for
        it, and `;transport=tcp|tls` unless UDP."""
        userinfo = f"{user}@" if user else ""
        kind = transport.lower()
        param = f";transport={kind}" if kind in ("tcp", "tls") else ""
        return (f"sip:{userinfo}{self.advertised_host}:{self.transport.port_for(kind)}"
                f"{param}")

    # -- client side ------------------------------------------------------------------------
    async def request(
        self, request: Request, dest: Peer, on_provisional: ProvisionalHandler | None = None
    ) -> Response:
        """Send `request` in a client transaction; return its final response."""
        if request.method == "INVITE":
            return await self.invite(request, dest, on_provisional).final()
        if request.method == "ACK":
            raise TransactionError("send ACKs with ua.ack(dialog)")
        return await asyncio.shield(self._send_request(request, dest, on_provisional))

    def _send_request(
        self, request: Request, dest: Peer, on_provisional: ProvisionalHandler | None = None
    ) -> asyncio.Future[Response]:
        """Start a non-INVITE client transaction now: its final response's future."""
        call = _ClientCall(self, request, dest, on_provisional)
        self._start_client(call)
        return call.final_future()

    def invite(
        self, request: Request, dest: Peer, on_provisional: ProvisionalHandler | None = None
    ) -> ClientInvite:
        """Send an INVITE now; the returned ClientInvite tracks it."""
        call = ClientInvite(self, request, dest, on_provisional)
        self._start_client(call)
        return call

    async def request_in_dialog(
        self,
        dialog: Dialog,
        method: str,
        body: bytes = b"",
        headers: Iterable[tuple[str, str]] = (),
    ) -> Response:
        """Send a request inside `dialog` (BYE, re-INVITE, INFO…); return the final response.
        After a 2xx to a re-INVITE, call `ua.ack(dialog)`."""
        request = dialog.create_request(method, body, headers)
        dest = self.dialog_destination(dialog)
        if method == "INVITE":
            call = ClientInvite(self, request, dest, None, dialog)
            self._start_client(call)
            return await call.final()
        response = await self.request(request, dest)
        if 200 <= response.status < 300:
            dialog.receive_response(response)
        return response

    def unanswered_invites(self) -> list[asyncio.Future[Response]]:
        """The final-answer futures of the INVITEs sent that have none yet (a stop waits
        for the 487s to the CANCELs it sent, so that each callee gets its ACK)."""
        return [call.future for call in self._clients.values()
                if type(call) is ClientInvite and call.future is not None
                and not call.future.done()]

    def bye(self, dialog: Dialog) -> asyncio.Future[Response]:
        """Send a BYE in `dialog` now: the future of its final response (408 if none came,
        503 if it could not go out or the UA stopped), to await or to give a done
        callback, with no task. Never cancel it."""
        return self._send_request(dialog.create_request("BYE"), self.dialog_destination(dialog))

    def ack(
        self, dialog: Dialog, body: bytes = b"", headers: Iterable[tuple[str, str]] = ()
    ) -> Request:
        """Send the ACK for the 2xx to the dialog's last INVITE (no transaction, §13.2.2.4).
        The UA re-sends it when that 2xx is retransmitted."""
        ack = dialog.create_ack(body, headers)
        dest = self.dialog_destination(dialog)
        self._complete(ack, dest)
        sent = dialog.last_ack = Sent(ack.to_bytes(), ack.cseq[0])
        self._transmit(sent, dest)
        return ack

    def forget_dialog(self, dialog: Dialog) -> None:
        self.dialogs.remove(dialog)
        dialog.terminate()

    def dialog_destination(self, dialog: Dialog) -> Peer:
        """Where requests of `dialog` go: the first route, else (symmetric) the peer the
        dialog was set up with, else the remote target."""
        if dialog.route_set:
            try:
                return _uri_peer(NameAddr.parse(dialog.route_set[0]).uri)
            except (SipParseError, UriError):
                log.debug("bad route %r in %r", dialog.route_set[0], dialog)
        if self.symmetric and isinstance(dialog.peer, Peer):
            return dialog.peer
        return _uri_peer(dialog.remote_target)

    # -- receiving --------------------------------------------------------------------------
    def receive(self, message: Request | Response, source: Peer) -> None:
        """Feed one parsed message from the transport. Never raises."""
        if (self.shedder is not None and type(message) is Request
                and message.method in SHED_METHODS and not self._admit(message, source)):
            return  # (first: refusing must cost less than the header checks below)
        problem = malformed(message)
        if problem is not None:
            self._reject_malformed(message, source, problem)
            return
        try:
            events = self.transactions.receive(
                message, source, source.transport != "udp", self._now()
            )
            self._process(events)
        except Exception:
            log.exception("error handling %r from %s", message, source)
        self._schedule()

    def _admit(self, request: Request, source: Peer) -> bool:
        """Overload control (sip/overload.py): take this INVITE/REGISTER, or answer it a
        stateless 503 now? In-dialog requests, retransmissions of accepted ones and
        requests answering our challenge are always taken."""
        shedder = self.shedder
        assert shedder is not None
        if (request.has("Proxy-Authorization") or request.has("Authorization")
                or ";tag=" in (request.get("To") or "").replace(" ", "").lower()):
            return True
        if not shedder.limited:  # the usual case: count it, nothing more to look up
            return shedder.admit(self._now())
        if self.transactions.has_server(request) or shedder.admit(self._now()):
            return True
        response = make_response(request, 503, to_tag=self.new_tag(),
                                 headers=[("Retry-After", str(shedder.retry_after))])
        try:
            self.transport.send(response, self.transport.response_destination(response, source))
        except Exception:
            log.debug("could not send 503 to %s", source, exc_info=True)
        return False

    def _probe(self, expected: float, cpu: float) -> None:
        """Measure the loop for the overload control, every `shedder.interval` seconds."""
        shedder, loop = self.shedder, self._loop
        if shedder is None or loop is None or not self._running:
            return
        now, cpu_now = loop.time(), time.thread_time()
        span = now - (expected - shedder.interval)
        limited = shedder.limited
        backlog = getattr(self.transport, "backlog", None)
        shedder.sample(now, (cpu_now - cpu) / span if span > 0 else 0.0, now - expected,
                       backlog() if backlog is not None else 0)
        if shedder.limited != limited:
            if shedder.limited:
                self.rejects.warning(
                    "overload", "overloaded (busy %.0f %%, lag %.0f ms, %d KiB waiting): "
                    "admitting %.0f new INVITE/REGISTER per second, the others get 503",
                    shedder.busy * 100, shedder.lag * 1000, shedder.backlog // 1024,
                    shedder.limit or 0.0)
            else:
                self.rejects.warning("overload end", "load back to normal: no admission "
                                     "limit (%d refused so far)", shedder.shed)
        self._probe_handle = loop.call_at(now + shedder.interval, self._probe,
                                          now + shedder.interval, cpu_now)

    def _reject_malformed(self, message: Request | Response, source: Peer, problem: str) -> None:
        """A message whose headers do not parse: drop it, or answer a request 400 without
        a transaction (the headers a transaction needs are what is broken)."""
        if isinstance(message, Response) or message.method == "ACK":
            kind = "response" if isinstance(message, Response) else "ACK"
            self.rejects.warning(f"malformed {kind}", "dropped malformed %s from %s: %s",
                                 kind, source, problem)
            return
        self.rejects.warning("malformed request", "answered malformed %s from %s with 400: %s",
                             message.method[:20], source, problem)
        try:
            response = make_response(message, 400, to_tag=self.new_tag())
            self.transport.send(response, self.transport.response_destination(response, source))
        except Exception:  # best effort on an error path; never a traceback per packet
            log.debug("could not answer 400 to a malformed request from %s", source,
                      exc_info=True)

    # -- internals: client ------------------------------------------------------------------
    def _complete(self, request: Request, dest: Peer) -> None:
        """Add our Via (if none), Max-Forwards and User-Agent (if absent)."""
        present = {name for name, _ in request.headers}  # (one look at the headers)
        if "Via" not in present:
            via = self.via(dest.transport)
            request.headers.insert(0, ("Via", via))
            request.set("Via", via)  # (also drops cached parses)
        if "Max-Forwards" not in present:
            request.add("Max-Forwards", "70")
        if self.user_agent and request.method != "ACK" and "User-Agent" not in present:
            request.add("User-Agent", self.user_agent)

    def _start_client(self, call: _ClientCall) -> None:
        new = self.udp_max_request > 0 and not call.request.has("Via")
        self._complete(call.request, call.dest)
        if new:
            self._switch_to_tcp(call)
        try:
            key, events = self.transactions.send_request(
                call.request, call.dest, self._now(), reliable=call.dest.transport != "udp"
            )
        except TransactionError:
            call._final(_synthesize(call.request, 500, "Duplicate Transaction"))
            raise
        call.key = key
        self._clients[key] = call
        self._process(events)
        self._schedule()

    def _on_response(self, key: TxKey, response: Response) -> None:
        call = self._clients.get(key)
        if call is None:
            return
        status = response.status
        if type(call) is ClientInvite:
            self._uac_step(call, uac_response_stimulus(status), response)
        elif type(call) is _AnsweredInvite:
            if Action.REACK in step(Role.UAC, call.state, uac_response_stimulus(status))[1]:
                self._late_2xx(call, response, call.in_dialog)
        elif status < 200:
            if not call.done:
                call._provisional(response)
        else:
            call._final(response)

    def _uac_step(self, call: ClientInvite, stimulus: Stimulus,
                  response: Response | None) -> None:
        """Feed our INVITE's session table (sip/session.py) and run its actions."""
        state, actions = step(Role.UAC, call.state, stimulus)
        call.state = state
        for action in actions:
            if action is Action.TRACK_EARLY:
                assert response is not None
                if not self._early_uac(call, response):
                    return  # a reliable 1xx seen before: not for the TU (RFC 3262 §4)
            elif action is Action.DELIVER_PROVISIONAL:
                assert response is not None
                call.provisional = response
                call._provisional(response)
            elif action is Action.SEND_CANCEL:
                call._send_cancel()
            elif action is Action.CONFIRM_DIALOG:
                assert response is not None
                self._confirm_uac(call, response)
            elif action is Action.END_EARLY:
                self._end_early_uac(call, call.dialog)
            elif action is Action.DELIVER_FINAL:
                assert response is not None
                call._final(response)
            elif action is Action.FINAL_408:
                call._final(_synthesize(call.request, 408))
            elif action is Action.FINAL_503_UNREACHABLE:
                call._final(_synthesize(call.request, 503, UNREACHABLE))
            elif action is Action.FINAL_503:
                call._final(_synthesize(call.request, 503))
            elif action is Action.REACK:
                assert response is not None
                self._late_2xx(call, response, call._in_dialog)
            else:
                raise AssertionError(f"not a UAC action: {action!r}")
        if (state is State.CONFIRMED or state is State.TERMINATED) and call.key is not None \
                and self._clients.get(call.key) is call:
            self._clients[call.key] = _AnsweredInvite(call)  # (answered: what lingers)

    def _early_uac(self, call: ClientInvite, response: Response) -> bool:
        """A tagged 1xx to our INVITE: its early dialog (§12.1.2), so a PRACK can be
        sent in it and the callee's UPDATE or INFO in it finds it. False for a reliable
        1xx already seen (a retransmission or an older RSeq: not for the TU, §4)."""
        tag = response.to.tag
        if not tag or call._in_dialog:
            return True
        early = call.early
        if early is None:
            early = call.early = {}
        if tag not in early:
            try:
                dialog = Dialog.from_uac(call.request, response, peer=call.dest)
            except (DialogError, SipParseError):
                return True
            early[tag] = dialog
            self.dialogs.add(dialog)
        rseq = rseq_of(response)
        if rseq is not None:
            seen = call._rseqs
            if seen is None:
                seen = call._rseqs = {}
            if rseq <= seen.get(tag, 0):
                return False
            seen[tag] = rseq
        return True

    def _end_early_uac(self, call: ClientInvite, keep: Dialog | None = None) -> None:
        """The INVITE's final answer came: forget its early dialogs (but `keep`)."""
        if call.early:
            for dialog in call.early.values():
                if dialog is not keep:
                    self.dialogs.remove(dialog)
                    dialog.terminate()
        call.early = call._rseqs = None

    def _confirm_uac(self, call: ClientInvite, response: Response) -> None:
        """The 2xx to our INVITE: its dialog is confirmed (§12.1.2)."""
        early = call.early.get(response.to.tag or "") if call.early else None
        if early is not None:  # the early dialog of its 1xx goes on (CSeq, routes)
            early.receive_response(response)
            call.dialog = early
            self.dialogs.add(early)  # (out of the store if we had CANCELled)
        elif call.dialog is None:
            try:
                call.dialog = Dialog.from_uac(call.request, response, peer=call.dest)
            except (DialogError, SipParseError):
                log.warning("2xx without a usable To tag for %r", call.request)
            else:
                self.dialogs.add(call.dialog)
        else:
            call.dialog.receive_response(response)

    def _late_2xx(self, call: _ClientCall, response: Response, in_dialog: bool) -> None:
        """A 2xx after the answer: a retransmission (re-ACK) or another fork's (ACK and
        BYE it, §13.2.2.4)."""
        dialog = self.dialogs.match_response(response)
        if dialog is not None:
            self._reack(dialog, response)
        elif not in_dialog:
            self._drop_fork(call, response)

    def _reack(self, dialog: Dialog, response: Response) -> None:
        ack = dialog.last_ack
        if ack is not None and ack.cseq == response.cseq[0]:
            self._transmit(ack, self.dialog_destination(dialog))

    def _drop_fork(self, call: _ClientCall, response: Response) -> None:
        try:
            fork = Dialog.from_uac(call.request, response, peer=call.dest)
        except (DialogError, SipParseError):
            return
        log.info("ACK+BYE for an extra 2xx (fork %s) of %r", fork.remote_tag, call.request)
        dest = self.dialog_destination(fork)
        ack = fork.create_ack()
        self._complete(ack, dest)
        self._transmit(ack, dest)
        self._spawn(self.request(fork.create_request("BYE"), dest))

    def _on_stray(self, response: Response) -> None:
        if 200 <= response.status < 300 and response.cseq[1] == "INVITE":
            dialog = self.dialogs.match_response(response)
            if dialog is not None:
                self._reack(dialog, response)

    # -- internals: server ------------------------------------------------------------------
    def _on_request(self, key: TxKey, request: Request, source: Peer) -> None:
        dialog = None
        refusal = check_request(request, schemes=self.uri_schemes, supported=self.supported)
        if refusal is not None:
            log.debug("refusing %r from %s with %d: %s", request, source, refusal.status,
                      refusal.why)
            self._respond_raw(key, make_response(request, refusal.status, refusal.reason,
                                                 to_tag=self.new_tag(),
                                                 headers=refusal.headers))
            return
        try:
            if request.to.tag and request.method != "REGISTER":
                dialog = self.dialogs.match_request(request)
                status = 481 if dialog is None else dialog.receive_request(request)
                if status is not None:
                    self._respond_raw(key, make_response(request, status))
                    return
                if request.method == "PRACK":
                    assert dialog is not None
                    self._on_prack(key, request, dialog)
                    return
        except SipParseError as exc:  # a From/To/CSeq the parser let through
            log.debug("bad request %r from %s: %s", request, source, exc)
            self._respond_raw(key, make_response(request, 400, to_tag=self.new_tag()))
            return
        sr = ServerRequest(self, key, request, source, dialog)
        if request.method == "INVITE":
            self._servers[key] = sr
        handler = self.on_request
        if handler is None:
            sr.respond(501)
            return
        try:
            result = handler(sr)
        except Exception:
            log.exception("on_request failed for %r", sr)
            sr._fail()
            return
        if result is not None and inspect.isawaitable(result):  # (None: the usual answer)
            self._spawn(result, sr)

    def _respond(self, sr: ServerRequest, response: Response) -> None:
        self._respond_raw(sr.key, response)

    def _respond_raw(self, key: TxKey, response: Response) -> None:
        events = self.transactions.respond(key, response, self._now())
        self._process(events)
        self._schedule()

    def _start_2xx(self, sr: ServerRequest, response: Response) -> None:
        request = sr.request
        if sr.dialog is None:
            try:
                sr.dialog = Dialog.from_uas(request, response, peer=sr.source)
            except (DialogError, SipParseError):
                log.warning("cannot create a dialog for %r", request)
            else:
                self.dialogs.add(sr.dialog)
        else:
            self._early_servers.pop(sr.dialog.id, None)
            sr.dialog.state = CONFIRMED  # (the early dialog of our 1xx)
        ack_key = (request.call_id, response.to.tag or "", request.from_.tag or "",
                   request.cseq[0])
        old = self._awaiting_ack.pop(ack_key, None)
        if old is not None:  # the TU sent a second 2xx: retransmit the new one
            old.acknowledge()
        dest = self.transport.response_destination(response, sr.source)
        r = Retransmit2xx(response, dest, self._now(), t1=self.t1, t2=self.t2, data=sr)
        sr._ack_key = ack_key
        self._awaiting_ack[ack_key] = r
        assert r.deadline is not None
        heapq.heappush(self._timers, (r.deadline, next(self._seq), r))
        self._schedule()

    def _early_uas(self, sr: ServerRequest, response: Response) -> None:
        """Our first tagged 1xx to an INVITE: the early dialog (§12.1.1), so the caller's
        PRACK, UPDATE, INFO or BYE in it finds it."""
        try:
            dialog = Dialog.from_uas(sr.request, response, peer=sr.source)
        except (DialogError, SipParseError):
            return
        sr.dialog = dialog
        self.dialogs.add(dialog)
        self._early_servers[dialog.id] = sr

    def _end_early(self, sr: ServerRequest) -> None:
        """The INVITE got a final non-2xx answer: its early dialog is over."""
        dialog = sr.dialog
        if dialog is not None and self._early_servers.pop(dialog.id, None) is not None:
            self.dialogs.remove(dialog)
            dialog.terminate()

    def _start_reliable(self, sr: ServerRequest, response: Response) -> ReliableRetransmit:
        dest = self.transport.response_destination(response, sr.source)
        r = ReliableRetransmit(response, dest, self._now(), t1=self.t1, data=sr)
        assert r.deadline is not None
        heapq.heappush(self._timers, (r.deadline, next(self._seq), r))
        self._schedule()
        return r

    def _on_prack(self, key: TxKey, prack: Request, dialog: Dialog) -> None:
        """A PRACK (RFC 3262 §3): 200 if it acknowledges the reliable 1xx we are
        resending (the TU's `on_prack` then sees it), else 481."""
        sr = self._early_servers.get(dialog.id)
        if sr is None or not sr._acknowledged(prack):
            self._respond_raw(key, make_response(prack, 481))
            return
        self._respond_raw(key, make_response(prack, 200))
        if sr.on_prack is not None:
            self._call_user(sr.on_prack, prack, "on_prack")

    def _on_ack(self, ack: Request) -> None:
        key = (ack.call_id, ack.to.tag or "", ack.from_.tag or "", ack.cseq[0])
        r = self._awaiting_ack.pop(key, None)
        if r is None:
            log.debug("ACK matches nothing (retransmission?): %r", ack)
            return
        r.acknowledge()
        if isinstance(r.data, ServerRequest):
            r.data._step(Stimulus.RECV_ACK, ack=ack)

    def _on_cancelled(self, key: TxKey) -> None:
        sr = self._servers.get(key)
        if sr is not None:
            sr._step(Stimulus.RECV_CANCEL)

    # -- internals: events, timers, tasks ---------------------------------------------------
    def _process(self, events: list[Event]) -> None:
        for event in events:
            # `type(event) is` rather than isinstance: one pointer compare per kind, and
            # mypy narrows on it as well.
            try:
                if type(event) is Send:
                    self._on_send(event)
                elif type(event) is ResponseReceived:
                    self._on_response(event.key, event.response)
                elif type(event) is RequestReceived:
                    self._on_request(event.key, event.request, event.source)  # type: ignore[arg-type]
                elif type(event) is AckReceived:
                    self._on_ack(event.request)
                elif type(event) is Terminated:
                    self._on_terminated(event.key)
                elif type(event) is Timeout or type(event) is TransportError:
                    self._on_failure(event.key, type(event) is Timeout)
                elif type(event) is Cancelled:
                    self._on_cancelled(event.key)
                elif type(event) is StrayResponse:
                    self._on_stray(event.response)
            except Exception:
                log.exception("error processing %r", event)
                if type(event) is RequestReceived:  # answer it, or its transaction lingers
                    self._answer_500(event.key, event.request)

    def _answer_500(self, key: TxKey, request: Request) -> None:
        try:
            self._respond_raw(key, make_response(request, 500, to_tag=self.new_tag()))
        except Exception:  # best effort: e.g. the TU answered before failing
            log.debug("could not answer 500 to %r", request, exc_info=True)

    def _on_send(self, event: Send) -> None:
        message = event.message
        dest: Peer = event.dest  # type: ignore[assignment]
        if isinstance(message, SentResponse):
            dest = self.transport.response_destination(message, dest)
        try:
            self.transport.send(message, dest)
        except Exception:
            log.exception("transport failed to send %r to %s", message, dest)
            if event.key is not None:
                self._process(self.transactions.transport_error(event.key, self._now()))

    def unreachable(self, dest: Peer) -> None:
        """The transport could not connect to `dest`: fail the client transactions
        waiting on it now (503, so a caller fails over) rather than at Timer B/F. A
        request we switched from UDP to TCP and that got no answer yet goes over UDP."""
        now = self._now()
        for key, call in list(self._clients.items()):
            if call.dest != dest or call.done:
                continue
            if call.fallback is not None and self.transactions.state(key) in (CALLING, TRYING):
                self._fall_back(key, call)  # (no answer yet: it never got there)
            else:
                self._process(self.transactions.transport_error(key, now))

    def _switch_to_tcp(self, call: _ClientCall) -> None:
        """RFC 3261 §18.1.1: a new request too large for UDP goes to the same host and
        port over TCP (our Via says so), the connection opened with a short timeout. Not
        if the transport has no TCP, nor to a peer that lately refused it."""
        dest = call.dest
        connect = getattr(self.transport, "connect", None)
        if connect is None or dest.transport != "udp" or self.udp_only.has(dest, self._now()):
            return
        tcp = tcp_instead(call.request, dest, self.udp_max_request)
        if tcp is None or not connect(tcp, TCP_CONNECT_TIMEOUT):
            return
        rewrite_top_via(call.request, transport="tcp", port=self.transport.port_for("tcp"))
        call.fallback, call.dest = dest, tcp
        dialog = getattr(call, "dialog", None)  # a re-INVITE: its ACK goes the same way
        if isinstance(dialog, Dialog) and dialog.peer == dest:
            dialog.peer = tcp
        log.debug("%r is too large for UDP: sent over TCP to %s", call.request, tcp)

    def _fall_back(self, key: TxKey, call: _ClientCall) -> None:
        """The TCP connect for a switched request failed: end its transaction quietly
        and send the request over UDP as a new one (a fresh branch), so the caller gets
        an answer rather than 503. The peer gets large requests over UDP for a while."""
        udp, tcp = call.fallback, call.dest
        assert udp is not None
        self._clients.pop(key, None)  # (its TransportError and Terminated reach no call)
        self._process(self.transactions.transport_error(key, self._now()))
        call.fallback, call.dest = None, udp
        dialog = getattr(call, "dialog", None)
        if isinstance(dialog, Dialog) and dialog.peer == tcp:
            dialog.peer = udp
        self.udp_only.add(udp, self._now())
        rewrite_top_via(call.request, transport="udp", port=self.transport.port_for("udp"),
                        branch=self.new_branch())
        log.info("no TCP connection to %s:%d for a large %s: sent over UDP", udp.host,
                 udp.port, call.request.method)
        self._start_client(call)

    def _transmit(self, message: Outgoing, dest: Peer) -> None:
        try:
            self.transport.send(message, dest)
        except Exception:
            log.exception("transport failed to send %r to %s", message, dest)

    def _cancelling(self, key: TxKey) -> None:
        self._process(self.transactions.cancelling(key, self._now()))
        self._schedule()

    def _on_failure(self, key: TxKey, timeout: bool) -> None:
        if key.client:
            call = self._clients.get(key)
            if type(call) is ClientInvite:
                self._uac_step(call, Stimulus.TIMEOUT if timeout else Stimulus.TRANSPORT_ERROR,
                               None)
            elif call is not None and not call.done:
                call._final(_synthesize(call.request, 408) if timeout
                            else _synthesize(call.request, 503, UNREACHABLE))
        else:
            sr = self._servers.get(key)
            if sr is not None:
                sr._step(Stimulus.TX_FAILED)

    def _on_terminated(self, key: TxKey) -> None:
        if key.client:
            call = self._clients.pop(key, None)
            if type(call) is ClientInvite:
                self._uac_step(call, Stimulus.TX_ENDED, None)
            elif call is not None and not call.done:  # e.g. Accepted ended: nothing pending
                call._final(_synthesize(call.request, 503))
        else:
            self._servers.pop(key, None)

    def _loop_now(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def _now(self) -> float:
        return (self._loop or self._loop_now()).time()

    def _schedule(self) -> None:
        if not self._running:
            return
        when = self.transactions.next_deadline()
        timers = self._timers
        while timers and timers[0][2].deadline != timers[0][0]:
            heapq.heappop(timers)  # acknowledged or rescheduled
        if timers and (when is None or timers[0][0] < when):
            when = timers[0][0]
        if when is None:
            return
        if self._handle is not None:
            if self._handle_when <= when:
                return  # the armed callback comes first and re-arms
            self._handle.cancel()
        self._handle_when = when
        self._handle = self._loop_now().call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        now = max(self._now(), self._handle_when)
        self._handle = None
        try:
            self._process(self.transactions.tick(now))
            timers = self._timers
            while timers and timers[0][0] <= now:
                _, _, r = heapq.heappop(timers)
                action = r.on_timer(now)
                if action == "resend":
                    self._transmit(r.response, r.dest)  # type: ignore[arg-type]
                    assert r.deadline is not None
                    heapq.heappush(timers, (r.deadline, next(self._seq), r))
                elif action == "give_up":
                    sr = r.data
                    if isinstance(r, ReliableRetransmit):
                        if isinstance(sr, ServerRequest) and sr._unacked is r:
                            log.info("no PRACK for the reliable 1xx to %r", sr)
                            sr._prack_timeout()
                    elif isinstance(sr, ServerRequest):
                        if sr._ack_key is not None:
                            self._awaiting_ack.pop(sr._ack_key, None)
                        log.info("no ACK for the 2xx to %r", sr)
                        sr._step(Stimulus.NO_ACK)
        except Exception:
            log.exception("error in the SIP timer")
        self._schedule()

    def _spawn(self, awaitable: Awaitable[Any], sr: ServerRequest | None = None) -> None:
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)

        def done(t: asyncio.Future[Any]) -> None:
            self._tasks.discard(t)
            if t.cancelled():
                return
            exc = t.exception()
            if exc is not None:
                log.error("SIP task failed", exc_info=exc)
                if sr is not None:
                    sr._fail()

        task.add_done_callback(done)

    def _call_user(self, callback: Callable[[Any], Any], arg: Any, what: str) -> None:
        try:
            result = callback(arg)
        except Exception:
            log.exception("%s callback failed", what)
            return
        if result is not None and inspect.isawaitable(result):  # (None: the usual answer)
            self._spawn(result)


def _uri_peer(uri_text: str) -> Peer:
    """The transport address of a SIP URI (no DNS SRV: host, port or 5060, transport)."""
    uri = SipUri.parse(uri_text)
    host = uri.param("maddr") or uri.host
    secure = uri.scheme == "sips" or uri.transport == "tls"
    transport = "tls" if secure else "tcp" if uri.transport == "tcp" else "udp"
    return Peer(host, uri.port or (5061 if secure else 5060), transport)
