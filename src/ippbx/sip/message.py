"""SIP messages: parse from bytes, inspect and edit headers, serialize back to bytes.

`parse_message` takes one UDP datagram; `StreamParser` frames a TCP byte stream by
Content-Length. Header values stay raw strings and are parsed on demand (see
`headers.py`); header names are matched case-insensitively and compact forms (`v`, `f`,
`i`…) are expanded. The body passes through untouched. Anything malformed raises
`SipParseError` (`status` says which response a request deserves: 400 or 505).
"""

from __future__ import annotations

from collections.abc import Iterable

from ippbx.sip.errors import SipParseError
from ippbx.sip.headers import NameAddr, Via, parse_cseq, split_list

__all__ = [
    "SipParseError",
    "Message",
    "Request",
    "Response",
    "parse_message",
    "StreamParser",
    "make_response",
    "REASONS",
]

MAX_MESSAGE = 65535

_KNOWN = [
    "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Content-Length", "Content-Type",
    "Max-Forwards", "Route", "Record-Route", "Authorization", "WWW-Authenticate",
    "Proxy-Authenticate", "Proxy-Authorization", "Expires", "Min-Expires", "User-Agent",
    "Server", "Allow", "Supported", "Require", "Proxy-Require", "Unsupported", "Accept",
    "Accept-Encoding", "Accept-Language", "Content-Encoding", "Content-Disposition",
    "Subject", "Event", "Allow-Events", "Refer-To", "Referred-By", "Call-Info", "Alert-Info",
    "Error-Info", "Warning", "Date", "Timestamp", "Organization", "Priority", "Retry-After",
    "Session-Expires", "Min-SE", "Reason", "Replaces", "P-Asserted-Identity", "Privacy",
    "Remote-Party-ID", "Diversion", "In-Reply-To", "Reply-To", "MIME-Version",
    "Authentication-Info", "RSeq", "RAck", "Path", "Subscription-State", "Identity",
]
_CANON: dict[str, str] = {name.lower(): name for name in _KNOWN}
_CANON.update({
    "v": "Via", "f": "From", "t": "To", "i": "Call-ID", "m": "Contact", "l": "Content-Length",
    "c": "Content-Type", "e": "Content-Encoding", "k": "Supported", "s": "Subject",
    "o": "Event", "r": "Refer-To", "b": "Referred-By", "u": "Allow-Events",
    "x": "Session-Expires", "y": "Identity",
})
_KNOWN_COUNT = len(_CANON)

# Headers whose value is a comma-separated list (RFC 3261 §7.3.1); others never split.
_LIST_HEADERS = frozenset({
    "Via", "Route", "Record-Route", "Contact", "Allow", "Supported", "Require",
    "Proxy-Require", "Unsupported", "Accept", "Accept-Encoding", "Accept-Language",
    "Content-Encoding", "Allow-Events", "Call-Info", "Alert-Info", "Error-Info", "Warning",
    "In-Reply-To", "Path", "P-Asserted-Identity", "Diversion", "Reason",
})
# Headers a message may carry at most once.
_SINGLE = ("From", "To", "Call-ID", "CSeq", "Content-Length", "Max-Forwards")

_TOKEN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")


def canonical_name(name: str) -> str:
    """The canonical spelling of a header name (compact forms expanded)."""
    canon = _CANON.get(name.lower())
    if canon is not None:
        return canon
    if not name or not _TOKEN.issuperset(name):
        raise SipParseError(f"bad header name {name!r}")
    canon = "-".join(part.capitalize() for part in name.split("-"))
    if len(_CANON) < _KNOWN_COUNT + 512:  # bounded: names are chosen by peers
        _CANON[name.lower()] = canon
    return canon


REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 301: "Moved Permanently",
    302: "Moved Temporarily", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    413: "Request Entity Too Large", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 423: "Interval Too Brief",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    491: "Request Pending", 500: "Server Internal Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Server Time-out",
    505: "Version Not Supported", 513: "Message Too Large", 600: "Busy Everywhere",
    603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}


class Message:
    """Headers (canonical name, raw value) in wire order, plus the body bytes."""

    __slots__ = ("headers", "body", "_cache")

    def __init__(self, headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> None:
        self.headers: list[tuple[str, str]] = headers if headers is not None else []
        self.body = body
        self._cache: dict[str, object] = {}

    # -- header access ------------------------------------------------------------------
    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of header `name` (not split), or `default`."""
        key = canonical_name(name)
        for n, v in self.headers:
            if n == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of header `name`, list headers split on their commas."""
        key = canonical_name(name)
        values = [v for n, v in self.headers if n == key]
        if key in _LIST_HEADERS:
            return [item for v in values for item in split_list(v)]
        return values

    def has(self, name: str) -> bool:
        key = canonical_name(name)
        return any(n == key for n, _ in self.headers)

    def set(self, name: str, value: str) -> None:
        """Replace every `name` header with one holding `value` (where the first one was)."""
        key = canonical_name(name)
        self._cache.clear()
        for i, (n, _) in enumerate(self.headers):
            if n == key:
                self.headers[i] = (key, value)
                self.headers[i + 1 :] = [h for h in self.headers[i + 1 :] if h[0] != key]
                return
        self.headers.append((key, value))

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        """Add a `name` header; `first=True` puts it above the existing ones of that name."""
        key = canonical_name(name)
        self._cache.clear()
        if first:
            for i, (n, _) in enumerate(self.headers):
                if n == key:
                    self.headers.insert(i, (key, value))
                    return
        self.headers.append((key, value))

    def remove(self, name: str) -> None:
        key = canonical_name(name)
        self._cache.clear()
        self.headers = [h for h in self.headers if h[0] != key]

    def remove_first(self, name: str) -> None:
        """Remove the first value of a (list) header, e.g. the top Via."""
        key = canonical_name(name)
        self._cache.clear()
        for i, (n, v) in enumerate(self.headers):
            if n == key:
                items = split_list(v) if key in _LIST_HEADERS else [v]
                if len(items) > 1:
                    self.headers[i] = (key, ", ".join(items[1:]))
                else:
                    del self.headers[i]
                return

    # -- parsed views (cached until the headers change) ---------------------------------
    def _cached(self, key: str, make: object) -> object:
        value = self._cache.get(key)
        if value is None:
            value = make()  # type: ignore[operator]
            self._cache[key] = value
        return value

    @property
    def call_id(self) -> str:
        return self.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        return self._cached("cseq", lambda: parse_cseq(self.get("CSeq") or ""))  # type: ignore[return-value]

    @property
    def from_(self) -> NameAddr:
        return self._cached("from", lambda: NameAddr.parse(self.get("From") or ""))  # type: ignore[return-value]

    @property
    def to(self) -> NameAddr:
        return self._cached("to", lambda: NameAddr.parse(self.get("To") or ""))  # type: ignore[return-value]

    @property
    def vias(self) -> list[Via]:
        return self._cached("vias", lambda: [Via.parse(v) for v in self.get_all("Via")])  # type: ignore[return-value]

    @property
    def top_via(self) -> Via:
        vias = self.vias
        if not vias:
            raise SipParseError("message has no Via")
        return vias[0]

    # -- serialization ------------------------------------------------------------------
    def start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Serialize; Content-Length always states the body's real length."""
        lines = [self.start_line()]
        lines.extend(f"{n}: {v}" for n, v in self.headers if n != "Content-Length")
        lines.append(f"Content-Length: {len(self.body)}")
        lines.append("")
        lines.append("")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    def copy(self) -> Message:
        raise NotImplementedError


class Request(Message):
    """A SIP request: method, Request-URI (raw text), headers, body."""

    __slots__ = ("method", "uri")

    def __init__(
        self,
        method: str,
        uri: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(headers, body)
        self.method = method
        self.uri = uri

    def start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"

    def copy(self) -> Request:
        return Request(self.method, self.uri, list(self.headers), self.body)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri} call-id={self.call_id}>"


class Response(Message):
    """A SIP response: status code, reason phrase, headers, body."""

    __slots__ = ("status", "reason")

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = REASONS.get(status, "Unknown") if reason is None else reason

    def start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"

    def copy(self) -> Response:
        return Response(self.status, self.reason, list(self.headers), self.body)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason} call-id={self.call_id}>"


def _bad(message: str, status: int = 400) -> SipParseError:
    err = SipParseError(message)
    err.status = status  # type: ignore[attr-defined]
    return err


def _parse_head(head: str) -> tuple[Request | Response, int | None]:
    """Parse the start line and headers; return the message and its Content-Length."""
    lines = head.split("\n")
    start = lines[0].rstrip("\r")
    msg: Request | Response
    if start.startswith("SIP/"):
        parts = start.split(" ", 2)
        if len(parts) < 2 or parts[0].upper() != "SIP/2.0":
            raise _bad(f"bad status line {start!r}")
        code = parts[1]
        if len(code) != 3 or not code.isdigit() or not 100 <= int(code) <= 699:
            raise _bad(f"bad status code in {start!r}")
        msg = Response(int(code), parts[2] if len(parts) == 3 else "")
    else:
        parts = start.split(" ")
        if len(parts) != 3 or not parts[0] or not parts[1]:
            raise _bad(f"bad request line {start!r}")
        method, uri, version = parts
        if not _TOKEN.issuperset(method):
            raise _bad(f"bad method {method!r}")
        if ":" not in uri:
            raise _bad(f"bad Request-URI {uri!r}")
        if version.upper() != "SIP/2.0":
            status = 505 if version.upper().startswith("SIP/") else 400
            raise _bad(f"unsupported version {version!r}", status)
        msg = Request(method, uri)
    headers = msg.headers
    canon = _CANON
    for raw in lines[1:]:
        line = raw[:-1] if raw.endswith("\r") else raw
        if not line:
            raise _bad("empty line inside the header block")
        if line[0] in " \t":  # folded continuation of the previous header
            if not headers:
                raise _bad("continuation line before any header")
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
            continue
        colon = line.find(":")
        if colon <= 0:
            raise _bad(f"header line without a name: {line[:40]!r}")
        raw_name = line[:colon].rstrip(" \t")
        name = canon.get(raw_name.lower()) or canonical_name(raw_name)
        headers.append((name, line[colon + 1 :].strip()))
    content_length: int | None = None
    seen: dict[str, int] = {}
    for name, value in headers:
        if name in _SINGLE:
            seen[name] = seen.get(name, 0) + 1
        if name == "Content-Length":
            if not value.isdigit() or len(value) > 9:
                raise _bad(f"bad Content-Length {value!r}")
            content_length = int(value)
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        if name not in seen and not (name == "Via" and any(n == "Via" for n, _ in headers)):
            raise _bad(f"missing {name} header")
    for name, count in seen.items():
        if count > 1:
            raise _bad(f"more than one {name} header")
    number, cseq_method = msg.cseq
    if isinstance(msg, Request) and cseq_method != msg.method:
        raise _bad(f"CSeq method {cseq_method} does not match {msg.method}")
    if not msg.call_id:
        raise _bad("empty Call-ID")
    return msg, content_length


def _find_head_end(data: bytes, start: int = 0) -> tuple[int, int]:
    """Index of the blank line ending the header block and its length, or (-1, 0)."""
    crlf = data.find(b"\r\n\r\n", start)
    lf = data.find(b"\n\n", start)
    if lf != -1 and (crlf == -1 or lf < crlf):
        return lf, 2
    return (crlf, 4) if crlf != -1 else (-1, 0)


def parse_message(data: bytes) -> Request | Response:
    """Parse one datagram into a Request or Response; raise SipParseError if malformed."""
    if len(data) > MAX_MESSAGE:
        raise _bad("message too large", 513)
    offset = 0
    while data.startswith(b"\r\n", offset):
        offset += 2
    end, sep = _find_head_end(data, offset)
    if end == -1:
        raise _bad("no blank line after the headers")
    head = data[offset:end].decode("utf-8", "surrogateescape")
    msg, length = _parse_head(head)
    body = data[end + sep :]
    if length is not None:
        if length > len(body):
            raise _bad("body shorter than Content-Length")
        body = body[:length]
    msg.body = body
    return msg


class StreamParser:
    """Frames SIP messages out of a TCP byte stream (Content-Length is mandatory)."""

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self._buf = bytearray()
        self._max = max_message

    def feed(self, data: bytes) -> list[Request | Response]:
        """Add bytes; return the complete messages now available. Raises SipParseError."""
        self._buf += data
        out: list[Request | Response] = []
        while True:
            buf = self._buf
            start = 0
            while buf.startswith(b"\r\n", start):  # keep-alive CRLFs between messages
                start += 2
            if start:
                del buf[:start]
            if not buf:
                return out
            end, sep = _find_head_end(bytes(buf[: self._max + 4]))
            if end == -1:
                if len(buf) > self._max:
                    raise _bad("header block too large", 513)
                return out
            msg, length = _parse_head(bytes(buf[:end]).decode("utf-8", "surrogateescape"))
            if length is None:
                raise _bad("Content-Length is required on a stream transport")
            total = end + sep + length
            if total > self._max:
                raise _bad("message too large", 513)
            if len(buf) < total:
                return out
            msg.body = bytes(buf[end + sep : total])
            del buf[:total]
            out.append(msg)

    @property
    def buffered(self) -> int:
        return len(self._buf)


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """Build a response to `request` per RFC 3261 §8.2.6 (Via, From, To, Call-ID, CSeq copied)."""
    copied = [(n, v) for n, v in request.headers if n in ("Via", "From", "Call-ID", "CSeq")]
    to = request.get("To") or ""
    if to_tag is not None and status > 100 and ";tag=" not in to.replace(" ", "").lower():
        to = f"{to};tag={to_tag}"
    copied.insert(2, ("To", to))
    resp = Response(status, reason, copied, body)
    for n, v in headers:
        resp.add(n, v)
    return resp
