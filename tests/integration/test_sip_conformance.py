"""RFC 3261 answers, reflection and flood behaviour of a running ippbx, with real packets.

- §8.2 answers: an unknown method 501 (with Allow), an unknown Request-URI scheme 416,
  `Require: foo` 420 with `Unsupported: foo`, SIP/7.0 505; over UDP and TCP.
- Reflection: a Via `maddr` naming a third party (a socket on 127.0.0.5) gets that party
  nothing; the source gets exactly one answer per request (no 100 Trying before a
  challenge, no Timer G retransmissions of it), its retransmission one more.
- A flood of malformed messages (1,000 bad ACKs, 1,000 requests with a bad
  Content-Length and a broken second Via): each request gets its 400, the ACKs nothing,
  and the log gets a few WARNING lines, none with a traceback.
- TCP: a valid request and garbage in one segment: the request is answered, the garbage
  too when it can be, then the connection is closed.
- REGISTER with `max_contacts = 1`: a second contact with a shorter Expires replaces the
  first, and the 200 lists the binding in force.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import cast

import pytest
from pbx_harness import PbxHarness, Start, ext_password

from ippbx.sip.digest import DigestClient
from ippbx.sip.message import Request, Response, StreamParser, parse_message
from ippbx.sip.transport import SipTransport
from ippbx.sip.ua import UserAgent
from ippbx.sip.wire import Peer

WAIT = 5.0


def raw(method: str, uri: str, via: str, *, call_id: str, extra: str = "",
        version: str = "SIP/2.0", cseq_method: str | None = None, body: bytes = b"") -> bytes:
    head = (
        f"{method} {uri} {version}\r\n"
        f"Via: {via}\r\n"
        f"From: <sip:tester@127.0.0.1>;tag=t-{call_id}\r\n"
        f"To: <sip:1001@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 {cseq_method or method}\r\n"
        f"Max-Forwards: 70\r\n"
        f"{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class Inbox(asyncio.DatagramProtocol):
    """A UDP socket of the test: every response it gets, parsed (nothing else may come)."""

    def __init__(self) -> None:
        self.messages: list[Response] = []
        self.arrived = asyncio.Event()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        message = parse_message(data)
        assert isinstance(message, Response), message
        self.messages.append(message)
        self.arrived.set()

    async def until(self, count: int, timeout: float = WAIT) -> list[Response]:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while len(self.messages) < count and loop.time() < end:
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), max(0.0, end - loop.time()))
            except TimeoutError:
                break
        return self.messages

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


OpenInbox = Callable[..., Awaitable[tuple[Inbox, int]]]


@pytest.fixture
async def inboxes() -> AsyncIterator[OpenInbox]:
    """`await inboxes(host="127.0.0.1", port=0)`: a UDP socket of the test and its port."""
    opened: list[Inbox] = []

    async def open_inbox(host: str = "127.0.0.1", port: int = 0) -> tuple[Inbox, int]:
        loop = asyncio.get_running_loop()
        _, inbox = await loop.create_datagram_endpoint(Inbox, local_addr=(host, port))
        opened.append(inbox)
        assert inbox.transport is not None
        return inbox, inbox.transport.get_extra_info("sockname")[1]

    yield open_inbox
    for inbox in opened:
        inbox.close()


def pbx_address(pbx: PbxHarness) -> tuple[str, int]:
    return pbx.app.pbx.transport.local_host, pbx.app.pbx.transport.local_port


async def tcp_exchange(pbx: PbxHarness, data: bytes, count: int,
                       wait_close: bool = True) -> tuple[list[Response], bool]:
    """Send `data` on a new TCP connection; the first `count` responses, and whether
    ippbx then closed the connection (within WAIT; not waited for unless `wait_close`)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(*pbx_address(pbx)), WAIT)
    try:
        writer.write(data)
        parser = StreamParser()
        got: list[Response] = []
        while len(got) < count:
            chunk = await asyncio.wait_for(reader.read(65536), WAIT)
            assert chunk, f"closed after {got}"
            got.extend(m for m in parser.feed(chunk) if isinstance(m, Response))
        if not wait_close:
            return got, False
        try:
            closed = await asyncio.wait_for(reader.read(65536), WAIT) == b""
        except (TimeoutError, ConnectionResetError):
            closed = False
        return got, closed
    finally:
        writer.transport.abort()


CASES = {
    "unknown method → 501": ("FOO", "sip:1001@127.0.0.1", "", "SIP/2.0", 501),
    "unknown scheme → 416": ("INVITE", "unknownscheme:1001", "", "SIP/2.0", 416),
    "Require: foo → 420": ("INVITE", "sip:1001@127.0.0.1", "Require: foo\r\n", "SIP/2.0", 420),
    "SIP/7.0 → 505": ("OPTIONS", "sip:1001@127.0.0.1", "", "SIP/7.0", 505),
}


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_rfc3261_answers(start_pbx: Start, inboxes: OpenInbox, transport: str) -> None:
    pbx: PbxHarness = await start_pbx([])
    for n, (name, (method, uri, extra, version, status)) in enumerate(CASES.items()):
        call_id = f"conf-{transport}-{n}"
        if transport == "udp":
            inbox, port = await inboxes()
            via = f"SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call_id};rport"
            data = raw(method, uri, via, call_id=call_id, extra=extra, version=version)
            inbox.transport.sendto(data, pbx_address(pbx))
            await asyncio.sleep(0.3)  # past the 100 Trying delay: only the final is due
            got = await inbox.until(1)
            assert len(got) == 1, (name, got)
            response = got[0]
        else:
            via = f"SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK{call_id}"
            data = raw(method, uri, via, call_id=call_id, extra=extra, version=version)
            (response,), closed = await tcp_exchange(pbx, data, 1, wait_close=status == 505)
            assert closed == (status == 505)  # SIP/7.0 cannot be framed: the stream ends
        assert isinstance(response, Response) and response.status == status, (name, response)
        assert response.call_id == call_id
        if status == 501:
            assert "INVITE" in (response.get("Allow") or "")
        if status == 420:
            assert response.get_all("Unsupported") == ["foo"]
    await pbx.stop()


async def test_maddr_is_never_sent_to(start_pbx: Start, inboxes: OpenInbox) -> None:
    """A Via maddr aimed at a third party: it gets nothing; the source gets exactly one
    answer per request it sent, nothing retransmitted (no 100, no Timer G)."""
    pbx: PbxHarness = await start_pbx([])
    for _ in range(20):  # the same port free on 127.0.0.1 (the source) and 127.0.0.5
        source, port = await inboxes()
        try:
            third_party, _ = await inboxes("127.0.0.5", port)
            break
        except OSError:
            continue
    else:
        pytest.skip("no port free on both 127.0.0.1 and 127.0.0.5")
    sent = 0
    requests = []
    for n, method in enumerate(("INVITE", "REGISTER", "OPTIONS")):
        call_id = f"maddr-{n}"
        via = f"SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call_id};maddr=127.0.0.5"
        data = raw(method, "sip:1001@127.0.0.1", via, call_id=call_id,
                   body=b"v=0\r\n" * 80 if method == "INVITE" else b"")
        requests.append(data)
        source.transport.sendto(data, pbx_address(pbx))
        sent += 1
    await asyncio.sleep(2.2)  # Timer G would have resent the 407 at 0.5 and 1.5 s
    assert sorted(m.status for m in source.messages) == [200, 401, 407]
    source.transport.sendto(requests[0], pbx_address(pbx))  # the INVITE retransmitted
    sent += 1
    await asyncio.sleep(0.8)
    assert len(source.messages) == sent  # one answer per request received
    assert [m.status for m in source.messages].count(407) == 2
    assert third_party.messages == []
    await pbx.stop()


async def test_flood_of_malformed_messages(start_pbx: Start, inboxes: OpenInbox,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    pbx: PbxHarness = await start_pbx([])
    inbox, port = await inboxes()
    target = pbx_address(pbx)
    count = 1000
    for i in range(count):
        ack = raw("ACK", "sip:1001@127.0.0.1",
                  f"SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKack{i};rport",
                  call_id=f"ack-{i}").replace(b"From: <sip:tester@127.0.0.1>",
                                              b"From: <sip:tester@127.0.0.1")
        bad = raw("OPTIONS", "sip:1001@127.0.0.1",
                  f"SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKbad{i};rport\r\n"
                  f"Via: SIP/2.0/UDP ;;;", call_id=f"bad-{i}").replace(
                      b"Content-Length: 0", b"Content-Length: 12x")
        inbox.transport.sendto(ack, target)
        inbox.transport.sendto(bad, target)
        if i % 25 == 24:  # a bounded loop, paced so no socket buffer overflows
            await asyncio.sleep(0.005)
    got = await inbox.until(count, timeout=10)
    await asyncio.sleep(0.2)
    assert len(got) == count
    assert {m.status for m in got} == {400}
    assert {m.call_id for m in got} == {f"bad-{i}" for i in range(count)}
    sip_lines = [r for r in caplog.records if r.name.startswith("ippbx.sip")]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert 2 <= len(sip_lines) <= 30, [r.getMessage() for r in sip_lines]
    assert pbx.app.pbx.transport.rejects.suppressed("bad request") >= count - 30
    assert pbx.app.pbx.ua.rejects.suppressed("malformed ACK") >= count - 30
    await pbx.stop()


async def test_valid_request_and_garbage_in_one_tcp_segment(start_pbx: Start) -> None:
    pbx: PbxHarness = await start_pbx([])
    options = raw("OPTIONS", "sip:1001@127.0.0.1",
                  "SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKtcp1", call_id="tcp-1")
    (response,), closed = await tcp_exchange(pbx, options + b"GARBAGE\r\n\r\n", 1)
    assert (response.status, response.call_id) == (200, "tcp-1")
    assert closed
    # an INVITE (answered from a task, after the garbage was seen) and answerable garbage
    invite = raw("INVITE", "sip:1001@127.0.0.1",
                 "SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKtcp2", call_id="tcp-2")
    garbage = raw("OPTIONS", "sip:1001@127.0.0.1",
                  "SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKtcp3", call_id="tcp-3",
                  ).replace(b"Content-Length: 0", b"Content-Length: -1")
    responses, closed = await tcp_exchange(pbx, invite + garbage, 2)
    assert sorted((r.call_id, r.status) for r in responses) == [("tcp-2", 407), ("tcp-3", 400)]
    assert closed
    await pbx.stop()


async def register(ua: UserAgent, pbx: PbxHarness, ext: str, expires: int) -> Response:
    """REGISTER `ext` with this UA's contact, answering the digest challenge."""
    dest = Peer(*pbx_address(pbx))
    uri = f"sip:{dest.host}:{dest.port}"
    call_id, tag = ua.new_call_id(), ua.new_tag()
    auth = DigestClient(ext, ext_password(ext))
    credentials: str | None = None
    for cseq in (1, 2):
        headers = [("From", f"<sip:{ext}@{dest.host}>;tag={tag}"),
                   ("To", f"<sip:{ext}@{dest.host}>"),
                   ("Call-ID", call_id), ("CSeq", f"{cseq} REGISTER"),
                   ("Contact", f"<{ua.contact_uri(ext)}>"), ("Expires", str(expires))]
        if credentials:
            headers.append(("Authorization", credentials))
        response = await asyncio.wait_for(ua.request(Request("REGISTER", uri, headers), dest),
                                          WAIT)
        challenge = response.get("WWW-Authenticate")
        if response.status != 401 or challenge is None:
            return response
        credentials = auth.answer(challenge, "REGISTER", uri)
    return response


async def test_register_second_contact_replaces_first(start_pbx: Start) -> None:
    pbx: PbxHarness = await start_pbx([])
    phones = [UserAgent(lambda cb: SipTransport("127.0.0.1", 0, cb)) for _ in range(2)]
    for phone in phones:
        await phone.start()
    try:
        first, second = phones
        long = await register(first, pbx, "1001", 3600)
        assert long.status == 200
        assert [c.uri for c in long.contacts] == [first.contact_uri("1001")]
        short = await register(second, pbx, "1001", 120)  # shorter Expires, newer phone
        assert short.status == 200
        assert [c.uri for c in short.contacts] == [second.contact_uri("1001")]
        assert 100 <= int(short.contacts[0].params["expires"] or 0) <= 120
        bindings = pbx.app.pbx.registrar.contacts("1001")
        assert [(b.contact, b.source.port) for b in bindings] == [
            (second.contact_uri("1001"), second.transport.local_port)]
        again = await register(first, pbx, "1001", 3600)  # and back
        assert [c.uri for c in again.contacts] == [first.contact_uri("1001")]
    finally:
        for phone in phones:
            await phone.stop()
    await pbx.stop()
