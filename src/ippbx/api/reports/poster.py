"""A lean HTTP/1.1 client that POSTs reports, each on a new connection or on one kept open
from the last report to the same receiver, and says how each went.

Why not httpx: at 500 calls/s an application logged in gets 3,000-4,000 reports a second,
all POSTed from the event loop that also runs SIP. httpx's connection pool, anyio and h11
cost several times what the POST itself does, so this module speaks the little HTTP a
report needs straight on an `asyncio.Protocol` (`loop.create_connection`, with `ssl=` and
`server_hostname` for `https://`).

The request is what the vendors' PBXs send:

    POST /path?query HTTP/1.1
    Host: host[:port]                    (the port only when not the scheme's default)
    Authorization: Basic …               (only when the URL holds user:password)
    Content-Type: application/json
    Accept: application/json
    User-Agent: <[reports] user_agent>
    Connection: close                    (keep-alive with `keep_alive`, see below)
    Content-Length: N

The path and query are percent-encoded where needed (spaces, non-ASCII, control
characters), so a URL cannot smuggle a header in. The parsed target and the request head
(all but the length) are cached per URL: a destination's reports all go to one URL.

The answer is read with httptools' response parser: interim 1xx heads (100 Continue,
103) are skipped; the final head (at most `max_head` bytes) decides the outcome, then the
body is read per `Content-Length`, chunked framing, or to the end of the connection,
counted and thrown away (at most `max_body` bytes), and the connection closed. What a
POST comes to (`Outcome`):

- refused, unreachable, no such host, a TLS handshake or certificate failure, a connect
  timeout, a URL that cannot be used → UNREACHABLE;
- after connecting: a head not complete within `timeout`, a connection closed before
  the head or mid-body, a malformed head, a head or body over its cap → FAILED;
- otherwise the status: 2xx DELIVERED, 4xx REJECTED, anything else FAILED (redirects
  are not followed). A body without `Content-Length` or chunked framing ends when the
  receiver closes; if it has not closed when the answer's time is up, the status decides
  all the same, so a receiver that keeps the connection open holds a lane no longer.

`timeout` bounds the connect (TLS handshake included) and, separately, the answer (from
the request written to its last byte). The connection is then aborted, not closed: a
close could wait on a peer that reads nothing. Cancelling `post()` (Delivery.stop
cancels its senders) aborts the connection and cancels its timer: nothing is left behind.

Connections (`keep_alive`, `[reports] keep_alive`): the vendors open a new connection per
report (`Connection: close`); with `keep_alive` the request asks for `keep-alive`, and a
connection whose answer was whole (framed by Content-Length or chunked) and did not say
`close` is kept, per receiver (host, port, TLS), for the next POST: about six times less
CPU per report than a new TCP connection. A kept connection the receiver closed while
idle is not used; one found closed by the POST itself (nothing answered) is given up and
the POST sent again on a new connection (at least once, as everywhere in delivery). A
receiver that leaves the second POST on a connection unanswered until `timeout` (a
one-request server that neither closes nor reads on) is remembered: it gets a new
connection per report, with `Connection: close`, from then on. Connections idle for
`KEEP_IDLE` are closed; at most `MAX_IDLE` are kept per receiver; `close()` closes them.

Pipelining (`pipelining`, with `keep_alive`; `post_many`): several POSTs written at once on
one connection, their answers read in order by the same parser, one timer for all. A
receiver that closes after an answer while later POSTs wait, or leaves them unanswered
until `timeout`, has those POSTs sent again one at a time (at least once) and gets no
pipelines from then on (`pipelines()` says whether a URL gets them).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
from dataclasses import dataclass
from enum import Enum
from functools import partial
from typing import cast
from urllib.parse import quote, unquote, urlsplit

import httptools

log = logging.getLogger(__name__)

MAX_HEAD = 16 * 1024
"""Bytes of a response head (status line and headers) read at most."""
MAX_BODY = 1024 * 1024
"""Bytes of a response body read (and thrown away) at most."""
MAX_TARGETS = 256
"""URLs whose parsed target is kept (one per destination in practice)."""
KEEP_IDLE = 1.0
"""Seconds a connection kept open for the next report may stay idle (then it is closed;
reports a second or more apart each get a new connection)."""
MAX_IDLE = 16
"""Connections kept open per receiver (host, port, TLS) at most."""

_PATH_SAFE = "/:@!$&'()*+,;=-._~%"
_QUERY_SAFE = _PATH_SAFE + "?"
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_:")


class Outcome(Enum):
    """What one POST of a report came to."""

    DELIVERED = "delivered"
    REJECTED = "rejected"  # a 4xx: the receiver does not want this report
    FAILED = "failed"  # a 5xx, a read timeout, a broken answer: worth another try
    UNREACHABLE = "unreachable"  # nothing listening, no route: the destination is down


def outcome_of(status: int) -> Outcome:
    """The outcome a final status means."""
    if 200 <= status < 300:
        return Outcome.DELIVERED
    return Outcome.REJECTED if 400 <= status < 500 else Outcome.FAILED


@dataclass(frozen=True, slots=True)
class Target:
    """A report URL, parsed once: where to connect and the request head but its length."""

    host: str  # for create_connection: no brackets
    port: int
    tls: bool
    server_hostname: str | None
    head: bytes  # the request up to "Content-Length: ", with `Connection: close`
    head_kept: bytes  # the same with `Connection: keep-alive`
    label: str  # for log lines: no user:password, no query


def parse_target(url: str, user_agent: str) -> Target | None:
    """The target of `url`, or None if it cannot be used (not http(s), no host, bad port,
    characters no host name has)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname  # lower case, brackets gone
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    if not set(host) <= _HOST_CHARS:
        return None
    tls = scheme == "https"
    default = 443 if tls else 80
    port = default if port is None else port
    if not 0 < port < 65536:
        return None
    shown = f"[{host}]" if ":" in host else host
    if port != default:
        shown += f":{port}"
    path = quote(parts.path or "/", safe=_PATH_SAFE)
    if not path.startswith("/"):
        path = "/" + path
    target = path + ("?" + quote(parts.query, safe=_QUERY_SAFE) if parts.query else "")
    agent = "".join(c for c in user_agent if c >= " " and c != "\x7f")
    lines = [f"POST {target} HTTP/1.1", f"Host: {shown}"]
    if parts.username is not None or parts.password is not None:
        userinfo = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        lines.append("Authorization: Basic "
                     + base64.b64encode(userinfo.encode("utf-8")).decode("ascii"))
    lines += ["Content-Type: application/json", "Accept: application/json",
              f"User-Agent: {agent}"]
    head = "\r\n".join(lines).encode("utf-8")
    return Target(host, port, tls, host if tls else None,
                  head + b"\r\nConnection: close\r\nContent-Length: ",
                  head + b"\r\nConnection: keep-alive\r\nContent-Length: ",
                  f"{scheme}://{shown}{parts.path or '/'}")


class _Link(asyncio.Protocol):
    """One connection to a receiver, answering the POSTs of one write at a time (one, or
    several pipelined): each answer is read with httptools' response parser (interim 1xx
    answers, Content-Length and chunked framing are its work), its outcome appended to
    `outcomes`; the future `begin()` gave is resolved once every answer is in or the
    connection can give no more (then `outcomes` is shorter than the POSTs written)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_head: int, max_body: int) -> None:
        self.loop = loop
        self.parser = httptools.HttpResponseParser(self)
        self.max_head, self.max_body = max_head, max_body
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] | None = None
        self.expect = 0  # answers the current write waits for
        self.outcomes: list[Outcome] = []  # … and those that came, in order
        self.uses = 0  # writes of POSTs sent on it
        self.idle_since = 0.0  # loop time it went back to the pool
        self.closed = False  # the receiver closed it or it broke
        self.expired = False  # answers did not come in time
        self.kept = False  # the last answer was whole and lets the connection be used again
        self.received = 0  # bytes received for the current write
        self.head = 0  # bytes received while the current final head is not complete
        self.status = 0  # the current answer's status, once its head is in
        self.framed = False  # its body has a Content-Length or chunked framing
        self.length = -1  # its Content-Length, if it gave one
        self.body = 0  # body bytes seen
        self.why = ""  # for the debug log

    def begin(self, answers: int = 1) -> asyncio.Future[None]:
        """A write of `answers` POSTs goes out on this connection: the future of their
        answers."""
        self.uses += 1
        self.kept = False
        self.expect, self.outcomes = answers, []
        self.received = 0
        self._next_answer()
        self.done = self.loop.create_future()
        return self.done

    def _next_answer(self) -> None:
        self.head = self.status = self.body = 0
        self.framed, self.length, self.why = False, -1, ""

    def reusable(self) -> bool:
        """Whether another POST may go out on this connection now."""
        return self.kept and not self.closed and self.transport is not None \
            and not self.transport.is_closing()

    def fresh(self, oldest: float) -> bool:
        """Reusable, and idle since after `oldest` (loop time)."""
        return self.idle_since > oldest and self.reusable()

    # -- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (uvloop's is no subclass)

    def data_received(self, data: bytes) -> None:
        if self.done is None or self.done.done():  # (bytes nobody asked for: not reused)
            self.closed = True
            return
        self.received += len(data)
        if not self.status:  # (an unfinished head line is kept whole by the parser)
            self.head += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.fail("malformed answer")
        if not self.status and self.head > self.max_head:
            self.fail("head too large")

    def eof_received(self) -> bool | None:
        self.closed = True
        self._ended("closed")
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._ended(type(exc).__name__ if exc is not None else "closed")

    # -- parser callbacks -----------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length":
            self.framed = True
            self.length = int(value) if value.strip().isdigit() else -1
        elif name == b"transfer-encoding":
            self.framed = True

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:  # interim: the final answer follows
            self.framed, self.length, self.head = False, -1, 0
            return
        self.status = status
        if self.length > self.max_body:
            self.fail("body too large")

    def on_body(self, body: bytes) -> None:
        self.body += len(body)
        if self.body > self.max_body:
            self.fail("body too large")

    def on_message_complete(self) -> None:
        if self.done is None or self.done.done():  # (an answer nobody asked for)
            self.closed = True
        elif self.status:
            self.kept = self.framed and self.parser.should_keep_alive()
            self.answer(outcome_of(self.status))
            if not self.kept:
                self.closed = True
                self.settle()  # (nothing more comes on it)

    # -- outcomes -------------------------------------------------------------------------
    def answer(self, outcome: Outcome, why: str = "") -> None:
        """The current answer came to `outcome`; the next one is read (or all are in)."""
        if self.done is None or self.done.done():
            return
        self.outcomes.append(outcome)
        if why:
            self.why = why
        if len(self.outcomes) >= self.expect:
            self.done.set_result(None)
        else:
            self._next_answer()

    def settle(self, why: str = "") -> None:
        """No more answers come: the write is over with the outcomes it has."""
        if self.done is not None and not self.done.done():
            self.why = self.why or why
            self.done.set_result(None)

    def fail(self, why: str) -> None:
        """The current answer is broken: FAILED, and the connection is given up."""
        self.closed = True
        self.answer(Outcome.FAILED, why)
        self.settle()

    def timed_out(self) -> None:
        self.closed = self.expired = True
        if self.status and not self.framed:
            self.answer(outcome_of(self.status))  # the body never ended: the status decides
        elif self.status or (self.received and not self.outcomes):
            self.answer(Outcome.FAILED, "read timeout")
        self.settle("read timeout")

    def _ended(self, how: str) -> None:
        if self.status and not self.framed:
            self.answer(outcome_of(self.status))  # a body that ends with the connection
        elif self.status:
            self.answer(Outcome.FAILED, f"{how} mid-body")
        self.settle(f"{how} before an answer")


_Key = tuple[str, int, bool]  # host, port, TLS: connections to one receiver


class Poster:
    """POSTs reports: `await poster(url, body)` → `Outcome` (see the module docstring)."""

    def __init__(self, *, timeout: float = 5.0, user_agent: str = "WebAPI",
                 tls_verify: bool = True, tls_ca: str = "", keep_alive: bool = False,
                 pipelining: bool = False, max_head: int = MAX_HEAD,
                 max_body: int = MAX_BODY) -> None:
        self.timeout = timeout
        self.user_agent = user_agent
        self.tls_verify, self.tls_ca = tls_verify, tls_ca
        self.keep_alive = keep_alive
        self.pipelining = pipelining
        self.max_head, self.max_body = max_head, max_body
        self.opened = 0  # connections opened (for tests and benchmarks)
        self.pipelined = 0  # POSTs written together with others (the same)
        self._targets: dict[str, Target | None] = {}
        self._ssl: ssl.SSLContext | None = None
        self._idle: dict[_Key, list[_Link]] = {}  # connections kept open, newest last
        self._single: set[_Key] = set()  # receivers that answer one POST per connection
        self._unpipelined: set[_Key] = set()  # receivers that leave pipelined POSTs unanswered
        self._sweeper: asyncio.TimerHandle | None = None
        if tls_ca and tls_verify:
            self.ssl_context()  # a CA file that cannot be loaded shows at start

    def ssl_context(self) -> ssl.SSLContext:
        """The client context for `https://` receivers (made on first use): the system's
        CAs, or `tls_ca`; no checks at all when `tls_verify` is off."""
        if self._ssl is None:
            from ippbx.certs import client_context  # (cryptography: only for https://)

            self._ssl = client_context(self.tls_verify, self.tls_ca if self.tls_verify else "")
        return self._ssl

    def target(self, url: str) -> Target | None:
        """The parsed `url` (cached)."""
        try:
            return self._targets[url]
        except KeyError:
            pass
        if len(self._targets) >= MAX_TARGETS:
            self._targets.clear()
        target = self._targets[url] = parse_target(url, self.user_agent)
        return target

    async def __call__(self, url: str, body: bytes) -> Outcome:
        return await self.post(url, body)

    def pipelines(self, url: str) -> bool:
        """Whether POSTs to `url` may go several to a write (`post_many`): connections
        are kept, pipelining is on, and its receiver has not shown it cannot."""
        target = self.target(url) if self.pipelining and self.keep_alive else None
        if target is None:
            return False
        key = (target.host, target.port, target.tls)
        return key not in self._single and key not in self._unpipelined

    async def post(self, url: str, body: bytes) -> Outcome:
        """POST `body` (JSON) to `url`, on a connection kept from an earlier POST when
        there is one, else on a new one; what it came to."""
        return (await self.post_many(url, [body]))[0]

    async def post_many(self, url: str, bodies: list[bytes]) -> list[Outcome]:
        """POST `bodies` to `url` in order: more than one pipelined in one write on one
        connection (HTTP/1.1; when `pipelines(url)`, else one after the other); what
        each came to. A POST left unanswered because the receiver closed the connection
        after an earlier answer, or leaves pipelined POSTs unanswered, is sent again on
        its own (that receiver then gets no more pipelines)."""
        target = self.target(url)
        if target is None:
            log.debug("report to %r: not a usable http(s) URL", url[:80])
            return [Outcome.UNREACHABLE] * len(bodies)
        key = (target.host, target.port, target.tls)
        if len(bodies) > 1 and not self.pipelines(url):
            return [await self.post(url, body) for body in bodies]
        reuse = self.keep_alive and key not in self._single
        link = self._take(key) if reuse else None
        outcomes: list[Outcome] | None = None
        if link is not None:
            outcomes = await self._exchange(link, key, target, bodies, reuse)
            # None: the receiver had closed the kept connection, or serves one POST per
            # connection: the reports go on a new one
            reuse = key not in self._single
        if outcomes is None:
            try:
                link = await self._connect(target)
            except (OSError, ValueError) as exc:  # (TimeoutError, ssl.SSLError: OSErrors)
                log.debug("report to %s: %s", target.label, type(exc).__name__)
                return [Outcome.UNREACHABLE] * len(bodies)
            outcomes = await self._exchange(link, key, target, bodies, reuse) or []
        if len(outcomes) < len(bodies):  # (a pipeline: one POST alone always has its outcome)
            if key not in self._unpipelined:
                self._unpipelined.add(key)
                log.info("report receiver %s left pipelined POSTs unanswered: one POST at "
                         "a time from now on", target.label)
            outcomes += [await self.post(url, body) for body in bodies[len(outcomes):]]
        return outcomes

    def close(self) -> None:
        """Close the connections kept open."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for links in self._idle.values():
            for link in links:
                _abort(link)
        self._idle.clear()

    def idle(self) -> int:
        """Connections kept open for the next POST (and still open)."""
        return sum(link.reusable() for links in self._idle.values() for link in links)

    # -- connections --------------------------------------------------------------------
    async def _connect(self, target: Target) -> _Link:
        loop = asyncio.get_running_loop()
        factory = partial(_Link, loop, self.max_head, self.max_body)
        async with asyncio.timeout(self.timeout):
            if target.tls:
                _, link = await loop.create_connection(
                    factory, target.host, target.port, ssl=self.ssl_context(),
                    server_hostname=target.server_hostname)
            else:
                _, link = await loop.create_connection(factory, target.host, target.port)
        self.opened += 1
        return link

    async def _exchange(self, link: _Link, key: _Key, target: Target, bodies: list[bytes],
                        reuse: bool) -> list[Outcome] | None:
        """The POSTs of `bodies` in one write on `link`: the outcomes of those answered
        (fewer than `bodies` when the connection ended or the time ran out first; a
        single POST left unanswered is FAILED), or None when nothing at all came back on
        a kept connection (the receiver had closed it, or does not answer a second POST
        on a connection): the POSTs are to be sent again on a new one."""
        assert link.transport is not None
        loop = link.loop
        done = link.begin(len(bodies))
        timer = loop.call_later(self.timeout, link.timed_out)
        head = target.head_kept if reuse else target.head
        if len(bodies) > 1:
            self.pipelined += len(bodies)
        try:
            link.transport.write(b"".join([b"%s%d\r\n\r\n%s" % (head, len(body), body)
                                           for body in bodies]))
            await done
        finally:
            timer.cancel()
            if reuse and link.reusable():
                self._put(key, link)
            else:
                _abort(link)  # (close() could wait for a peer that reads nothing)
        outcomes = link.outcomes
        if link.uses > 1 and not link.received and not outcomes:
            if link.expired:  # silent, not closed: it serves one POST per connection
                self._single.add(key)
                log.info("report receiver %s does not answer a second POST on a "
                         "connection: one connection per report from now on", target.label)
            return None
        if len(bodies) == 1 and not outcomes:
            outcomes = [Outcome.FAILED]
        if any(outcome is not Outcome.DELIVERED for outcome in outcomes) \
                or len(outcomes) < len(bodies):
            log.debug("report to %s: %s", target.label, link.why or f"answered {link.status}")
        return outcomes

    def _take(self, key: _Key) -> _Link | None:
        links = self._idle.get(key)
        if not links:
            return None
        oldest = asyncio.get_running_loop().time() - KEEP_IDLE
        while links:
            link = links.pop()
            if link.fresh(oldest):
                return link
            _abort(link)
        return None

    def _put(self, key: _Key, link: _Link) -> None:
        links = self._idle.setdefault(key, [])
        if len(links) >= MAX_IDLE:
            _abort(link)
            return
        link.idle_since = link.loop.time()
        links.append(link)
        if self._sweeper is None:
            self._sweeper = link.loop.call_later(KEEP_IDLE, self._sweep)

    def _sweep(self) -> None:
        """Close the connections idle for longer than `KEEP_IDLE`."""
        loop = asyncio.get_running_loop()
        oldest = loop.time() - KEEP_IDLE
        for key, links in list(self._idle.items()):
            fresh: list[_Link] = []
            for link in links:
                if link.fresh(oldest):
                    fresh.append(link)
                else:
                    _abort(link)
            if fresh:
                self._idle[key] = fresh
            else:
                del self._idle[key]
        self._sweeper = loop.call_later(KEEP_IDLE, self._sweep) if self._idle else None


def _abort(link: _Link) -> None:
    link.closed = True
    if link.transport is not None:
        link.transport.abort()
