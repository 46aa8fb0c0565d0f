"""The API's HTTP/1.1 server: httptools' parser under an asyncio protocol, calling a
synchronous handler once a request is whole.

Every API endpoint answers from memory without waiting (call control only starts SIP
work), so a request is handled inside `data_received`: no task, no ASGI messages, no
per-request timer. What it does, and what it refuses:

- Keep-alive and pipelining (answers in order), HTTP/1.0 with or without keep-alive,
  chunked request bodies (decoded by the parser), `Expect: 100-continue`, HEAD (headers
  only).
- A body over `max_body` bytes is not kept: a Content-Length over it is answered at once
  and the connection closed; a chunked body over it is read to its end and dropped, and
  the connection stays usable. Either way the handler sees `too_large` (the API answers
  its errno 10002 in its envelope).
- Request line and headers over `MAX_HEAD` bytes: 431, closed; a request that does not
  parse: 400, closed.
- Deadlines (checked twice a second by one timer for all connections): with a guard
  (`ippbx.api.guard`), a new connection must start a request and a request must arrive
  whole within `request_timeout`; an idle keep-alive connection is closed after
  `KEEP_ALIVE` seconds. With a guard, connections over its caps are closed as soon as
  they are accepted.
- Flow control: while the client does not read what it asked for (the transport's write
  buffer is full), its connection is not read either, so one connection holds at most
  one answer in memory; a client that reads nothing for `SEND_TIMEOUT` seconds meanwhile
  is cut, one that reads slowly is not (the keep-alive time starts once it has all).
- A large answer (a list of pieces) is written without being joined.
- A streamed answer (`HttpResponse.stream`, the console's server-sent events) keeps its
  connection: the head goes out without a length, then whatever the handler's `Stream`
  is given, until either side closes it. Such a connection has no deadline; a client
  that lets more than `STREAM_BUFFER` bytes pile up unread is cut.

Header names go out exactly as the handler gives them (the vendor's
`Access-control-allow-origin`). A `Date` header is added; no `Server` header.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING, cast
from urllib.parse import unquote

import httptools

if TYPE_CHECKING:
    from ippbx.api.guard import HttpGuard

log = logging.getLogger(__name__)

MAX_HEAD = 64 * 1024
"""Largest request line plus headers, in bytes (431 beyond)."""
KEEP_ALIVE = 5.0
"""Seconds an idle keep-alive connection stays open."""
SEND_TIMEOUT = 30.0
"""Seconds a client may go without reading while an answer waits to be sent to it (each
time it reads enough for the rest to fit the buffer, it gets this long again)."""
SWEEP_EVERY = 0.5
"""How often (seconds) the deadlines of all connections are checked."""
HANDSHAKE_TIMEOUT = 10.0
"""Seconds a TLS handshake may take."""
STREAM_BUFFER = 1 << 20
"""Bytes a streamed answer may have waiting for its client before the connection is cut."""

Headers = Sequence[tuple[bytes, bytes]]


@dataclass(slots=True)
class HttpRequest:
    """One whole request as the handler sees it."""

    method: str
    path: str  # percent-decoded
    query: bytes  # raw, without the `?`
    headers: list[tuple[bytes, bytes]]  # names in lowercase
    body: bytes
    client: str  # the peer's address
    too_large: bool = False  # the body was over the limit and was dropped


@dataclass(slots=True)
class HttpResponse:
    """What the handler answers: status, headers (without Content-Length) and the body,
    whole or as pieces to send one after the other."""

    status: int
    headers: Headers
    body: bytes | Sequence[bytes] = b""
    size: int = -1  # the body's length when given as pieces
    # a streamed answer: called with the open `Stream` once the head is sent
    stream: Callable[[Stream], None] | None = None

    def length(self) -> int:
        if isinstance(self.body, bytes):
            return len(self.body)
        return self.size if self.size >= 0 else sum(map(len, self.body))


class Stream:
    """The open body of a streamed answer: `send(piece)` writes at once; `on_close` (set
    by whoever holds the stream) is called once when the client goes or the server stops.
    """

    __slots__ = ("_conn", "on_close", "closed")

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self.on_close: Callable[[], None] | None = None
        self.closed = False

    def send(self, piece: bytes) -> bool:
        """Write `piece`; False (and nothing written) once the stream is closed. A client
        that has more than `STREAM_BUFFER` bytes unread is cut."""
        transport = self._conn.transport
        if self.closed or transport is None or transport.is_closing():
            return False
        if transport.get_write_buffer_size() > STREAM_BUFFER:
            self._conn.close(abort=True)
            return False
        transport.write(piece)
        return True

    def close(self) -> None:
        """End the answer (the connection closes)."""
        self._conn.close()

    def _lost(self) -> None:
        if self.closed:
            return
        self.closed = True
        callback, self.on_close = self.on_close, None
        if callback is not None:
            try:
                callback()
            except Exception:
                log.exception("closing a streamed answer failed")


Handler = Callable[[HttpRequest], HttpResponse]

_STATUS_LINES: dict[int, bytes] = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode("latin-1") for s in HTTPStatus
}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_METHODS: dict[bytes, str] = {m.encode(): m for m in ("GET", "POST", "HEAD", "OPTIONS", "PUT",
                                                       "DELETE", "PATCH")}


class _Date:
    """The `Date` header line, made once a second."""

    def __init__(self) -> None:
        self._second = 0
        self._line = b""

    def line(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._line = b"Date: " + formatdate(now, usegmt=True).encode("latin-1") + b"\r\n"
        return self._line


@dataclass(eq=False)
class HttpServer:
    """The connections of one listener and their shared settings; `connection()` is the
    protocol factory for `loop.create_server`."""

    handler: Handler
    max_body: int
    guard: HttpGuard | None = None
    connections: set[_Connection] = field(default_factory=set)
    date: _Date = field(default_factory=_Date)
    _sweeper: asyncio.TimerHandle | None = None

    def connection(self) -> _Connection:
        return _Connection(self)

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().call_later(SWEEP_EVERY, self._sweep)

    def close_all(self, tls: bool) -> None:
        """Stop the deadline timer and close every connection (TLS ones, and those with an
        answer their client does not read, at once: a TLS close would wait for the peer's
        close_notify, which an idle client never sends; a plain one for the reader)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self.connections):
            conn.close(abort=tls or conn.write_paused)

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for conn in [c for c in self.connections if 0 < c.deadline <= now]:
            conn.expired()
        self._sweeper = loop.call_later(SWEEP_EVERY, self._sweep)


class _Connection(asyncio.Protocol):
    """One client connection."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.client = ""
        self.admitted = False
        self.deadline = 0.0  # loop time past which the connection is closed (0: none)
        self.in_request = False
        self.served = 0  # requests answered on this connection
        self.closing = False
        self.write_paused = False
        self.stream: Stream | None = None  # a streamed answer in progress
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0  # the head's length as the parser hands it over
        self._length: bytes | None = None  # Content-Length as sent
        self._expect = b""  # Expect as sent
        self._body: list[bytes] = []
        self._size = 0
        self._head_size = 0  # bytes received while a head is awaited or incomplete
        self._in_head = True
        self._too_large = False
        self._connection_header = False  # the request has one (HTTP/1.0 keep-alive)
        self._loop = asyncio.get_running_loop()

    # -- connection ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (uvloop's is no subclass)
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if peer else ""
        guard = self.server.guard
        if guard is not None:
            refused = guard.admit(self.client)
            if refused is not None:
                guard.record(refused, self.client)
                transport.abort()
                return
            self.admitted = True
            self.deadline = self._loop.time() + guard.request_timeout
        else:
            self.deadline = self._loop.time() + KEEP_ALIVE
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.closing = True
        if self.stream is not None:
            self.stream._lost()
        if self.admitted and self.server.guard is not None:
            self.server.guard.release(self.client)
            self.admitted = False

    def pause_writing(self) -> None:
        self.write_paused = True
        self.deadline = self._loop.time() + SEND_TIMEOUT
        if self.transport is not None and not self.closing:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.deadline = self._loop.time() + KEEP_ALIVE
        if self.transport is not None and not self.closing:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.closing or self.stream is not None:  # (a streaming client has its answer)
            return
        if self._in_head:  # (the parser keeps an unfinished head line whole: count it here)
            self._head_size += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(400, b"Upgrade is not supported.")
        except httptools.HttpParserError:
            self._refuse(400, b"Invalid HTTP request received.")
        if self._in_head and self._head_size > MAX_HEAD:
            self._refuse(431, b"Request header fields too large.")

    def close(self, abort: bool = False) -> None:
        self.closing = True
        self.deadline = 0.0
        if self.transport is not None and not self.transport.is_closing():
            if abort:
                self.transport.abort()
            else:
                self.transport.close()

    def expired(self) -> None:
        guard = self.server.guard
        if self.write_paused:  # (a close would wait for the client to read it all)
            if guard is not None:
                guard.record("answer not read in time", self.client)
            self.close(abort=True)
            return
        if guard is not None and (self.in_request or not self.served):
            guard.record("request not received in time", self.client)
        self.close()

    # -- parser callbacks ---------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.in_request = True
        self._url = b""
        self._headers = []
        self._head_bytes = 0
        self._length = None
        self._expect = b""
        self._connection_header = False
        self._body = []
        self._size = 0
        self._too_large = False
        guard = self.server.guard
        if not self.write_paused:  # (paused: the send deadline stays)
            self.deadline = self._loop.time() + guard.request_timeout if guard else 0.0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        self._headers.append((name, value))
        self._head_bytes += len(name) + len(value) + 4
        if name == b"content-length":
            self._length = value
        elif name == b"expect":
            self._expect = value
        elif name == b"connection":
            self._connection_header = True

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_size = 0
        if self._head_bytes > MAX_HEAD:
            self._refuse(431, b"Request header fields too large.")  # (arrived whole at once)
            raise httptools.HttpParserCallbackError("head too large")
        declared = _content_length(self._length)
        if declared is not None and declared > self.server.max_body:
            self._too_large = True
            self._answer(close=True)  # answered now; the body is not read
            return
        if self._expect and self._expect.strip().lower() == b"100-continue" \
                and self.transport is not None and not self._http10():
            self.transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        if self._too_large or self.closing:
            return
        self._size += len(body)
        if self._size > self.server.max_body:
            self._too_large = True
            self._body = []
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._in_head = True  # (the next request's head, if any)
        self._head_size = 0
        if self.closing:
            return
        self._answer(close=not self.parser.should_keep_alive())

    # -- answers ------------------------------------------------------------------------
    def _answer(self, close: bool) -> None:
        transport = self.transport
        if transport is None or self.closing or self.stream is not None:
            return
        self.in_request = False
        self.served += 1
        url = self._url
        if url[:1] == b"/" and b"#" not in url:  # (origin form, the usual one)
            raw_path, _, query = url.partition(b"?")
        else:
            raw_path, query = _split_target(url)
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(raw_path.decode("utf-8", "replace"))
        raw_method = self.parser.get_method()
        method = _METHODS.get(raw_method) or raw_method.decode("latin-1")
        body = self._body
        request = HttpRequest(method, path, query, self._headers,
                              body[0] if len(body) == 1 else b"".join(body),
                              self.client, self._too_large)
        self._body = []
        try:
            response = self.server.handler(request)
        except Exception:
            log.exception("HTTP handler failed on %s %s", method, path)
            response = HttpResponse(500, ((b"Content-Type", b"text/plain; charset=utf-8"),),
                                    b"Internal Server Error")
            close = True
        if response.stream is not None and method != "HEAD":
            self._start_stream(response)
            return
        self._write(response, close, head_only=method == "HEAD")
        if close:
            self.close()
        elif not self.write_paused:  # (paused: SEND_TIMEOUT runs, see pause_writing)
            self.deadline = self._loop.time() + KEEP_ALIVE

    def _write(self, response: HttpResponse, close: bool, head_only: bool = False) -> None:
        transport = self.transport
        assert transport is not None
        lines = [_head(response.status, response.headers),
                 b"Content-Length: %d\r\n" % response.length()]
        lines.append(self.server.date.line())
        if close:
            lines.append(b"Connection: close\r\n")
        elif self._connection_header and self._http10():  # (1.0 keeps alive when asked)
            lines.append(b"Connection: keep-alive\r\n")
        lines.append(b"\r\n")
        body = response.body
        if head_only:
            transport.write(b"".join(lines))
        elif isinstance(body, bytes):
            lines.append(body)
            transport.write(b"".join(lines))
        else:
            transport.write(b"".join(lines))
            transport.writelines(body)

    def _start_stream(self, response: HttpResponse) -> None:
        transport = self.transport
        assert transport is not None and response.stream is not None
        self.deadline = 0.0  # (the stream lasts as long as both sides want)
        transport.write(b"".join((_head(response.status, response.headers),
                                  self.server.date.line(), b"Connection: close\r\n\r\n")))
        stream = self.stream = Stream(self)
        try:
            response.stream(stream)
        except Exception:
            log.exception("starting a streamed answer failed")
            self.close()

    def _http10(self) -> bool:
        return self.parser.get_http_version() == "1.0"

    def _refuse(self, status: int, text: bytes) -> None:
        if self.transport is not None and not self.closing:
            self._write(HttpResponse(status, ((b"Content-Type", b"text/plain; charset=utf-8"),),
                                     text), close=True)
        self.close()


_HEADS: dict[tuple[int, Headers], bytes] = {}


def _head(status: int, headers: Headers) -> bytes:
    """The status line and `headers` as bytes (kept for the constant header sets)."""
    key = (status, headers)
    head = _HEADS.get(key) if isinstance(headers, tuple) else None
    if head is None:
        lines = [_STATUS_LINES.get(status) or f"HTTP/1.1 {status} Unknown\r\n".encode()]
        lines += [name + b": " + value + b"\r\n" for name, value in headers]
        head = b"".join(lines)
        if isinstance(headers, tuple) and len(_HEADS) < 256:
            _HEADS[key] = head
    return head


def _split_target(url: bytes) -> tuple[bytes, bytes]:
    """(path, query) of a request target: origin form at once, any other by the parser."""
    if url.startswith(b"/") and b"#" not in url:
        path, _, query = url.partition(b"?")
        return path, query
    if not url:
        return b"/", b""
    try:
        parsed = httptools.parse_url(url)
    except httptools.HttpParserInvalidURLError:
        return url, b""
    return parsed.path or b"/", parsed.query or b""


def _content_length(value: bytes | None) -> int | None:
    """A Content-Length's value as a number (None: absent or not a number)."""
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit() or len(value) > 20:
        return None
    return int(value)


async def serve(
    server: HttpServer, sock: socket.socket, context: ssl.SSLContext | None
) -> asyncio.AbstractServer:
    """Listen on the bound socket `sock` (HTTPS with `context`); returns the asyncio server."""
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(
        server.connection, sock=sock, ssl=context,
        ssl_handshake_timeout=HANDSHAKE_TIMEOUT if context is not None else None,
        backlog=1024,
    )
    server.start()
    return listener
