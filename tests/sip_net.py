"""An in-memory SIP network for tests: `UserAgent`s talk through `FakeTransport`s that
hand each other serialized bytes on the next loop turn (no sockets, no threads).

`FakeNet.log` keeps every message sent, as the receiver would parse it, with where it
came from and where it went; `FakeNet.drop(message, dest)` may lose messages on the way.
A message for an address nobody listens on is lost, as UDP would lose it. `make_ua`
builds a UA with short SIP timers (T1 = 5 ms), so retransmissions and timeouts take
milliseconds; `settled` waits until UAs hold no transaction, dialog, task or waiter,
`until` for any condition, at most WAIT seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ippbx.sip.message import Outgoing, Request, Response, SentResponse, parse_message
from ippbx.sip.ua import UserAgent
from ippbx.sip.wire import Peer, fix_via

T1 = 0.005
WAIT = 2.0  # seconds any expected event may take (they take milliseconds)
Msg = Request | Response


class FakeNet:
    """Delivers serialized messages between FakeTransports on the next loop turn."""

    def __init__(self) -> None:
        self.endpoints: dict[tuple[str, int], FakeTransport] = {}
        self.log: list[tuple[Peer, Peer, Msg]] = []  # (from, to, message as parsed)
        self.drop: Callable[[Msg, Peer], bool] | None = None
        # more messages than this on the net is a storm (requests back and forth for
        # ever): the net carries no more (a test then sees `stormed`; None: no limit)
        self.max_messages: int | None = None
        self.stormed = False

    def sent(self, pred: Callable[[Msg], bool]) -> list[Msg]:
        return [m for _, _, m in self.log if pred(m)]


class FakeTransport:
    """One UA's address on a FakeNet."""

    def __init__(self, net: FakeNet, host: str, port: int,
                 on_message: Callable[[Msg, Peer], None]) -> None:
        self.net = net
        self.local_host = host
        self.local_port = port
        self.on_message = on_message

    async def start(self) -> None:
        self.net.endpoints[(self.local_host, self.local_port)] = self

    async def stop(self) -> None:
        self.net.endpoints.pop((self.local_host, self.local_port), None)

    def send(self, message: Outgoing, dest: Peer) -> None:
        data = message.to_bytes()
        me = Peer(self.local_host, self.local_port, dest.transport)
        parsed = parse_message(data)
        if self.net.max_messages is not None and len(self.net.log) >= self.net.max_messages:
            self.net.stormed = True
            return
        self.net.log.append((me, dest, parsed))
        if self.net.drop is not None and self.net.drop(parsed, dest):
            return
        target = self.net.endpoints.get((dest.host, dest.port))
        if target is not None:
            asyncio.get_running_loop().call_soon(target.deliver, data, me)

    def response_destination(self, response: Response | SentResponse, source: Peer) -> Peer:
        return source

    def port_for(self, transport: str) -> int:
        return self.local_port

    def deliver(self, data: bytes, source: Peer) -> None:
        message = parse_message(data)
        if isinstance(message, Request):
            fix_via(message, source)
        self.on_message(message, source)


def make_ua(net: FakeNet, host: str, port: int = 5060, **kw: object) -> UserAgent:
    """A UA on `host:port` of `net` with short timers (T1 = 5 ms; its factory-made
    transport joins the net when the UA starts)."""
    return UserAgent(lambda cb: FakeTransport(net, host, port, cb), t1=T1, t2=4 * T1,
                     t4=2 * T1, timer_d=5 * T1, **kw)  # type: ignore[arg-type]


async def settled(*uas: UserAgent, timeout: float = 3.0) -> None:
    """Wait until every UA has no transaction, dialog, task or waiter left."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while any(any(ua.counts().values()) for ua in uas):
        if loop.time() > end:
            raise AssertionError([ua.counts() for ua in uas])
        await asyncio.sleep(0.01)


async def until(predicate: Callable[[], object], what: str, timeout: float = WAIT) -> None:
    """Wait (a loop turn at a time) until `predicate()` is true."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


def register_request(ua: UserAgent, number: str, domain: str, expires: int = 300,
                     aor_user: str = "") -> Request:
    """A phone's REGISTER of its contact on `ua` for extension `number` (the address of
    record `aor_user`'s, if given), before any challenge."""
    aor = f"sip:{aor_user or number}@{domain}"
    return Request("REGISTER", f"sip:{domain}", [
        ("From", f"<{aor}>;tag={ua.new_tag()}"),
        ("To", f"<{aor}>"),
        ("Call-ID", ua.new_call_id()),
        ("CSeq", "1 REGISTER"),
        ("Contact", f"<{ua.contact_uri(number)}>"),
        ("Expires", str(expires)),
    ])
