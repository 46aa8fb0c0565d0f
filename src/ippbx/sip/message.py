"""SIP messages: parse from bytes, inspect and edit headers, serialize back to bytes.

`parse_message` takes one UDP datagram; `StreamParser` frames a TCP byte stream by
Content-Length. Header values stay raw strings and are parsed on demand (see
`headers.py`); header names are matched case-insensitively and compact forms (`v`, `f`,
`i`…) are expanded. The body passes through untouched. Anything malformed raises
`SipParseError` (`status` says which response a request deserves: 400, 505, 513, 501).

What `parse_message` checks (cheaply, once per message): the start line (exactly three
SP-separated parts, a token method, a Request-URI with a scheme and, for sip/sips, no
`?headers`, version SIP/2.0 else 505; a three-digit status code), header names, folded
lines, the mandatory headers and their multiplicity, Content-Length, and CSeq (parsed:
number < 2**31, method equal to the request's). Structured headers (Via, From, To,
Contact) stay raw text until a property (`vias`, `from_`, `to`, `contacts`) parses them;
those properties raise `SipParseError` (a `HeaderError`, status 400) and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ippbx.sip.errors import SipParseError
from ippbx.sip.headers import HeaderError, NameAddr, Via, parse_cseq, split_list
from ippbx.sip.uri import SipUri, UriError, is_scheme

__all__ = [
    "SipParseError",
    "Message",
    "Request",
    "Response",
    "Outgoing",
    "Sent",
    "SentResponse",
    "parse_message",
    "StreamParser",
    "make_response",
    "canonical_name",
    "REASONS",
    "KNOWN_METHODS",
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
_CANON.update({name: name for name in _KNOWN})  # exact spellings hit on the first lookup
_CANON.update({
    "v": "Via", "f": "From", "t": "To", "i": "Call-ID", "m": "Contact", "l": "Content-Length",
    "c": "Content-Type", "e": "Content-Encoding", "k": "Supported", "s": "Subject",
    "o": "Event", "r": "Refer-To", "b": "Referred-By", "u": "Allow-Events",
    "x": "Session-Expires", "y": "Identity",
})
_KNOWN_COUNT = len(_CANON)
_AS_IS = {canon: canon for canon in _CANON.values()}  # (a name already canonical: no lower())

# Headers whose value is a comma-separated list (RFC 3261 §7.3.1); others never split.
_LIST_HEADERS = frozenset({
    "Via", "Route", "Record-Route", "Contact", "Allow", "Supported", "Require",
    "Proxy-Require", "Unsupported", "Accept", "Accept-Encoding", "Accept-Language",
    "Content-Encoding", "Allow-Events", "Call-Info", "Alert-Info", "Error-Info", "Warning",
    "In-Reply-To", "Path", "P-Asserted-Identity", "Diversion", "Reason",
})
# Headers a message may carry at most once.
_SINGLE = ("From", "To", "Call-ID", "CSeq", "Content-Length", "Max-Forwards")
_SINGLE_SET = frozenset(_SINGLE)
_REQUIRED = ("Via", "From", "To", "Call-ID", "CSeq")

# Methods this stack knows; a request with another method whose CSeq method differs is
# answered 501 rather than 400 (RFC 4475 §3.1.2.18).
KNOWN_METHODS = frozenset({
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE",
    "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE",
})

_TOKEN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")


def canonical_name(name: str) -> str:
    """The canonical spelling of a header name (compact forms expanded)."""
    canon = _AS_IS.get(name)
    if canon is not None:
        return canon
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


class Sent:
    """A request kept only as the bytes it went out as, to send again (the ACK for a 2xx,
    re-sent when that 2xx is retransmitted): a held call keeps this, not a parsed
    request. Transports send it like a message (`to_bytes()`)."""

    __slots__ = ("data", "cseq")

    def __init__(self, data: bytes, cseq: int) -> None:
        self.data = data
        self.cseq = cseq  # its CSeq number

    def to_bytes(self) -> bytes:
        return self.data

    def __repr__(self) -> str:
        return f"<Sent {self.data.split(b' ', 1)[0].decode(errors='replace')} CSeq {self.cseq}>"


class SentResponse:
    """A response kept only as the bytes it went out as: what a server transaction sends
    again when its request is retransmitted (a finished one lingers up to 32 s, and a busy
    PBX has thousands). Besides the bytes it keeps the status, its top Via entry (where it
    goes: `wire.reply_address`) and its To header text (the tag a CANCEL's 200 reuses),
    both strings shared with the response it was made from. Transports send it like a
    message (`to_bytes()`)."""

    __slots__ = ("data", "status", "via", "to")

    def __init__(self, response: Response) -> None:
        self.data = response.to_bytes()
        self.status = response.status
        via = to = ""
        for name, value in response.headers:  # (one pass: the first Via line and the To)
            if name == "Via":
                if not via:
                    via = value
            elif name == "To" and not to:
                to = value
        if "," in via:  # (several entries on the line: the top one)
            via = (split_list(via) or [""])[0]
        self.via = via.strip()
        self.to = to

    def to_bytes(self) -> bytes:
        return self.data

    @property
    def to_tag(self) -> str | None:
        """The To tag (None if none, or if the To header does not parse)."""
        try:
            return NameAddr.parse(self.to).tag
        except Exception:  # (peer-controlled text: see Message._cached)
            return None

    def __repr__(self) -> str:
        return f"<SentResponse {self.status} ({len(self.data)} bytes)>"


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
        key = _AS_IS.get(name) or canonical_name(name)  # (most callers name it canonically)
        for n, v in self.headers:
            if n == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of header `name`, list headers split on their commas."""
        key = _AS_IS.get(name) or canonical_name(name)
        found: list[str] = []
        if key in _LIST_HEADERS:
            for n, v in self.headers:  # (loops, not comprehensions: no call per use)
                if n == key:
                    found += split_list(v)
        else:
            for n, v in self.headers:
                if n == key:
                    found.append(v)
        return found

    def has(self, name: str) -> bool:
        key = _AS_IS.get(name) or canonical_name(name)
        for n, _ in self.headers:  # (a loop: twice as fast as any() over a generator)
            if n == key:
                return True
        return False

    def set(self, name: str, value: str) -> None:
        """Replace every `name` header with one holding `value` (where the first one was)."""
        key = _AS_IS.get(name) or canonical_name(name)
        self._cache.clear()
        for i, (n, _) in enumerate(self.headers):
            if n == key:
                self.headers[i] = (key, value)
                self.headers[i + 1 :] = [h for h in self.headers[i + 1 :] if h[0] != key]
                return
        self.headers.append((key, value))

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        """Add a `name` header; `first=True` puts it above the existing ones of that name."""
        key = _AS_IS.get(name) or canonical_name(name)
        self._cache.clear()
        if first:
            for i, (n, _) in enumerate(self.headers):
                if n == key:
                    self.headers.insert(i, (key, value))
                    return
        self.headers.append((key, value))

    def remove(self, name: str) -> None:
        key = _AS_IS.get(name) or canonical_name(name)
        self._cache.clear()
        self.headers = [h for h in self.headers if h[0] != key]

    def remove_first(self, name: str) -> None:
        """Remove the first value of a (list) header, e.g. the top Via."""
        key = _AS_IS.get(name) or canonical_name(name)
        self._cache.clear()
        for i, (n, v) in enumerate(self.headers):
            if n == key:
                items = split_list(v) if key in _LIST_HEADERS else [v]
                if len(items) > 1:
                    self.headers[i] = (key, ", ".join(items[1:]))
                else:
                    del self.headers[i]
                return

    def set_top_via(self, via: Via) -> None:
        """Write `via`, the first of `vias` changed in place (a `received`/`rport` stamp),
        back as the top Via. Only the Via changed: the other parsed headers stay cached,
        and so does `vias` (whose first entry is `via`)."""
        headers, kept = self.headers, self._cache
        top = next((i for i, (n, _) in enumerate(headers) if n == "Via"), None)
        if top is not None and "," not in headers[top][1]:
            headers[top] = ("Via", str(via))  # (alone on its line, the usual case: in place)
        else:  # (several Vias on the line: split it; both calls clear the cache)
            kept = dict(kept)
            self.remove_first("Via")
            self.add("Via", str(via), first=True)
        vias = kept.get("vias")
        if not (isinstance(vias, list) and vias and vias[0] is via):
            kept.pop("vias", None)  # (not the parsed top Via: the Vias are parsed again)
        if kept is not self._cache:
            self._cache.update(kept)

    # -- parsed views (cached until the headers change) ---------------------------------
    # Each view looks in the cache first (a hit makes no call), and on a miss `_parsed`
    # reads the header and parses it (no closure made per view).
    def _parsed(self, key: str, header: str, parse: Callable[[str], Any],
                every: bool = False) -> Any:
        """Parse the first `header` (`every`: each of its entries, into a list), keep it
        as `key`. Anything a parser raises but SipParseError becomes a HeaderError."""
        try:
            if every:
                value: Any = [parse(item) for item in self.get_all(header)]
            else:
                value = parse(self.get(header) or "")
        except SipParseError:
            raise
        except Exception as exc:  # peer-controlled text: never let another type out
            raise HeaderError(f"malformed {key} header: {exc}") from exc
        self._cache[key] = value
        return value

    @property
    def call_id(self) -> str:
        return self.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        """(number, method) of the CSeq header; SipParseError if missing or malformed."""
        known = self._cache.get("cseq")
        if known is not None:
            return known  # type: ignore[return-value]
        return self._parsed("cseq", "CSeq", parse_cseq)

    @property
    def from_(self) -> NameAddr:
        known = self._cache.get("from")
        if known is not None:
            return known  # type: ignore[return-value]
        return self._parsed("from", "From", NameAddr.parse)

    @property
    def to(self) -> NameAddr:
        known = self._cache.get("to")
        if known is not None:
            return known  # type: ignore[return-value]
        return self._parsed("to", "To", NameAddr.parse)

    @property
    def vias(self) -> list[Via]:
        """Every Via entry, top first (several per header line are split)."""
        known = self._cache.get("vias")
        if known is not None:
            return known  # type: ignore[return-value]
        return self._parsed("vias", "Via", Via.parse, every=True)

    @property
    def top_via(self) -> Via:
        vias = self.vias
        if not vias:
            raise HeaderError("message has no Via")
        return vias[0]

    @property
    def contacts(self) -> list[NameAddr]:
        """Every Contact entry (`*` is a NameAddr whose uri is "*")."""
        known = self._cache.get("contacts")
        if known is not None:
            return known  # type: ignore[return-value]
        return self._parsed("contacts", "Contact", NameAddr.parse, every=True)

    # -- serialization ------------------------------------------------------------------
    def start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Serialize; Content-Length always states the body's real length."""
        lines = [self.start_line()]
        lines += [f"{n}: {v}" for n, v in self.headers if n != "Content-Length"]
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

    def sip_uri(self) -> SipUri:
        """The Request-URI parsed; SipParseError with status 416 for a non-SIP scheme."""
        try:
            return SipUri.parse(self.uri)
        except UriError as exc:
            scheme = self.uri.partition(":")[0].lower()
            if scheme not in ("sip", "sips"):
                raise SipParseError(str(exc), 416) from None
            raise

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
    return SipParseError(message, status)


def _check_request_uri(uri: str) -> None:
    colon = uri.find(":")
    if colon <= 0 or not is_scheme(uri[:colon]):
        raise _bad(f"bad Request-URI {uri[:80]!r}")
    if not uri.isprintable():
        raise _bad(f"control character in Request-URI {uri[:80]!r}")
    if uri[:colon].lower() in ("sip", "sips"):
        # `?headers` are not allowed in a Request-URI (RFC 3261 §19.1.5, RFC 4475 §3.1.2.11);
        # the user part may hold `?`, so only look after it.
        at = uri.rfind("@")
        if "?" in uri[(at if at != -1 else colon) + 1 :]:
            raise _bad(f"headers in Request-URI {uri[:80]!r}")


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _parse_start(start: str) -> Request | Response:
    if start.startswith("SIP/"):
        parts = start.split(" ", 2)
        if len(parts) < 2 or parts[0].upper() != "SIP/2.0":
            raise _bad(f"bad status line {start[:80]!r}")
        code = parts[1]
        if len(code) != 3 or not _is_digits(code) or code[0] not in "123456":
            raise _bad(f"bad status code in {start[:80]!r}")
        return Response(int(code), parts[2] if len(parts) == 3 else "")
    parts = start.split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise _bad(f"bad request line {start[:80]!r}")
    method, uri, version = parts
    if not _TOKEN.issuperset(method):
        raise _bad(f"bad method {method[:40]!r}")
    if version != "SIP/2.0" and version.upper() != "SIP/2.0":
        status = 505 if version.upper().startswith("SIP/") else 400
        raise _bad(f"unsupported version {version[:20]!r}", status)
    _check_request_uri(uri)
    return Request(method, uri)


def _parse_head(head: str) -> tuple[Request | Response, int | None]:
    """Parse the start line and headers; return the message and its Content-Length."""
    if "\r" in head:
        head = head.replace("\r\n", "\n")
        if "\r" in head:
            raise _bad("bare CR in the header block")
    lines = head.split("\n")
    msg = _parse_start(lines[0])
    headers = msg.headers
    canon = _CANON
    for line in lines[1:]:
        raw_name, colon, value = line.partition(":")  # (faster than find and two slices)
        if not colon or not raw_name or raw_name[0] in " \t":  # the rare lines
            if not line:
                raise _bad("empty line inside the header block")
            if line[0] not in " \t":
                raise _bad(f"header line without a name: {line[:40]!r}")
            if not headers:  # folded continuation of the previous header
                raise _bad("continuation line before any header")
            name, value = headers[-1]
            more = line.strip()
            headers[-1] = (name, f"{value} {more}" if value and more else value or more)
            continue
        name = canon.get(raw_name) or canon.get(raw_name.lower()) \
            or canonical_name(raw_name.rstrip(" \t"))
        headers.append((name, value.strip()))
    content_length: int | None = None
    cseq_value = call_id = None
    seen: dict[str, int] = {}
    has_via = False
    for name, value in headers:
        if name in _SINGLE_SET:
            if name in seen:
                raise _bad(f"more than one {name} header")
            seen[name] = 1
            if name == "Content-Length":
                if not _is_digits(value) or len(value) > 9:
                    raise _bad(f"bad Content-Length {value[:20]!r}")
                content_length = int(value)
            elif name == "CSeq":
                cseq_value = value
            elif name == "Call-ID":
                call_id = value
        elif name == "Via":
            has_via = True
    if not has_via or cseq_value is None or call_id is None \
            or "From" not in seen or "To" not in seen:
        missing = [n for n in _REQUIRED if n not in seen and not (n == "Via" and has_via)]
        raise _bad(f"missing {', '.join(missing)} header")
    if not call_id:
        raise _bad("empty Call-ID")
    cseq = parse_cseq(cseq_value)
    msg._cache["cseq"] = cseq
    if isinstance(msg, Request) and cseq[1] != msg.method:
        status = 400 if msg.method in KNOWN_METHODS else 501
        raise _bad(f"CSeq method {cseq[1]} does not match {msg.method}", status)
    return msg, content_length


def _find_head_end(data: bytes | bytearray, start: int = 0) -> tuple[int, int]:
    """Index of the blank line ending the header block and its length, or (-1, 0)."""
    crlf = data.find(b"\r\n\r\n", start)
    lf = data.find(b"\n\n", start, crlf if crlf != -1 else len(data))
    if lf != -1:
        if lf > start and data[lf - 1] == 13:  # "\r\n\n": CRLF line, then a bare LF
            return lf - 1, 3
        return lf, 2
    return (crlf, 4) if crlf != -1 else (-1, 0)


def parse_message(data: bytes) -> Request | Response:
    """Parse one datagram into a Request or Response; raise SipParseError if malformed.

    Bytes past Content-Length are ignored (RFC 3261 §18.3); a body shorter than
    Content-Length is an error (400). Without Content-Length the body is the rest.
    """
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
        if length < len(body):
            body = body[:length]
    msg.body = body
    return msg


class StreamParser:
    """Frames SIP messages out of a TCP byte stream (Content-Length is mandatory).

    `feed` returns every message completed by the new bytes. CRLF keep-alives between
    messages are skipped. Bytes that do not frame make the stream unusable: the messages
    framed before them are still returned (a valid request followed by garbage in one
    segment is not lost), `error` is set, `unparsed` holds the bytes from the bad message
    on (for an error response), and every later `feed` raises the error; the caller
    should stop reading and close the connection. `feed` raises at once only when the
    bad bytes come first.
    """

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self._buf = bytearray()
        self._max = max_message
        self._scanned = 0  # bytes of _buf already searched for the end of the headers
        # a parsed head whose body has not fully arrived: (message, body start, body end)
        self._pending: tuple[Request | Response, int, int] | None = None
        self._error: SipParseError | None = None

    def feed(self, data: bytes) -> list[Request | Response]:
        """Add bytes; return the complete messages now available (see the class doc).
        Raises SipParseError if the stream failed before any new message framed."""
        if self._error is not None:
            raise self._error
        self._buf += data
        out: list[Request | Response] = []
        try:
            self._frame(out)
        except SipParseError as exc:
            self._error = exc
            if not out:
                raise
        return out

    @property
    def error(self) -> SipParseError | None:
        """Why the stream stopped framing, once it did."""
        return self._error

    @property
    def unparsed(self) -> bytes:
        """The buffered bytes not framed into a message (after an error: from the bad
        message on)."""
        return bytes(self._buf)

    def _frame(self, out: list[Request | Response]) -> None:
        buf = self._buf
        while True:
            if self._pending is None:
                start = 0
                while buf.startswith(b"\r\n", start):  # keep-alive CRLFs between messages
                    start += 2
                if start:
                    del buf[:start]
                    self._scanned = 0
                if not buf:
                    return
                # resume the search a little before where the last one stopped
                end, sep = _find_head_end(buf, max(0, self._scanned - 3))
                if end == -1:
                    self._scanned = len(buf)
                    if len(buf) > self._max:
                        raise _bad("header block too large", 513)
                    return
                if end > self._max:
                    raise _bad("header block too large", 513)
                head = bytes(buf[:end]).decode("utf-8", "surrogateescape")
                msg, length = _parse_head(head)
                if length is None:
                    raise _bad("Content-Length is required on a stream transport")
                total = end + sep + length
                if total > self._max:
                    raise _bad("message too large", 513)
                self._pending = (msg, end + sep, total)
            msg, body_start, total = self._pending
            if len(buf) < total:
                return
            msg.body = bytes(buf[body_start:total])
            del buf[:total]
            self._pending = None
            self._scanned = 0
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
    """Build a response to `request` per RFC 3261 §8.2.6 (Via, From, To, Call-ID, CSeq copied).

    `to_tag` is added to To unless the status is 100 or To already has a tag. A 100
    also copies Timestamp (§8.2.6.1).
    """
    copied: list[tuple[str, str]] = []
    found: dict[str, str] = {}
    for header in request.headers:  # (one pass: the Vias, and the first of each other)
        name = header[0]
        if name == "Via":
            copied.append(header)
        elif name in _COPIED and name not in found:
            found[name] = header[1]
    to = found.get("To", "")
    if to_tag is not None and status > 100 and not _has_tag(request, to):
        to = f"{to};tag={to_tag}"
    if "From" in found:
        copied.append(("From", found["From"]))
    copied.append(("To", to))
    for name in ("Call-ID", "CSeq"):
        if name in found:
            copied.append((name, found[name]))
    if status == 100 and "Timestamp" in found:
        copied.append(("Timestamp", found["Timestamp"]))
    resp = Response(status, reason, copied, body)
    for n, v in headers:
        resp.add(n, v)
    return resp


_COPIED = frozenset({"From", "To", "Call-ID", "CSeq", "Timestamp"})


def _has_tag(request: Request, to: str) -> bool:
    try:
        return request.to.tag is not None  # (parsed once per request: 100, 180, 200…)
    except SipParseError:
        return ";tag=" in to.replace(" ", "").replace("\t", "").lower()


Outgoing = Request | Response | Sent | SentResponse
"""What a transport sends (`to_bytes()`): a message, or one kept as the bytes it went out as."""
