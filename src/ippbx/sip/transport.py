"""SIP over UDP, TCP and TLS: the only module of ippbx that touches SIP sockets.

Theory of operation
-------------------
`SipTransport` binds one listen address for both UDP and TCP (same port), and optionally
a second one for TLS (RFC 3261 §26.2: 5061), and turns what arrives into parsed
`Request`/`Response` objects handed to `on_message(message, peer)`;
`send(message, dest)` serializes and writes, never blocking the event loop. Everything
above (transactions, dialogs, the UA) is sans-IO and talks to the network only through
these two calls plus `response_destination`.

* UDP: one datagram is one message (`read_datagram`). Requests get `received=`/`rport=`
  filled in their top Via (RFC 3261 §18.2.1, RFC 3581) before delivery. A datagram to
  send is queued and written, in the order queued, when the loop has run what it has at
  hand (`loop.call_soon`; `stop()` writes what is queued before it closes the socket):
  the answers to a burst of datagrams read in one pass go out together, and a peer
  asleep in its poll is woken once for them rather than once each. Our `sendto` pays
  that wake-up when the peer runs on this machine (the benchmarks' sipp, a proxy or SBC
  in front of ippbx, the tests): there it saves 9 % of the CPU per call at 600 calls/s
  (BENCHMARKS.md, "Issue 13: UDP sends written together"); a peer on another host costs
  our `sendto` no wake-up, so there it saves little. The wait is the rest of the pass:
  microseconds when idle, a few milliseconds under full load.
* TCP: every connection frames its byte stream with `StreamParser` (`read_stream`).
  Connections are kept in one table keyed by the remote (host, port): an outgoing
  connection by the destination we were asked to send to (and by its resolved address),
  an incoming one by the socket's peer address, which is exactly the `Peer` its messages
  are reported with — so answering a `Peer` reuses the connection the request came on.
  Outgoing connections open lazily on the first `send` (or on `connect`, which the UA
  calls with a shorter timeout for a large request it switched from UDP to TCP,
  sip/oversize.py) and queue until connected; when the connect (or its TLS handshake)
  fails or times out, `on_unreachable(dest)` tells the owner, so the transactions
  waiting on that destination fail at once (RFC 3261 §17.1.4) instead of at Timer B
  (or, for a switched request, go over UDP after all).
* TLS works like TCP on a connection that is secured first (`Peer.transport` "tls").
  The TLS listener accepts sockets itself and admits them (the limits below) before
  their handshake starts, so connections that never finish a handshake are capped like
  any other; a handshake must finish within `handshake_timeout`. (Not `start_tls` on an
  accepted TCP stream: uvloop hands the ClientHello to the old protocol.) Outgoing TLS
  connections check the server's certificate with the client context the owner gives
  (the host name of the destination, or its IP address, against the certificate).
* Where responses go (`reply_address`, §18.2.2 without its `maddr` rule): over TCP the
  connection the request came on, while it is open; otherwise always the address the
  request came from (its `received`), on UDP at the `rport` port if the client asked
  for it (RFC 3581), else the sent-by port. A Via `maddr` is ignored: honouring it would
  let anyone aim our responses (and their retransmissions) at a third party.
* Malformed input never raises into the loop: bytes that do not parse as a request are
  answered with 400 (or the error's `.status`: 505, 513, 501) when a Via and a CSeq can
  still be read (`error_response`), else dropped; a malformed response or ACK is
  dropped. On TCP the messages framed before the bad bytes are delivered, then the
  connection stops reading and is closed `error_linger` seconds later (so the answers
  to those messages, and the 400, still go out on it); other connections are not
  affected. Each rejection is one WARNING line without traceback, rate-limited per kind
  (`ratelog.RateLimitedLog`: a flood of junk costs a few lines).
* TCP limits (`[sip] tcp_*` in the configuration), so one host cannot hold the
  descriptors every client needs:
  - at most `max_connections_per_ip` incoming connections from one address and
    `max_connections` in all (incoming and outgoing; keep it below the descriptor
    limit): a connection over a cap is closed as soon as it is accepted;
  - a connection is closed after `idle_timeout` seconds without a complete SIP message
    (which also catches a header block that never ends). A CRLF keep-alive (RFC 5626
    §4.4.1: a `\r\n\r\n` ping is answered with a `\r\n` pong; a bare CRLF is a pong or
    a keep-alive) also restarts that time, but only for `max_keepalives` keep-alives in
    a row: the count starts again at each SIP message. A phone that keeps its
    registration's connection open with keep-alives stays up as long as it
    re-registers before its keep-alives run out (default 240: 2 h at one every 30 s);
    a connection that only ever sends CRLFs is closed `idle_timeout` seconds after its
    `max_keepalives`-th one;
  - a peer whose unsent data exceeds `max_write_buffer` is dropped and closed.
  Every cut is counted by reason in `SipTransport.cut` and logged, one WARNING line per
  reason at most every `CUT_LOG_EVERY` seconds (`ratelog.RateLimitedLog`, which adds how
  many were left out).

Works on the stock asyncio loop and on uvloop (whichever the application installed).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import socket
import ssl
import sys
from collections import Counter
from collections.abc import Callable
from typing import cast

from ippbx.sip.message import MAX_MESSAGE, Outgoing, Request, Response, SentResponse, StreamParser
from ippbx.sip.ratelog import RateLimitedLog
from ippbx.sip.wire import Peer, Rejection, read_datagram, read_stream, reply_address

__all__ = ["Peer", "SipTransport", "resolve_host"]  # (Peer: from ippbx.sip.wire)

log = logging.getLogger(__name__)

# UDP socket buffers. Under load the kernel drops datagrams that arrive while the receive
# buffer is full and counts them in `RcvbufErrors` of the `Udp:` line of /proc/net/snmp
# (`nstat -az UdpRcvbufErrors`); the benchmarks report that counter. Linux caps
# SO_RCVBUF/SO_SNDBUF at net.core.rmem_max / wmem_max (often only 208 KiB) unless the
# process may use SO_RCVBUFFORCE (CAP_NET_ADMIN), so raise those sysctls for a benchmark
# host: `sysctl -w net.core.rmem_max=8388608 net.core.wmem_max=8388608`.
UDP_BUFFER_SIZE = 4 * 1024 * 1024
# RFC 3261 §18.1.1: a request within 200 bytes of the path MTU (or over 1300 bytes when
# the MTU is unknown) MUST be sent over a congestion-controlled transport such as TCP.
# The transport sends what it is asked to over UDP whatever its size (up to MAX_MESSAGE);
# the UA decides to send large requests over TCP instead (sip/oversize.py, `connect`).
UDP_SIZE_HINT = 1300
IDLE_TIMEOUT = 300.0  # seconds without a complete message before a TCP connection closes
MAX_KEEPALIVES = 240  # CRLF keep-alives in a row that still restart the idle time
ERROR_LINGER = 2.0  # seconds a TCP connection that sent junk stays open for our answers
MAX_CONNECTIONS = 2000  # open TCP connections in all (keep below RLIMIT_NOFILE)
MAX_CONNECTIONS_PER_IP = 64  # open incoming TCP connections from one address
CUT_LOG_EVERY = 10.0  # seconds between two WARNING lines about cut connections, per reason
MAX_WRITE_BUFFER = 4 * 1024 * 1024  # unsent bytes per TCP peer before we give up on it
CONNECT_TIMEOUT = 10.0
HANDSHAKE_TIMEOUT = 10.0  # seconds a TLS handshake may take
STREAM_TRANSPORTS = frozenset({"tcp", "tls"})
SO_MEMINFO = getattr(socket, "SO_MEMINFO", 55)  # Linux: its first u32 is the rmem in use

OnMessage = Callable[[Request | Response, "Peer"], None]


async def resolve_host(host: str, port: int) -> str | None:
    """The first address `host` resolves to (for UDP), or None if it does not resolve."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError:
        return None
    return str(infos[0][4][0]) if infos else None


@functools.lru_cache(maxsize=1024)  # (asked for every datagram sent, mostly the same few)
def _is_numeric_host(host: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return True
        except OSError:
            pass
    return False


def _exclusive(udp: asyncio.BaseTransport) -> None:
    """Clear SO_REUSEADDR on the transport's UDP socket (Linux lets a second socket bind
    a UDP address only while every socket on it has that option set)."""
    sock = udp.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)


def _set_buffers(sock: socket.socket, size: int) -> None:
    for force, plain in ((getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF),
                         (getattr(socket, "SO_SNDBUFFORCE", None), socket.SO_SNDBUF)):
        try:
            if force is None:
                raise PermissionError
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except OSError:
            try:
                sock.setsockopt(socket.SOL_SOCKET, plain, size)
            except OSError as exc:  # pragma: no cover - the kernel clamps rather than fails
                log.debug("cannot set UDP buffer size %d: %s", size, exc)


# -- the transport --------------------------------------------------------------------------


ConnKey = tuple[str, int, str]  # (host, port, "tcp" | "tls")


class SipTransport:
    """UDP endpoint + TCP server on one address (+ a TLS server); see the module docstring."""

    def __init__(
        self,
        host: str,
        port: int,
        on_message: OnMessage,
        *,
        tls_listen: tuple[str, int] | None = None,
        tls_server: ssl.SSLContext | Callable[[], ssl.SSLContext] | None = None,
        tls_client: ssl.SSLContext | None = None,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        on_unreachable: Callable[[Peer], None] | None = None,
        idle_timeout: float = IDLE_TIMEOUT,
        max_keepalives: int = MAX_KEEPALIVES,
        max_connections: int = MAX_CONNECTIONS,
        max_connections_per_ip: int = MAX_CONNECTIONS_PER_IP,
        max_write_buffer: int = MAX_WRITE_BUFFER,
        udp_buffer_size: int = UDP_BUFFER_SIZE,
        connect_timeout: float = CONNECT_TIMEOUT,
        error_linger: float = ERROR_LINGER,
    ) -> None:
        self.host = host
        self.port = port
        self.on_message = on_message
        self.local_host = host
        self.local_port = port
        self.idle_timeout = idle_timeout
        self.max_keepalives = max_keepalives
        self.max_connections = max_connections
        self.max_connections_per_ip = max_connections_per_ip
        self.max_write_buffer = max_write_buffer
        self.udp_buffer_size = udp_buffer_size
        self.connect_timeout = connect_timeout
        self.error_linger = error_linger
        self.tls_listen = tls_listen
        self.tls_port: int | None = None  # bound TLS port once started
        self._tls_server_source = tls_server
        self._tls_server: ssl.SSLContext | None = None
        self.tls_client = tls_client
        self.handshake_timeout = handshake_timeout
        self.on_unreachable = on_unreachable
        self.rejects = RateLimitedLog(log)  # one line per rejected message, rate-limited
        self.cut: Counter[str] = Counter()  # TCP connections we closed, by reason
        self._cut_log = RateLimitedLog(log, burst=1, window=CUT_LOG_EVERY)
        self._per_ip: Counter[str] = Counter()  # open incoming TCP connections by address
        self._loop: asyncio.AbstractEventLoop | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tls: socket.socket | None = None  # the TLS listening socket
        self._conns: dict[ConnKey, _Connection] = {}
        self._all: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._outgoing: list[tuple[bytes, tuple[str, int]]] = []  # UDP, to write this pass

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind UDP, then TCP on the same port (port 0: retry until both are free)."""
        loop = self._loop = asyncio.get_running_loop()
        self._closing = False
        infos = await loop.getaddrinfo(self.host or None, None, type=socket.SOCK_DGRAM,
                                       flags=socket.AI_PASSIVE)
        family, address = infos[0][0], infos[0][4][0]
        attempts = 20 if self.port == 0 else 1
        for attempt in range(attempts):
            udp_sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                _set_buffers(udp_sock, self.udp_buffer_size)
                udp_sock.bind((address, self.port))
                udp_sock.setblocking(False)
                port = udp_sock.getsockname()[1]
                tcp_sock = socket.socket(family, socket.SOCK_STREAM)
                try:
                    tcp_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    tcp_sock.bind((address, port))
                    tcp_sock.setblocking(False)
                except OSError:
                    tcp_sock.close()
                    raise
            except OSError as exc:
                udp_sock.close()
                if exc.errno == errno.EADDRINUSE and attempt + 1 < attempts:
                    continue
                raise
            break
        try:
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), sock=udp_sock)
            # uvloop sets SO_REUSEADDR on a datagram socket it is handed; with it set,
            # any other process binding with SO_REUSEADDR too (rtpengine does, for every
            # RTP port of its range) could share our SIP port and get its datagrams
            _exclusive(self._udp)
            self._server = await loop.create_server(
                lambda: _Connection(self, None), sock=tcp_sock, backlog=1024)
        except BaseException:
            tcp_sock.close()
            if self._udp is not None:
                self._udp.close()
                self._udp = None
            else:
                udp_sock.close()
            raise
        self.local_host, self.local_port = address, port
        log.debug("SIP transport listening on %s:%d (UDP+TCP)", address, port)
        if self.tls_listen is not None:
            try:
                await self._start_tls_server(*self.tls_listen)
            except BaseException:
                await self.stop()
                raise

    async def _start_tls_server(self, host: str, port: int) -> None:
        """Make the TLS server context (a callable may make a certificate) and bind."""
        source = self._tls_server_source
        if source is None:
            raise ValueError("tls_listen needs a tls_server context")
        self._tls_server = source() if callable(source) else source
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
        family, address = infos[0][0], infos[0][4]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(1024)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._tls = sock
        self.tls_port = sock.getsockname()[1]
        self._spawn(self._accept_tls(sock))
        log.debug("SIP transport listening on %s:%d (TLS)", address[0], self.tls_port)

    async def _accept_tls(self, listener: socket.socket) -> None:
        """Accept TLS connections: admit each, then run its handshake in a task."""
        loop = asyncio.get_running_loop()
        while not self._closing:
            try:
                client, addr = await loop.sock_accept(listener)
            except OSError as exc:  # e.g. EMFILE: out of descriptors for a moment
                if self._closing or listener.fileno() < 0:
                    return
                log.debug("TLS accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            conn = _Connection(self, None, "tls")
            refused = self._admit(conn, addr[0])
            if refused is not None:
                self._record_cut(refused, Peer(addr[0], addr[1], "tls"))
                client.close()
                continue
            self._spawn(self._handshake(conn, client, Peer(addr[0], addr[1], "tls")))

    async def _handshake(self, conn: _Connection, client: socket.socket, peer: Peer) -> None:
        assert self._loop is not None
        try:
            await self._loop.connect_accepted_socket(
                lambda: conn, client, ssl=self._tls_server,
                ssl_handshake_timeout=self.handshake_timeout)
        except (OSError, TimeoutError, ConnectionError) as exc:
            self._record_cut("TLS handshake failed", peer)
            log.debug("TLS handshake with %s failed: %r", peer, exc)
            client.close()
            conn.connect_failed()
        except asyncio.CancelledError:
            client.close()
            conn.connect_failed()
            raise

    def backlog(self) -> int:
        """Bytes waiting in the UDP socket's receive buffer (0 if unknown): the queue a
        saturated event loop leaves in the kernel (sip/overload.py)."""
        udp = self._udp
        if udp is None:
            return 0
        try:
            sock = udp.get_extra_info("socket")
            return int.from_bytes(sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 4),
                                  sys.byteorder)
        except (OSError, AttributeError, TypeError):
            return 0

    def port_for(self, transport: str) -> int:
        """Our port for `transport`: the TLS port for "tls", else the UDP/TCP one."""
        if transport.lower() == "tls" and self.tls_port is not None:
            return self.tls_port
        return self.local_port

    async def stop(self) -> None:
        """Close the sockets and every connection; cancel pending connects and lookups."""
        self._closing = True
        self._write_udp()  # (what the last pass queued: the answers and BYEs of a stop)
        server, self._server = self._server, None
        tls, self._tls = self._tls, None
        udp, self._udp = self._udp, None
        if server is not None:
            server.close()
        if udp is not None:
            udp.close()
        for conn in list(self._all):
            conn.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if tls is not None:
            tls.close()  # (after its accept loop, one of the tasks, has ended)
        if server is not None:
            try:
                await asyncio.wait_for(server.wait_closed(), 5)
            except TimeoutError:  # pragma: no cover
                log.debug("TCP server did not close in time")
        await asyncio.sleep(0)  # let connection_lost callbacks run
        self._conns.clear()
        self._all.clear()
        self._per_ip.clear()

    # -- sending ----------------------------------------------------------------------------
    def send(self, message: Outgoing, dest: Peer) -> None:
        """Send `message` to `dest`; never blocks, never raises (failures are logged)."""
        try:
            data = message.to_bytes()
            if dest.transport.lower() in STREAM_TRANSPORTS:
                self._send_stream(data, dest)
            else:
                self._send_udp(data, dest)
        except Exception:
            log.exception("cannot send %r to %s", message, dest)

    def response_destination(self, response: Response | SentResponse, source: Peer) -> Peer:
        """Where to send `response` to a request that came from `source` (never raises).

        Over TCP/TLS the connection the request came on while it is open (RFC 3261
        §18.2.2), else `reply_address`: the source's address, never a Via `maddr`.
        """
        if source.transport in STREAM_TRANSPORTS:
            conn = self._conns.get((source.host, source.port, source.transport))
            if conn is not None and not conn.closed:
                return source
        return reply_address(response, source)

    def _send_udp(self, data: bytes, dest: Peer) -> None:
        udp = self._udp
        if udp is None or udp.is_closing():
            log.debug("UDP transport closed; dropping message to %s", dest)
            return
        # Larger than UDP_SIZE_HINT: still sent over UDP, see the note at UDP_SIZE_HINT.
        if len(data) > MAX_MESSAGE:
            log.debug("message of %d bytes too large for UDP; dropped (to %s)", len(data), dest)
            return
        if not _is_numeric_host(dest.host):
            self._spawn(self._resolve_and_send(data, dest))
            return
        outgoing = self._outgoing
        outgoing.append((data, (dest.host, dest.port)))
        if len(outgoing) == 1:  # the first of this pass: write them all once it is done
            assert self._loop is not None
            self._loop.call_soon(self._write_udp)

    def _write_udp(self) -> None:
        """Write the datagrams queued since the last call, in order. Each is checked
        against the send buffer as it is written, as an unqueued send was; one that fails
        (a peer that refuses it, a buffer full) does not hold back the others."""
        outgoing, self._outgoing = self._outgoing, []
        if not outgoing:
            return
        udp = self._udp
        if udp is None or udp.is_closing():
            log.debug("UDP transport closed; dropping %d queued messages", len(outgoing))
            return
        limit = self.max_write_buffer
        for data, addr in outgoing:
            if udp.get_write_buffer_size() > limit:
                log.debug("UDP send buffer full; dropping message to %s:%s", addr[0], addr[1])
                continue
            try:
                udp.sendto(data, addr)
            except (OSError, ValueError) as exc:
                log.debug("UDP send to %s:%s failed: %s", addr[0], addr[1], exc)

    async def _resolve_and_send(self, data: bytes, dest: Peer) -> None:
        assert self._loop is not None
        try:
            infos = await self._loop.getaddrinfo(dest.host, dest.port, type=socket.SOCK_DGRAM)
        except OSError as exc:
            log.debug("cannot resolve %s: %s", dest.host, exc)
            return
        udp = self._udp
        sockname = udp.get_extra_info("sockname") if udp is not None else None
        want = socket.AF_INET6 if sockname is not None and len(sockname) == 4 else socket.AF_INET
        for family, _, _, _, addr in infos:
            if family == want:
                self._send_udp(data, Peer(addr[0], addr[1], "udp"))
                return
        log.debug("no address of family %s for %s", want, dest.host)

    def connect(self, dest: Peer, timeout: float) -> bool:
        """Open a TCP/TLS connection to `dest` now unless one is open or opening, giving
        up after `timeout` seconds (instead of `connect_timeout`): then, as for any
        failed connect, `on_unreachable(dest)`. What is sent to `dest` meanwhile waits
        for it. False if no connection may be opened (stopped, too many connections).
        (For the UA's large requests switched from UDP to TCP: sip/oversize.py.)"""
        return self._stream_to(dest, timeout) is not None

    def _send_stream(self, data: bytes, dest: Peer) -> None:
        conn = self._stream_to(dest)
        if conn is not None:
            conn.write(data)

    def _stream_to(self, dest: Peer, timeout: float | None = None) -> _Connection | None:
        """The open (or opening) connection to `dest`, opened now if there is none; None
        when none may be opened (stopped, too many, no TLS context)."""
        kind = dest.transport.lower()
        key = (dest.host, dest.port, kind)
        conn = self._conns.get(key)
        if conn is None or conn.closed:
            if self._closing or self._loop is None:
                log.debug("transport stopped; dropping message to %s", dest)
                return None
            if len(self._all) >= self.max_connections:
                log.debug("too many TCP connections; dropping message to %s", dest)
                return None
            if kind == "tls" and self.tls_client is None:
                log.warning("no TLS client context; dropping message to %s", dest)
                return None
            conn = _Connection(self, key, kind)
            self._all.add(conn)
            self._bind_key(conn, key)
            self._spawn(self._connect(conn, dest, timeout))
        return conn

    async def _connect(self, conn: _Connection, dest: Peer, timeout: float | None) -> None:
        assert self._loop is not None
        loop = self._loop
        secure: dict[str, object] = {}
        if conn.kind == "tls":
            secure = {"ssl": self.tls_client, "server_hostname": dest.host.strip("[]"),
                      "ssl_handshake_timeout": self.handshake_timeout}
        if timeout is None:
            timeout = self.connect_timeout
        try:
            await asyncio.wait_for(
                loop.create_connection(lambda: conn, dest.host, dest.port, **secure),
                timeout + (self.handshake_timeout if secure else 0),
            )
        except (TimeoutError, OSError) as exc:
            level = logging.WARNING if isinstance(exc, ssl.SSLError) else logging.DEBUG
            log.log(level, "%s connect to %s:%d failed: %s", conn.kind.upper(), dest.host,
                    dest.port, exc)
            conn.connect_failed()
            if self.on_unreachable is not None and not self._closing:
                try:
                    self.on_unreachable(dest)
                except Exception:
                    log.exception("on_unreachable failed for %s", dest)
        except asyncio.CancelledError:
            conn.connect_failed()
            raise

    def _spawn(self, coro: object) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- receiving --------------------------------------------------------------------------
    def _datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        peer = Peer(addr[0], addr[1], "udp")
        outcome = read_datagram(data, peer)
        if isinstance(outcome, Rejection):
            self._rejected(outcome, peer)
        elif outcome is not None:
            self._deliver(outcome, peer)

    def _rejected(self, rejection: Rejection, peer: Peer) -> None:
        response = rejection.response
        if response is None:
            self.rejects.warning(rejection.kind, "dropped unparsable message from %s: %s",
                                 peer, rejection.reason)
            return
        self.rejects.warning(rejection.kind, "answered malformed request from %s with %d: %s",
                             peer, response.status, rejection.reason)
        self.send(response, self.response_destination(response, peer))

    def _deliver(self, message: Request | Response, peer: Peer) -> None:
        try:
            self.on_message(message, peer)
        except Exception:
            log.exception("on_message failed for %r from %s", message, peer)

    # -- connection table -------------------------------------------------------------------
    def _bind_key(self, conn: _Connection, key: ConnKey) -> None:
        current = self._conns.get(key)
        if current is None or current.closed:
            self._conns[key] = conn
            conn.keys.append(key)

    def _admit(self, conn: _Connection, ip: str) -> str | None:
        """Count an incoming connection from `ip` against the caps; why not, or None."""
        if self._closing:
            return "shutting down"
        if len(self._all) >= self.max_connections:
            return "too many connections"
        if self._per_ip[ip] >= self.max_connections_per_ip:
            return "too many connections from one address"
        self._per_ip[ip] += 1
        conn.admitted_ip = ip
        self._all.add(conn)
        return None

    def _accepted(self, conn: _Connection) -> str | None:
        """Register a connection that has just come up; why to refuse it, or None."""
        assert conn.peer is not None
        if conn not in self._all:  # incoming over TCP (TLS ones were admitted at accept)
            refused = self._admit(conn, conn.peer.host)
            if refused is not None:
                return refused
        self._bind_key(conn, (conn.peer.host, conn.peer.port, conn.kind))
        return None

    def _record_cut(self, reason: str, peer: Peer | None) -> None:
        """A TCP connection was closed for `reason`: count it, log now and then."""
        self.cut[reason] += 1
        host = f"{peer.host}:{peer.port}" if peer is not None else "?"
        self._cut_log.warning(reason, "SIP TCP connection with %s closed: %s", host, reason)

    def _forget(self, conn: _Connection) -> None:
        self._all.discard(conn)
        ip, conn.admitted_ip = conn.admitted_ip, None
        if ip is not None:
            self._per_ip[ip] -= 1
            if self._per_ip[ip] <= 0:
                del self._per_ip[ip]
        for key in conn.keys:
            if self._conns.get(key) is conn:
                del self._conns[key]
        conn.keys.clear()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport) -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self._owner._datagram(data, addr)
        except Exception:  # pragma: no cover - _datagram already guards itself
            log.exception("error handling a datagram from %s", addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP socket error: %s", exc)  # e.g. ICMP port unreachable


class _Connection(asyncio.Protocol):
    """One TCP or TLS connection, incoming (`key` None) or outgoing to `key`."""

    def __init__(self, owner: SipTransport, key: ConnKey | None, kind: str = "tcp") -> None:
        self.owner = owner
        self.outgoing = key is not None
        self.kind = kind  # "tcp" | "tls"
        self.keys: list[ConnKey] = []
        self.transport: asyncio.Transport | None = None  # None while connecting
        self.peer: Peer | None = None
        self.parser = StreamParser()
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.closed = False
        self.failed = False  # the peer sent bytes that do not frame: read no more
        self.last_activity = 0.0
        self.keepalives = 0  # CRLF keep-alives since the last complete message
        self.admitted_ip: str | None = None  # counted in the owner's per-address table
        self.timer: asyncio.TimerHandle | None = None
        self.linger: asyncio.TimerHandle | None = None

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peername = transport.get_extra_info("peername")
        if self.closed or not peername:
            transport.abort()
            return
        self.peer = Peer(peername[0], peername[1], self.kind)
        refused = self.owner._accepted(self)
        if refused is not None:
            if refused == "shutting down":
                log.debug("refusing TCP connection from %s: shutting down", self.peer)
            else:
                self.owner._record_cut(refused, self.peer)
            self.closed = True
            transport.abort()
            return
        loop = self.owner._loop or asyncio.get_running_loop()
        self.last_activity = loop.time()
        self.timer = loop.call_later(self.owner.idle_timeout, self._check_idle)
        pending, self.pending, self.pending_size = self.pending, [], 0
        for data in pending:
            self.write(data)

    def data_received(self, data: bytes) -> None:
        if self.closed or self.failed:
            return
        assert self.peer is not None
        messages, rejection = read_stream(self.parser, data, self.peer)
        if not messages and rejection is None:
            if not self.parser.buffered and not data.strip(b"\r\n"):
                self._keepalive(len(data) >= 4)
            return
        self.keepalives = 0
        self._touch()
        if rejection is not None:
            self.failed = True  # read no more; the framed messages are still delivered
        for message in messages:
            if self.closed:
                break
            self.owner._deliver(message, self.peer)
        if rejection is not None and not self.closed:
            self.owner._rejected(rejection, self.peer)
            self._close_later()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.linger is not None:
            self.linger.cancel()
            self.linger = None
        self.pending.clear()
        self.owner._forget(self)

    # our side
    def write(self, data: bytes) -> None:
        if self.closed:
            return
        transport = self.transport
        if transport is None:  # still connecting
            if self.pending_size + len(data) > self.owner.max_write_buffer:
                log.debug("TCP connect queue full; dropping message to %s", self.keys)
                return
            self.pending.append(data)
            self.pending_size += len(data)
            return
        if transport.is_closing():
            return
        transport.write(data)
        if transport.get_write_buffer_size() > self.owner.max_write_buffer:
            self.owner._record_cut("peer does not read", self.peer)
            self.abort()

    def _close_later(self) -> None:
        """Stop reading; close (flushing what we wrote) after the owner's error_linger."""
        transport = self.transport
        if transport is None or self.linger is not None:
            return
        try:
            transport.pause_reading()
        except (RuntimeError, AttributeError):  # pragma: no cover - already closing
            pass
        loop = self.owner._loop or asyncio.get_running_loop()
        self.linger = loop.call_later(self.owner.error_linger, self.close)

    def close(self) -> None:
        """Close gracefully: what is already written still goes out."""
        self.linger = None
        if self.closed:
            return
        if self.transport is None:
            self.connect_failed()
            return
        self.closed = True
        self.owner._forget(self)
        self.transport.close()  # connection_lost follows once the buffer is flushed

    def abort(self) -> None:
        if self.transport is not None:
            self.closed = True
            self.owner._forget(self)
            self.transport.abort()  # connection_lost follows (soon)
        else:
            self.connect_failed()

    def connect_failed(self) -> None:
        if self.transport is not None and not self.closed:
            return  # connected after all; connection_lost will clean up
        self.closed = True
        self.pending.clear()
        self.owner._forget(self)

    def _keepalive(self, ping: bool) -> None:
        """CRLFs between messages: answer a ping (RFC 5626 §4.4.1), and restart the idle
        time unless `max_keepalives` came in a row already (see the module docstring)."""
        if self.keepalives < self.owner.max_keepalives:
            self._touch()
        self.keepalives += 1
        if ping:
            self.write(b"\r\n")

    def _touch(self) -> None:
        loop = self.owner._loop
        if loop is not None:
            self.last_activity = loop.time()

    def _check_idle(self) -> None:
        self.timer = None
        if self.closed:
            return
        loop = self.owner._loop
        assert loop is not None
        idle = loop.time() - self.last_activity
        timeout = self.owner.idle_timeout
        if idle >= timeout:
            log.debug("closing TCP connection %s: no complete message for %.1f s",
                      self.peer, idle)
            over = self.keepalives > self.owner.max_keepalives
            self.owner._record_cut("only keep-alives" if over else "idle", self.peer)
            self.abort()
        else:
            self.timer = loop.call_later(timeout - idle, self._check_idle)
