"""SIP on the wire without sockets: addresses, Via stamping, where answers go, framing.

The pure half of `transport.py` (unit-tested directly, and used by the torture and fuzz
harnesses): `Peer` (a remote transport address), `fix_via` (RFC 3261 §18.2.1 `received`
and RFC 3581 `rport`), `via_destination` / `reply_address` (§18.2.2 without its `maddr`
rule: answers go only where the request came from), `error_response` (a 400/505/513/501
for bytes that do not parse, when a Via and a CSeq can still be read), and the framing of
what arrives: `read_datagram` (one datagram, one message) and `read_stream` (a TCP/TLS
byte stream through `StreamParser`), each giving a parsed message or a `Rejection`.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import NamedTuple

from ippbx.sip.errors import SipParseError
from ippbx.sip.headers import Via, split_list
from ippbx.sip.message import (
    MAX_MESSAGE,
    Request,
    Response,
    SentResponse,
    StreamParser,
    parse_message,
)

__all__ = [
    "DEFAULT_PORT", "Peer", "Rejection", "error_response", "fix_via", "read_datagram",
    "read_stream", "reply_address", "via_destination",
]

log = logging.getLogger("ippbx.sip.transport")  # (its lines read as the transport's)

DEFAULT_PORT = 5060


class Peer(NamedTuple):
    """A remote transport address: where a message came from or is to be sent.

    A value, hashed and compared as the tuple it is. A tuple rather than a frozen
    dataclass: made once per datagram received, and a frozen dataclass's `__init__` sets
    each field through `object.__setattr__` (timeit, compiled: 359 ns to make one, 210 ns
    this way).
    """

    host: str
    port: int
    transport: str = "udp"  # "udp" | "tcp" | "tls"


# -- pure helpers (no sockets; unit-tested directly) ----------------------------------------


def fix_via(request: Request, source: Peer) -> None:
    """Add `received`/`rport` to the top Via as RFC 3261 §18.2.1 and RFC 3581 require.

    `received=<source ip>` when the sent-by host is not the source address, or whenever
    the client asked for `rport`; an empty `rport` gets the source port. Raises
    SipParseError when the request has no usable Via.
    """
    via = request.top_via
    if _stamp_via(via, source):
        request.set_top_via(via)


def _stamp_via(via: Via, source: Peer) -> bool:
    """Apply `fix_via`'s rules to one Via; True if it changed."""
    params = via.params
    changed = False
    wants_rport = "rport" in params and not params["rport"]
    if wants_rport:
        params["rport"] = str(source.port)
        changed = True
    if (wants_rport or via.host != source.host) and params.get("received") != source.host:
        params["received"] = source.host
        changed = True
    return changed


def via_destination(via: Via, source: Peer) -> Peer:
    """Where a response to a request from `source` with top Via `via` goes, ignoring any
    open connection (see `reply_address`): the source's address (the request's
    `received`), never the Via's `maddr` nor its sent-by host; over UDP at the `rport`
    port if the client asked for it (RFC 3581 §4), else the sent-by port (RFC 3261
    §18.2.2)."""
    if source.transport == "tcp":
        return Peer(source.host, via.port or DEFAULT_PORT, "tcp")
    if "rport" in via.params:
        rport = via.params["rport"]
        if rport and rport.isdigit() and 0 < int(rport) < 65536:
            return Peer(source.host, int(rport), "udp")
        return source  # asked for but not filled in (the request was not stamped)
    return Peer(source.host, via.port or DEFAULT_PORT, "udp")


def reply_address(response: Response | SentResponse, source: Peer) -> Peer:
    """Where `response` to a request that came from `source` goes (no open-connection
    shortcut: `SipTransport.response_destination` adds that). Never raises: a top Via
    that does not parse sends it back to `source` itself."""
    if isinstance(response, SentResponse):
        top = response.via
    else:
        vias = response.get_all("Via")
        top = vias[0] if vias else ""
    try:
        via = Via.parse(top) if top else None
    except SipParseError:
        via = None
    if via is None:
        return source
    return via_destination(via, source)


_ERROR_HEADERS = {
    "via": "Via", "v": "Via", "from": "From", "f": "From", "to": "To", "t": "To",
    "call-id": "Call-ID", "i": "Call-ID", "cseq": "CSeq",
}


def error_response(data: bytes, status: int, source: Peer) -> Response | None:
    """A `status` response to bytes that failed to parse as a request, or None.

    None when the bytes are a response, an ACK (never answered), or lack a Via or a
    CSeq (what the client matches a response with, §17.1.3). From, To and Call-ID are
    copied when present (RFC 4475 §3.3.1: even a request without them is ideally
    answered 400). A top Via that parses gets `received`/`rport` like any request's;
    one that does not (e.g. `SIP/7.0/UDP`) is copied as it came. Send it with
    `reply_address`.
    """
    end = data.find(b"\r\n\r\n", 0, MAX_MESSAGE)
    if end == -1:
        end = data.find(b"\n\n", 0, MAX_MESSAGE)
    head = data[: end if end != -1 else MAX_MESSAGE].decode("utf-8", "replace")
    lines = head.replace("\r\n", "\n").split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        return None
    start = lines[0].strip()
    if start.upper().startswith("SIP/") or start.split(" ", 1)[0].upper() == "ACK":
        return None
    vias: list[str] = []
    single: dict[str, str] = {}
    for line in lines[1:]:
        if not line or line[0] in " \t":
            continue
        name, colon, value = line.partition(":")
        key = _ERROR_HEADERS.get(name.strip().lower()) if colon else None
        if key is None or not value.strip():
            continue
        if key == "Via":
            vias.extend(split_list(value))
        else:
            single.setdefault(key, value.strip())
    if not vias or "CSeq" not in single:
        return None
    try:
        top = Via.parse(vias[0])
    except SipParseError:
        headers = [("Via", v) for v in vias]
    else:
        _stamp_via(top, source)
        headers = [("Via", str(top))] + [("Via", v) for v in vias[1:]]
    if "From" in single:
        headers.append(("From", single["From"]))
    if "To" in single:
        to = single["To"]
        if ";tag=" not in to.replace(" ", "").lower():
            to = f"{to};tag={secrets.token_hex(6)}"
        headers.append(("To", to))
    if "Call-ID" in single:
        headers.append(("Call-ID", single["Call-ID"]))
    headers.append(("CSeq", single["CSeq"]))
    return Response(status, None, headers)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Bytes from `source` that are not a message we can use: why, what kind (the
    rate-limit key of the log line), and the answer due (None: nothing is sent)."""

    kind: str  # "unparsable" (nothing can be answered) or "bad request" (answered)
    reason: str
    response: Response | None = None


def _reject(data: bytes, source: Peer, exc: Exception) -> Rejection:
    status = getattr(exc, "status", None) or 400
    response = error_response(data, status, source)
    kind = "unparsable" if response is None else "bad request"
    return Rejection(kind, str(exc) or type(exc).__name__, response)


def _stamped(message: Request | Response, source: Peer) -> Request | Response:
    if isinstance(message, Request):
        try:
            fix_via(message, source)
        except SipParseError:
            pass  # the UA's header checks reject it (and answer it if they can)
    return message


def read_datagram(data: bytes, source: Peer) -> Request | Response | Rejection | None:
    """One UDP datagram from `source`: the message (a request's top Via stamped, see
    `fix_via`), a `Rejection`, or None for a keep-alive. Never raises."""
    if not data.strip(b"\r\n"):
        return None  # CRLF keep-alive (RFC 5626 §3.5.1 style) or empty datagram
    try:
        message = parse_message(data)
    except SipParseError as exc:
        return _reject(data, source, exc)
    except Exception as exc:  # a parser bug must not kill the endpoint
        log.debug("parser failed on a datagram from %s", source, exc_info=True)
        return _reject(data, source, exc)
    return _stamped(message, source)


def read_stream(
    parser: StreamParser, data: bytes, source: Peer
) -> tuple[list[Request | Response], Rejection | None]:
    """Feed bytes of one TCP connection: the messages they complete (requests stamped),
    and a `Rejection` once the stream stops framing (then stop reading and close; the
    messages before the bad bytes are still returned). Never raises."""
    try:
        messages = parser.feed(data)
    except SipParseError:
        messages = []
    except Exception as exc:  # a parser bug must not kill the endpoint
        log.debug("parser failed on a stream from %s", source, exc_info=True)
        return [], _reject(parser.unparsed, source, exc)
    messages = [_stamped(m, source) for m in messages]
    error = parser.error
    if error is None:
        return messages, None
    return messages, _reject(parser.unparsed, source, error)
