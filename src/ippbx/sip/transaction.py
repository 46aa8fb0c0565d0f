"""SIP transactions (RFC 3261 §17, with RFC 6026's "Accepted" state), sans-IO.

Theory of operation
-------------------
A transaction is a request plus every response to it, and the retransmissions that make
that exchange reliable over UDP. `TransactionLayer` holds all of them. It never touches a
socket or a clock: the caller feeds it what happened and gets back a list of *events*
saying what to do or what the transaction user (TU: the dialog/UA layer) must learn::

    layer = TransactionLayer(t1=0.5, t2=4.0, t4=5.0)
    key, out = layer.send_request(request, dest, now, reliable=False)   # client side
    out = layer.receive(message, source, reliable, now)                 # from the wire
    out = layer.respond(server_key, response, now)                      # TU answers
    out = layer.tick(now)                     # call at (or after) layer.next_deadline()
    out = layer.transport_error(key, now)     # the transport could not send for `key`
    out = layer.cancelling(key, now)          # the TU sent a CANCEL for client INVITE `key`

Events are plain records (`sip/record.py`): `Send` (put this message on the wire to
`dest`: a client's request, or the bytes of a response or an ACK),
`RequestReceived` (a new server transaction: the TU must answer it with `respond`),
`ResponseReceived` (a response for a client transaction: provisional, final, and for an
INVITE every 2xx, retransmissions included, so the TU can re-ACK), `StrayResponse` (a
response matching no transaction), `AckReceived` (an ACK matching no transaction, or
one reaching an INVITE server transaction in "Accepted": the ACK for a 2xx, for the
dialog layer), `Cancelled` (a CANCEL arrived for a pending INVITE; the layer already
answered the CANCEL 200; the TU should answer the INVITE 487), `Timeout` (Timer B/F:
the TU treats it as a 408; Timer H: the ACK for our non-2xx final never came),
`TransportError` and `Terminated` (the transaction is gone; `len(layer)` counts the
live ones).

Each of the four state machines (client/server × INVITE/non-INVITE) is one table below,
copied from the diagrams of RFC 3261 §17 (Figures 5-8) as amended by RFC 6026: a
stimulus in a state maps to the next state and a tuple of actions, run in order.
Stimuli are "1xx", "2xx", "300-699" (responses from the wire), "request" (a
retransmitted request), "ACK", "TU 1xx"/"TU 2xx"/"TU 300-699" (the TU responding), a
timer firing ("timer A"…"timer M"), and "transport error". A TU stimulus missing from
a table is a programming error and raises `TransactionError` naming the state; a
network or timer stimulus missing from a table is dropped (the network is not trusted
to follow the protocol).

No INVITE client transaction lives forever. Timer C (RFC 3261 §16.6.11, > 3 min; reset
by each provisional) ends one that got a provisional and then no final answer, and once
the TU has CANCELled it (`cancelling`) Timer C is cut to 64*T1 and no longer reset: a
callee that ignores the CANCEL cannot keep the call (§9.1: "the client SHOULD then
consider the original transaction cancelled"). Either way the TU gets a `Timeout`.

What a transaction keeps is what it may have to send again, as bytes: a response the TU
gives it is serialized once, sent as a `message.SentResponse` (the bytes, the status, the
top Via and the To text), and that is what a retransmitted request gets; the ACK for a
non-2xx is kept as a `message.Sent`. A finished transaction (up to 32 s in Completed)
holds no parsed message, only those bytes and its key.

Timers live in one heap; each transaction remembers which of its timers are armed, so
stopping one is O(1) and a stale heap entry is skipped when it surfaces. A/E/G
(retransmissions) are armed only on unreliable transports; D, I, J, K are zero on
reliable ones, which terminates the transaction at once. 2xx responses to an INVITE are
retransmitted by the TU (RFC 3261 §13.3.1.4), not here.

Two choices in the INVITE server transaction keep one request from buying more than one
response before the TU knows who sent it (the TU may be about to challenge it):

* The automatic 100 (Trying) goes out only if the TU has not answered within 200 ms
  (timer "100"; §17.2.1 allows exactly that), so a request the TU answers at once (a
  407 challenge, a 481, a 400) gets that one answer and never a 100 after its final.
* Timer G (retransmitting a 300-699 final until the ACK) runs only once a provisional
  went out. Before any provisional the client is still in "Calling" and retransmits its
  INVITE (Timer A) until it hears something; each retransmission gets the final again
  ("request" in "Completed"), so the final still gets through on a lossy path, one
  response per request received, and an address that never sent anything (a spoofed
  source) is not sent a train of ten retransmissions. After a provisional the client
  stops retransmitting, so there Timer G runs as §17.2.1 says.

Matching (§17.1.3, §17.2.3): a response matches the client transaction of its top Via
branch and CSeq method. A request matches the server transaction of its top Via branch,
sent-by and method (ACK matches the INVITE). Requests without a "z9hG4bK" branch (RFC
2543 peers) are matched on Request-URI, Call-ID, From tag, CSeq number, top Via sent-by
and method instead.
"""

from __future__ import annotations

import heapq
import secrets
from collections.abc import Callable
from itertools import count
from typing import Any, NamedTuple

from ippbx.sip.message import Request, Response, Sent, SentResponse, make_response
from ippbx.sip.record import Record

__all__ = [
    "TransactionLayer",
    "TransactionError",
    "TxKey",
    "Event",
    "Send",
    "RequestReceived",
    "ResponseReceived",
    "StrayResponse",
    "AckReceived",
    "Cancelled",
    "Timeout",
    "TransportError",
    "Terminated",
    "make_ack",
    "make_cancel",
    "CLIENT_INVITE",
    "CLIENT_NON_INVITE",
    "SERVER_INVITE",
    "SERVER_NON_INVITE",
]


class TransactionError(Exception):
    """The TU asked for something the transaction's state does not allow."""


class TxKey(NamedTuple):
    """Identifies one transaction. `client` tells which side; `method` is never ACK."""

    client: bool
    branch: str
    sent_by: str
    method: str


# -- events (the public vocabulary) -----------------------------------------------------
# Plain records (`sip/record.py`): a call makes about a dozen of these. Nobody keeps or
# hashes them; treat them as read-only. A peer (`dest`, `source`) is typed Any: this
# layer never looks into one.


class Send(Record):
    """Put `message` on the wire to `dest` (a client's dest, or the request's source)."""

    __slots__ = ("message", "dest", "key")
    FIELDS = ("message", "dest", "key")

    def __init__(self, message: Request | Sent | SentResponse, dest: Any,
                 key: TxKey | None = None) -> None:
        self.message = message
        self.dest = dest
        self.key = key


class RequestReceived(Record):
    """A new request: a server transaction `key` waits for the TU's `respond`."""

    __slots__ = ("key", "request", "source")
    FIELDS = ("key", "request", "source")

    def __init__(self, key: TxKey, request: Request, source: Any) -> None:
        self.key = key
        self.request = request
        self.source = source


class ResponseReceived(Record):
    """A response for client transaction `key`."""

    __slots__ = ("key", "response")
    FIELDS = ("key", "response")

    def __init__(self, key: TxKey, response: Response) -> None:
        self.key = key
        self.response = response


class StrayResponse(Record):
    """A response that matches no client transaction (e.g. a late 2xx retransmission)."""

    __slots__ = ("response", "source")
    FIELDS = ("response", "source")

    def __init__(self, response: Response, source: Any) -> None:
        self.response = response
        self.source = source


class AckReceived(Record):
    """An ACK for a 2xx (end to end): for the dialog layer. `key` is the INVITE's if known."""

    __slots__ = ("request", "source", "key")
    FIELDS = ("request", "source", "key")

    def __init__(self, request: Request, source: Any, key: TxKey | None = None) -> None:
        self.request = request
        self.source = source
        self.key = key


class Cancelled(Record):
    """A CANCEL matched the pending INVITE server transaction `key` (already answered 200)."""

    __slots__ = ("key", "cancel")
    FIELDS = ("key", "cancel")

    def __init__(self, key: TxKey, cancel: Request) -> None:
        self.key = key
        self.cancel = cancel


class _Keyed(Record):
    """An event about transaction `key` alone."""

    __slots__ = ("key",)
    FIELDS = ("key",)

    def __init__(self, key: TxKey) -> None:
        self.key = key


class Timeout(_Keyed):
    """Timer B/F (client: treat as 408) or Timer H (server: the ACK never came) fired."""

    __slots__ = ()


class TransportError(_Keyed):
    """The transport failed to send for transaction `key` (client: treat as 503)."""

    __slots__ = ()


class Terminated(_Keyed):
    """Transaction `key` is over and forgotten."""

    __slots__ = ()


Event = (
    Send | RequestReceived | ResponseReceived | StrayResponse | AckReceived | Cancelled
    | Timeout | TransportError | Terminated
)

# -- the state tables -------------------------------------------------------------------

CALLING = "Calling"
TRYING = "Trying"
PROCEEDING = "Proceeding"
COMPLETED = "Completed"
CONFIRMED = "Confirmed"
ACCEPTED = "Accepted"
TERMINATED = "Terminated"
START = "Start"  # before the first stimulus ("TU request" or "request")

# Actions: "send" (the request, or the TU's response, remembered as the last one),
# "resend" (the request, or the last response if any), "to_tu" (pass the response up),
# "ack" (build once and send the ACK for a non-2xx), "ack_to_tu", "trying" (send 100
# unless a response went out), "timeout", "error", "start_retx" (arm A/E/G at T1 if
# unreliable), "retx_if_provisional" (start_retx, if a provisional was sent), "backoff"
# (double the A/E/G interval, E/G capped at T2, and re-arm), "retx_t2" (re-arm E at T2),
# "arm:X" (arm timer X at its fixed duration; "100" is the 100 Trying delay), "stop:X",
# "drop_request" / "drop_response" (let go of what the state reached has no use for:
# finished transactions linger up to 32 s, and a busy PBX has thousands of them).
Table = dict[tuple[str, str], tuple[str, tuple[str, ...]]]

_FINAL_ACKED = ("stop:A", "stop:B", "to_tu", "ack", "drop_request", "arm:D")

CLIENT_INVITE: Table = {  # RFC 3261 Figure 5 + RFC 6026 Figure 3
    (START, "TU request"): (CALLING, ("send", "start_retx", "arm:B")),
    (CALLING, "timer A"): (CALLING, ("resend", "backoff")),
    (CALLING, "timer B"): (TERMINATED, ("timeout",)),
    (CALLING, "1xx"): (PROCEEDING, ("stop:A", "stop:B", "arm:C", "to_tu")),
    (CALLING, "2xx"): (ACCEPTED, ("stop:A", "stop:B", "to_tu", "drop_request", "arm:M")),
    (CALLING, "300-699"): (COMPLETED, _FINAL_ACKED),
    (CALLING, "transport error"): (TERMINATED, ("error",)),
    (PROCEEDING, "1xx"): (PROCEEDING, ("arm:C", "to_tu")),
    (PROCEEDING, "2xx"): (ACCEPTED, ("stop:C", "to_tu", "drop_request", "arm:M")),
    (PROCEEDING, "300-699"): (COMPLETED, ("stop:C", "to_tu", "ack", "drop_request",
                                          "arm:D")),
    (PROCEEDING, "timer C"): (TERMINATED, ("timeout",)),
    (PROCEEDING, "transport error"): (TERMINATED, ("error",)),
    (COMPLETED, "300-699"): (COMPLETED, ("ack",)),  # our ACK was lost: send it again
    (COMPLETED, "1xx"): (COMPLETED, ()),
    (COMPLETED, "2xx"): (COMPLETED, ()),
    (COMPLETED, "timer D"): (TERMINATED, ()),
    (COMPLETED, "transport error"): (TERMINATED, ("error",)),
    (ACCEPTED, "2xx"): (ACCEPTED, ("to_tu",)),  # retransmission or another fork: re-ACK
    (ACCEPTED, "1xx"): (ACCEPTED, ()),
    (ACCEPTED, "300-699"): (ACCEPTED, ()),
    (ACCEPTED, "timer M"): (TERMINATED, ()),
}

_NI_FINAL = ("stop:E", "stop:F", "to_tu", "drop_request", "arm:K")

CLIENT_NON_INVITE: Table = {  # RFC 3261 Figure 6
    (START, "TU request"): (TRYING, ("send", "start_retx", "arm:F")),
    (TRYING, "timer E"): (TRYING, ("resend", "backoff")),
    (TRYING, "timer F"): (TERMINATED, ("timeout",)),
    (TRYING, "1xx"): (PROCEEDING, ("to_tu",)),
    (TRYING, "2xx"): (COMPLETED, _NI_FINAL),
    (TRYING, "300-699"): (COMPLETED, _NI_FINAL),
    (TRYING, "transport error"): (TERMINATED, ("error",)),
    (PROCEEDING, "timer E"): (PROCEEDING, ("resend", "retx_t2")),
    (PROCEEDING, "timer F"): (TERMINATED, ("timeout",)),
    (PROCEEDING, "1xx"): (PROCEEDING, ("to_tu",)),
    (PROCEEDING, "2xx"): (COMPLETED, _NI_FINAL),
    (PROCEEDING, "300-699"): (COMPLETED, _NI_FINAL),
    (PROCEEDING, "transport error"): (TERMINATED, ("error",)),
    (COMPLETED, "1xx"): (COMPLETED, ()),
    (COMPLETED, "2xx"): (COMPLETED, ()),
    (COMPLETED, "300-699"): (COMPLETED, ()),
    (COMPLETED, "timer K"): (TERMINATED, ()),
}

SERVER_INVITE: Table = {  # RFC 3261 Figure 7 + RFC 6026 Figure 5 (see the module doc)
    (START, "request"): (PROCEEDING, ("to_tu", "arm:100")),
    (PROCEEDING, "timer 100"): (PROCEEDING, ("trying",)),  # the TU is slow: 100 Trying
    (PROCEEDING, "request"): (PROCEEDING, ("resend",)),  # the last provisional, if any
    (PROCEEDING, "ACK"): (PROCEEDING, ()),
    (PROCEEDING, "TU 1xx"): (PROCEEDING, ("stop:100", "send")),
    # (Accepted: the UA core resends the 2xx until the ACK; the transaction only absorbs
    # retransmitted INVITEs and passes ACKs up, so it keeps neither message)
    (PROCEEDING, "TU 2xx"): (ACCEPTED, ("stop:100", "send", "drop_request", "drop_response",
                                        "arm:L")),
    (PROCEEDING, "TU 300-699"): (COMPLETED, ("stop:100", "send", "retx_if_provisional",
                                             "drop_request", "arm:H")),
    (PROCEEDING, "transport error"): (TERMINATED, ("error",)),
    (COMPLETED, "request"): (COMPLETED, ("resend",)),
    (COMPLETED, "timer G"): (COMPLETED, ("resend", "backoff")),
    (COMPLETED, "timer H"): (TERMINATED, ("timeout",)),
    (COMPLETED, "ACK"): (CONFIRMED, ("stop:G", "stop:H", "arm:I")),
    (COMPLETED, "transport error"): (TERMINATED, ("error",)),
    (CONFIRMED, "request"): (CONFIRMED, ()),
    (CONFIRMED, "ACK"): (CONFIRMED, ()),
    (CONFIRMED, "timer I"): (TERMINATED, ()),
    (ACCEPTED, "request"): (ACCEPTED, ()),
    (ACCEPTED, "ACK"): (ACCEPTED, ("ack_to_tu",)),
    (ACCEPTED, "TU 2xx"): (ACCEPTED, ("send", "drop_response")),
    (ACCEPTED, "timer L"): (TERMINATED, ()),
}

SERVER_NON_INVITE: Table = {  # RFC 3261 Figure 8
    (START, "request"): (TRYING, ("to_tu",)),
    (START, "CANCEL"): (TRYING, ()),  # a new CANCEL: the layer answers it, not the TU
    (TRYING, "request"): (TRYING, ()),
    (TRYING, "TU 1xx"): (PROCEEDING, ("send",)),
    (TRYING, "TU 2xx"): (COMPLETED, ("send", "drop_request", "arm:J")),
    (TRYING, "TU 300-699"): (COMPLETED, ("send", "drop_request", "arm:J")),
    (PROCEEDING, "request"): (PROCEEDING, ("resend",)),
    (PROCEEDING, "TU 1xx"): (PROCEEDING, ("send",)),
    (PROCEEDING, "TU 2xx"): (COMPLETED, ("send", "drop_request", "arm:J")),
    (PROCEEDING, "TU 300-699"): (COMPLETED, ("send", "drop_request", "arm:J")),
    (PROCEEDING, "transport error"): (TERMINATED, ("error",)),
    (COMPLETED, "request"): (COMPLETED, ("resend",)),
    (COMPLETED, "timer J"): (TERMINATED, ()),
    (COMPLETED, "transport error"): (TERMINATED, ("error",)),
}

TIMER_NAMES = (*"ABCDEFGHIJKLM", "100")
TIMER_C = 181.0  # RFC 3261 §16.6.11: "greater than 3 minutes"
TRYING_DELAY = 0.2  # RFC 3261 §17.2.1: a TU answering within 200 ms needs no 100 Trying
_TIMER_STIMULUS = {name: f"timer {name}" for name in TIMER_NAMES}


def _class(status: int) -> str:
    return "1xx" if status < 200 else "2xx" if status < 300 else "300-699"


_TU_CLASS = {"1xx": "TU 1xx", "2xx": "TU 2xx", "300-699": "TU 300-699"}


# -- message helpers --------------------------------------------------------------------


def _top_via_text(request: Request) -> str:
    for name, value in request.headers:
        if name == "Via":
            return value.split(",", 1)[0].strip() if "," in value else value
    return ""


def make_ack(invite: Request, response: Response) -> Request:
    """The ACK for a non-2xx final response to `invite` (RFC 3261 §17.1.1.3)."""
    number = invite.cseq[0]
    headers: list[tuple[str, str]] = [("Via", _top_via_text(invite))]
    for name, value in invite.headers:
        if name in ("From", "Call-ID", "Route"):
            headers.append((name, value))
    headers.append(("To", response.get("To") or ""))
    headers.append(("CSeq", f"{number} ACK"))
    headers.append(("Max-Forwards", "70"))
    return Request("ACK", invite.uri, headers)


def make_cancel(request: Request) -> Request:
    """The CANCEL for a pending `request` (RFC 3261 §9.1): same branch, Route set, CSeq number."""
    number = request.cseq[0]
    headers: list[tuple[str, str]] = [("Via", _top_via_text(request))]
    for name, value in request.headers:
        if name in ("From", "To", "Call-ID", "Route"):
            headers.append((name, value))
    headers.append(("CSeq", f"{number} CANCEL"))
    headers.append(("Max-Forwards", "70"))
    return Request("CANCEL", request.uri, headers)


def _server_key(request: Request, method: str) -> TxKey:
    via = request.top_via
    port = via.port
    sent_by = f"{via.host.lower()}:{port}" if port is not None else via.host.lower()
    branch = via.branch
    if branch is not None and branch.startswith("z9hG4bK") and len(branch) > 7:
        return TxKey(False, branch, sent_by, method)
    # RFC 2543 peer: no usable branch (§17.2.3, last paragraphs); the magic cookie alone
    # identifies nothing either (RFC 4475 §3.2.1)
    legacy = f"2543|{request.uri}|{request.call_id}|{request.from_.tag}|{request.cseq[0]}"
    return TxKey(False, legacy, sent_by, method)


# -- the transaction record -------------------------------------------------------------


class _Tx:
    __slots__ = (
        "key", "table", "state", "request", "peer", "reliable", "timers", "interval",
        "retx", "retx_cap", "last_response", "ack", "provisional_sent", "cancelling",
    )

    def __init__(
        self, key: TxKey, table: Table, request: Request, peer: object, reliable: bool,
        retx: str, retx_cap: float,
    ) -> None:
        self.key = key
        self.table = table
        self.state = START
        self.request: Request | None = request
        self.peer = peer
        self.reliable = reliable
        self.timers: dict[str, int] = {}
        self.interval = 0.0
        self.retx = retx  # the name of this kind's retransmission timer: A, E or G
        self.retx_cap = retx_cap
        self.last_response: SentResponse | None = None  # (a server's, as sent)
        self.ack: Sent | None = None  # (a client INVITE's for a non-2xx, as sent)
        self.provisional_sent = False  # server: a 1xx went out (the client stops Timer A)
        self.cancelling = False  # client INVITE: the TU sent a CANCEL (Timer C is 64*T1)


_KIND_NAMES = {
    id(CLIENT_INVITE): "client INVITE",
    id(CLIENT_NON_INVITE): "client non-INVITE",
    id(SERVER_INVITE): "server INVITE",
    id(SERVER_NON_INVITE): "server non-INVITE",
}


class TransactionLayer:
    """Every transaction of one SIP endpoint, with one timer heap. See the module doc."""

    def __init__(
        self,
        t1: float = 0.5,
        t2: float = 4.0,
        t4: float = 5.0,
        *,
        timer_d: float = 32.0,
        timer_c: float = TIMER_C,
        auto_trying: bool = True,
    ) -> None:
        self.t1 = t1
        self.t2 = t2
        self.t4 = t4
        self.auto_trying = auto_trying
        # fixed durations: (unreliable, reliable)
        self._durations: dict[str, tuple[float, float]] = {
            "B": (64 * t1, 64 * t1), "F": (64 * t1, 64 * t1), "H": (64 * t1, 64 * t1),
            "C": (timer_c, timer_c),
            "L": (64 * t1, 64 * t1), "M": (64 * t1, 64 * t1),
            "D": (timer_d, 0.0), "I": (t4, 0.0), "J": (64 * t1, 0.0), "K": (t4, 0.0),
            "100": (TRYING_DELAY, TRYING_DELAY),
        }
        self._clients: dict[TxKey, _Tx] = {}
        self._servers: dict[TxKey, _Tx] = {}
        self._heap: list[tuple[float, int, _Tx, str]] = []
        self._stale = 0
        self._seq = count()
        self._out: list[Event] = []

    # -- public API ---------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._clients) + len(self._servers)

    def state(self, key: TxKey) -> str | None:
        """The state name of transaction `key`, or None once it is gone."""
        tx = (self._clients if key.client else self._servers).get(key)
        return tx.state if tx is not None else None

    def send_request(
        self, request: Request, dest: object, now: float, *, reliable: bool = False
    ) -> tuple[TxKey, list[Event]]:
        """Start a client transaction for `request` (which carries its top Via)."""
        method = request.method
        if method == "ACK":
            raise TransactionError("an ACK is not sent through a client transaction")
        branch = request.top_via.branch
        if not branch:
            raise TransactionError("the request's top Via has no branch")
        key = TxKey(True, branch, "", method)
        if key in self._clients:
            raise TransactionError(f"a client transaction {branch} {method} already exists")
        if method == "INVITE":
            tx = _Tx(key, CLIENT_INVITE, request, dest, reliable, "A", float("inf"))
        else:
            tx = _Tx(key, CLIENT_NON_INVITE, request, dest, reliable, "E", self.t2)
        self._clients[key] = tx
        self._fire(tx, "TU request", now, None)
        return key, self._finish(now)

    def receive(
        self, message: Request | Response, source: object, reliable: bool, now: float
    ) -> list[Event]:
        """Feed one message from the wire (already parsed)."""
        if isinstance(message, Response):
            self._receive_response(message, source, now)
        else:
            self._receive_request(message, source, reliable, now)
        return self._finish(now)

    def respond(self, key: TxKey, response: Response, now: float) -> list[Event]:
        """The TU answers server transaction `key` with `response`."""
        tx = self._servers.get(key)
        if tx is None:
            raise TransactionError(f"no server transaction {key.branch} {key.method}")
        self._fire(tx, _TU_CLASS[_class(response.status)], now, response)
        return self._finish(now)

    def transport_error(self, key: TxKey, now: float) -> list[Event]:
        """The transport failed to send a message of transaction `key`."""
        tx = (self._clients if key.client else self._servers).get(key)
        if tx is not None:
            self._fire(tx, "transport error", now, None)
        return self._finish(now)

    def cancelling(self, key: TxKey, now: float) -> list[Event]:
        """The TU sent a CANCEL for client INVITE `key`: if no final answer comes within
        64*T1 the transaction ends with a `Timeout` (RFC 3261 §9.1)."""
        tx = self._clients.get(key)
        if tx is not None and tx.state == PROCEEDING and not tx.cancelling:
            tx.cancelling = True
            self._arm(tx, "C", 64 * self.t1, now)
        return self._finish(now)

    def has_server(self, request: Request) -> bool:
        """Is `request` part of a server transaction we have (a retransmission)?"""
        try:
            key = _server_key(request, "INVITE" if request.method == "ACK" else request.method)
        except ValueError:
            return False
        return key in self._servers

    def tick(self, now: float) -> list[Event]:
        """Fire every timer due at `now`."""
        return self._finish(now)

    def next_deadline(self) -> float | None:
        """When `tick` next has work, or None if no timer is armed."""
        heap = self._heap
        while heap:
            when, seq, tx, name = heap[0]
            if tx.timers.get(name) == seq:
                return when
            heapq.heappop(heap)
            self._stale -= 1
        return None

    # -- receiving ----------------------------------------------------------------------
    def _receive_response(self, response: Response, source: object, now: float) -> None:
        try:
            branch = response.top_via.branch
            method = response.cseq[1]
        except ValueError:  # SipParseError: no usable Via/CSeq
            return
        tx = self._clients.get(TxKey(True, branch or "", "", method))
        if tx is None:
            self._out.append(StrayResponse(response, source))
            return
        self._fire(tx, _class(response.status), now, response)

    def _receive_request(
        self, request: Request, source: object, reliable: bool, now: float
    ) -> None:
        method = request.method
        try:
            key = _server_key(request, "INVITE" if method == "ACK" else method)
        except ValueError:  # SipParseError: no usable top Via; nobody to answer
            return
        if method == "ACK":
            tx = self._servers.get(key)
            if tx is None:
                self._out.append(AckReceived(request, source))
            else:
                self._fire(tx, "ACK", now, request)
            return
        tx = self._servers.get(key)
        if tx is not None:
            self._fire(tx, "request", now, request)
            return
        if method == "INVITE":
            tx = _Tx(key, SERVER_INVITE, request, source, reliable, "G", self.t2)
        else:
            tx = _Tx(key, SERVER_NON_INVITE, request, source, reliable, "", 0.0)
        self._servers[key] = tx
        if method == "CANCEL":
            self._cancel(tx, request, now)
        else:
            self._fire(tx, "request", now, request)

    def _cancel(self, tx: _Tx, cancel: Request, now: float) -> None:
        """Answer a new CANCEL (§9.2) on its own transaction `tx`; report the INVITE's."""
        self._fire(tx, "CANCEL", now, cancel)
        invite_key = tx.key._replace(method="INVITE")
        invite = self._servers.get(invite_key)
        if invite is None:
            self._fire(tx, "TU 300-699", now, make_response(cancel, 481, to_tag=_tag()))
            return
        last = invite.last_response
        tag = last.to_tag if last is not None and last.status > 100 else None
        self._fire(tx, "TU 2xx", now, make_response(cancel, 200, to_tag=tag or _tag()))
        if invite.state == PROCEEDING:
            self._out.append(Cancelled(invite_key, cancel))

    # -- the machine --------------------------------------------------------------------
    def _fire(self, tx: _Tx, stimulus: str, now: float, msg: Request | Response | None) -> None:
        entry = tx.table.get((tx.state, stimulus))
        if entry is None:
            if stimulus.startswith("TU"):
                kind = _KIND_NAMES[id(tx.table)]
                raise TransactionError(
                    f"{stimulus} is not allowed in state {tx.state} of {kind} transaction"
                    f" {tx.key.branch}"
                )
            return  # an unexpected message or a stale timer: dropped
        new_state, actions = entry
        for action in actions:
            _ACTIONS[action](self, tx, msg, now)
        tx.state = new_state
        if new_state is TERMINATED:
            self._terminate(tx)

    def _terminate(self, tx: _Tx) -> None:
        table = self._clients if tx.key.client else self._servers
        if table.get(tx.key) is tx:
            del table[tx.key]
        self._stale += len(tx.timers)
        tx.timers.clear()
        tx.request = tx.last_response = tx.ack = None  # stale heap entries stay small
        self._out.append(Terminated(tx.key))

    def _finish(self, now: float) -> list[Event]:
        """Run the timers that are due (zero-length ones included); hand the events out."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, seq, tx, name = heapq.heappop(heap)
            if tx.timers.get(name) != seq:
                self._stale -= 1
                continue
            del tx.timers[name]
            self._fire(tx, _TIMER_STIMULUS[name], now, None)
        if self._stale > 4096 and self._stale * 2 > len(heap):
            self._heap = [e for e in heap if e[2].timers.get(e[3]) == e[1]]
            heapq.heapify(self._heap)
            self._stale = 0
        out = self._out
        self._out = []
        return out

    def _arm(self, tx: _Tx, name: str, delay: float, now: float) -> None:
        seq = next(self._seq)
        if name in tx.timers:
            self._stale += 1
        tx.timers[name] = seq
        heapq.heappush(self._heap, (now + delay, seq, tx, name))

    # -- actions ------------------------------------------------------------------------
    def _a_send(self, tx: _Tx, msg: Request | Response | None, now: float) -> None:
        if isinstance(msg, Response):
            last = tx.last_response
            if msg.status == 100 and last is not None and last.status == 100:
                return  # the layer's own 100 Trying went out already
            sent = tx.last_response = SentResponse(msg)
            if msg.status < 200:
                tx.provisional_sent = True
            self._out.append(Send(sent, tx.peer, tx.key))
        elif tx.request is not None:
            self._out.append(Send(tx.request, tx.peer, tx.key))

    def _a_resend(self, tx: _Tx, msg: Request | Response | None, now: float) -> None:
        if tx.key.client:
            if tx.request is not None:
                self._out.append(Send(tx.request, tx.peer, tx.key))
        elif tx.last_response is not None:
            self._out.append(Send(tx.last_response, tx.peer, tx.key))

    def _a_to_tu(self, tx: _Tx, msg: Request | Response | None, now: float) -> None:
        if isinstance(msg, Response):
            self._out.append(ResponseReceived(tx.key, msg))
        elif isinstance(msg, Request):
            self._out.append(RequestReceived(tx.key, msg, tx.peer))

    def _a_ack(self, tx: _Tx, msg: Request | Response | None, now: float) -> None:
        if tx.ack is None and tx.request is not None and isinstance(msg, Response):
            ack = make_ack(tx.request, msg)
            tx.ack = Sent(ack.to_bytes(), ack.cseq[0])
        if tx.ack is not None:
            self._out.append(Send(tx.ack, tx.peer, tx.key))

    def _a_ack_to_tu(self, tx: _Tx, msg: Request | Response | None, now: float) -> None:
        if isinstance(msg, Request):
            self._out.append(AckReceived(msg, tx.peer, tx.key))

    def _a_trying(self, tx: _Tx, msg: Request | Response | None, now: float) -> None:
        if self.auto_trying and tx.request is not None and tx.last_response is None:
            tx.last_response = SentResponse(make_response(tx.request, 100))
            tx.provisional_sent = True
            self._out.append(Send(tx.last_response, tx.peer, tx.key))

    def _a_drop_request(self, tx: _Tx, msg: Request | Response | None, now: float) -> None:
        tx.request = None

    def _a_drop_response(self, tx: _Tx, msg: Request | Response | None, now: float) -> None:
        tx.last_response = None

    def _a_timeout(self, tx: _Tx, msg: Request | Response | None, now: float) -> None:
        self._out.append(Timeout(tx.key))

    def _a_error(self, tx: _Tx, msg: Request | Response | None, now: float) -> None:
        self._out.append(TransportError(tx.key))

    def _a_start_retx(self, tx: _Tx, msg: Request | Response | None, now: float) -> None:
        if not tx.reliable:
            tx.interval = self.t1
            self._arm(tx, tx.retx, self.t1, now)

    def _a_retx_if_provisional(
        self, tx: _Tx, msg: Request | Response | None, now: float
    ) -> None:
        if tx.provisional_sent:
            self._a_start_retx(tx, msg, now)

    def _a_backoff(self, tx: _Tx, msg: Request | Response | None, now: float) -> None:
        tx.interval = min(tx.interval * 2, tx.retx_cap)
        self._arm(tx, tx.retx, tx.interval, now)

    def _a_retx_t2(self, tx: _Tx, msg: Request | Response | None, now: float) -> None:
        tx.interval = self.t2
        self._arm(tx, tx.retx, self.t2, now)


_Action = Callable[[TransactionLayer, _Tx, "Request | Response | None", float], None]


def _arm_action(name: str) -> _Action:
    def arm(layer: TransactionLayer, tx: _Tx, msg: Request | Response | None, now: float) -> None:
        if tx.cancelling and name == "C":
            return  # CANCELled: Timer C stays at 64*T1 (a provisional does not reset it)
        unreliable, reliable = layer._durations[name]
        layer._arm(tx, name, reliable if tx.reliable else unreliable, now)

    return arm


def _stop_action(name: str) -> _Action:
    def stop(layer: TransactionLayer, tx: _Tx, msg: Request | Response | None, now: float) -> None:
        if tx.timers.pop(name, None) is not None:
            layer._stale += 1

    return stop


_ACTIONS: dict[str, _Action] = {
    "send": TransactionLayer._a_send,
    "resend": TransactionLayer._a_resend,
    "to_tu": TransactionLayer._a_to_tu,
    "ack": TransactionLayer._a_ack,
    "ack_to_tu": TransactionLayer._a_ack_to_tu,
    "trying": TransactionLayer._a_trying,
    "timeout": TransactionLayer._a_timeout,
    "drop_request": TransactionLayer._a_drop_request,
    "drop_response": TransactionLayer._a_drop_response,
    "error": TransactionLayer._a_error,
    "start_retx": TransactionLayer._a_start_retx,
    "retx_if_provisional": TransactionLayer._a_retx_if_provisional,
    "backoff": TransactionLayer._a_backoff,
    "retx_t2": TransactionLayer._a_retx_t2,
}
for _name in TIMER_NAMES:
    _ACTIONS[f"arm:{_name}"] = _arm_action(_name)
    _ACTIONS[f"stop:{_name}"] = _stop_action(_name)


def _check_tables() -> None:
    """Every action named in a table exists (caught at import, not at 3 a.m.)."""
    for table in (CLIENT_INVITE, CLIENT_NON_INVITE, SERVER_INVITE, SERVER_NON_INVITE):
        for _, actions in table.values():
            for action in actions:
                if action not in _ACTIONS:
                    raise AssertionError(f"unknown transaction action {action!r}")


_check_tables()


def _tag() -> str:
    return secrets.token_hex(5)
