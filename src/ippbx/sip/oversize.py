"""Requests too large for UDP (RFC 3261 §18.1.1), sans-IO: the rule, the Via, the memory.

"If a request is within 200 bytes of the path MTU, or if it is larger than 1300 bytes and
the path MTU is unknown, the request MUST be sent using an RFC 2914 congestion controlled
transport protocol, such as TCP." ippbx does not know path MTUs, so a new request bound
for a UDP destination that is larger than `[sip] udp_max_request` bytes (default 1300; 0:
never) goes over TCP to the same host and port instead (`tcp_instead`), its top Via
saying TCP (`rewrite_top_via`); its Contact stays as it is. Responses are never switched.

Many phones (behind NAT, or simply UDP-only) take no TCP, so the UA (`sip/ua.py`) opens
the connection with a short timeout (`TCP_CONNECT_TIMEOUT`) and, when it is refused or
not made in time, sends the request over UDP after all, as a new transaction (a fresh
branch): the call goes on, the caller sees no 503. `UdpOnly` then remembers that host
and port for a while, so the next large request to it goes over UDP at once rather than
waiting for another connect to fail.
"""

from __future__ import annotations

from ippbx.sip.message import Request
from ippbx.sip.wire import Peer

__all__ = ["TCP_CONNECT_TIMEOUT", "UDP_MAX_REQUEST", "UdpOnly", "rewrite_top_via",
           "tcp_instead", "too_big_for_udp"]

UDP_MAX_REQUEST = 1300  # RFC 3261 §18.1.1, the path MTU being unknown
# How long the TCP connect of a switched request may take before it goes over UDP after
# all: one lost SYN (Linux retransmits it after its 1 s initial RTO) plus the round trip
# still connects, while a peer that silently drops SYNs (a NAT, a firewall) delays the
# call by 2.5 s at most, far below the transport's usual 10 s (a TCP trunk's), the
# kernel's two minutes, and INVITE's Timer B (32 s).
TCP_CONNECT_TIMEOUT = 2.5
UDP_ONLY_SECONDS = 600.0  # how long a peer that refused TCP gets large requests over UDP
UDP_ONLY_SIZE = 4096  # peers remembered at most (the oldest is forgotten first)


def too_big_for_udp(request: Request, limit: int) -> bool:
    """Is `request`, as it would go on the wire, larger than `limit` bytes? Never when
    `limit` is 0 (switching is off)."""
    return limit > 0 and len(request.to_bytes()) > limit


def tcp_instead(request: Request, dest: Peer, limit: int) -> Peer | None:
    """The TCP destination `request` must go to instead of `dest` (the same host and
    port), or None to send it as asked: `dest` is not UDP, the request is an ACK or a
    CANCEL (they go the way their INVITE went), or it is not larger than `limit`."""
    if dest.transport != "udp" or request.method in ("ACK", "CANCEL"):
        return None
    if not too_big_for_udp(request, limit):
        return None
    return Peer(dest.host, dest.port, "tcp")


def rewrite_top_via(
    request: Request, *, transport: str, port: int | None = None, branch: str | None = None
) -> None:
    """Make the top Via say `transport` (sent-by `port`, `branch` when given), keeping its
    host and other parameters (`rport`). Raises SipParseError without a usable Via."""
    via = request.top_via
    via.transport = transport.upper()
    if port is not None:
        via.port = port
    if branch is not None:
        via.params["branch"] = branch
    request.remove_first("Via")
    request.add("Via", str(via), first=True)


class UdpOnly:
    """Peers (host, port) whose TCP connect failed lately: `add` one, ask `has`. At most
    `size` are kept, each for `seconds` (then TCP is tried again)."""

    def __init__(self, seconds: float = UDP_ONLY_SECONDS, size: int = UDP_ONLY_SIZE) -> None:
        self.seconds = seconds
        self.size = size
        self._until: dict[tuple[str, int], float] = {}  # oldest first

    def __len__(self) -> int:
        return len(self._until)

    def add(self, peer: Peer, now: float) -> None:
        key = (peer.host, peer.port)
        self._until.pop(key, None)
        self._until[key] = now + self.seconds
        while len(self._until) > self.size:
            del self._until[next(iter(self._until))]

    def has(self, peer: Peer, now: float) -> bool:
        key = (peer.host, peer.port)
        until = self._until.get(key)
        if until is None:
            return False
        if until <= now:
            del self._until[key]
            return False
        return True
