"""ippbx's SIP stack (transport front end, UA core, B2BUA) over an in-memory transport,
for the stack-level tests that feed it bytes: the RFC 4475 answers and the fuzz test."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from ippbx.config import parse_config
from ippbx.pbx.auth import ExtensionAuth
from ippbx.pbx.b2bua import B2BUA
from ippbx.pbx.calls import CallRegistry
from ippbx.pbx.registrar import Registrar
from ippbx.pbx.trunks import Trunks
from ippbx.sip.errors import SipParseError
from ippbx.sip.message import (
    Outgoing,
    Request,
    Response,
    SentResponse,
    StreamParser,
    canonical_name,
    parse_message,
)
from ippbx.sip.ua import UserAgent
from ippbx.sip.wire import Peer, Rejection, read_datagram, read_stream, reply_address

CONFIG = """
[sip]
listen = "127.0.0.1:5060"
domain = "ippbx.test"
[api]
password = "apipass"
[[extensions]]
number = "1001"
password = "secret1001"
"""

def read_back(data: bytes) -> Request | Response:
    """What a peer reads of bytes the stack sent. A response to a request that lacked
    From, To or Call-ID lacks them too (RFC 4475 §3.3.1), which `parse_message` refuses:
    such a response is read line by line."""
    try:
        return parse_message(data)
    except SipParseError:
        head, _, body = data.partition(b"\r\n\r\n")
        first, *lines = head.decode("utf-8", "surrogateescape").split("\r\n")
        _, status, reason = first.split(" ", 2)
        fields = [line.partition(":") for line in lines]
        headers = [(canonical_name(name.strip()), value.strip()) for name, _, value in fields]
        return Response(int(status), reason, headers, body)


@dataclass
class MemoryTransport:
    """Where the UA's messages would go: recorded (parsed back from their bytes, as a peer
    would read them), never sent."""

    local_host: str = "127.0.0.1"
    local_port: int = 5060
    sent: list[tuple[Request | Response, Peer]] = field(default_factory=list)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def send(self, message: Outgoing, dest: Peer) -> None:
        self.sent.append((read_back(message.to_bytes()), dest))

    def response_destination(self, response: Response | SentResponse, source: Peer) -> Peer:
        # as SipTransport: over TCP the (open) connection it came on, else reply_address
        return source if source.transport == "tcp" else reply_address(response, source)


@dataclass
class Stack:
    """One ippbx SIP stack (UA core + B2BUA) over a `MemoryTransport`."""

    transport: MemoryTransport
    ua: UserAgent
    b2bua: B2BUA

    @classmethod
    async def start(cls) -> Stack:
        config = parse_config(CONFIG)
        transport = MemoryTransport()
        ua = UserAgent(transport, user_agent=config.sip.user_agent)
        registry = CallRegistry()
        trunks = Trunks(config)
        trunks.track(registry)
        b2bua = B2BUA(config, ua, registry, Registrar(config), trunks, ExtensionAuth(config))
        b2bua.attach()
        await ua.start()
        return cls(transport, ua, b2bua)

    async def stop(self) -> None:
        await self.b2bua.stop()
        await self.ua.stop()

    def feed(self, data: bytes, source: Peer) -> None:
        """Bytes arriving from `source` (one datagram, or one TCP segment)."""
        if source.transport == "udp":
            outcome = read_datagram(data, source)
            messages = [outcome] if isinstance(outcome, Request | Response) else []
            rejection = outcome if isinstance(outcome, Rejection) else None
        else:
            messages, rejection = read_stream(StreamParser(), data, source)
        for message in messages:
            self.ua.receive(message, source)
        if rejection is not None and rejection.response is not None:
            response = rejection.response
            self.transport.send(response, self.transport.response_destination(response, source))

    async def settle(self, timeout: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while self.b2bua.active_tasks or self.ua.pending_tasks:
            assert loop.time() < end, "the B2BUA did not finish"
            await asyncio.sleep(0.001)
        for _ in range(5):
            await asyncio.sleep(0)
