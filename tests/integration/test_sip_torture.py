"""Every RFC 4475 torture message sent to a running ippbx over UDP and over TCP.

Each message leaves from its own loopback address (so no ban or rate limit carries over
from one to the next): over UDP from the port its top Via names (the port the answer is
due at when the Via asks for no `rport`), over TCP on a connection of its own. Messages
the RFC gives the same branch and sent-by (one transaction to a server) go to separate
ippbx instances. The answers due, with the RFC sections, are the table `ANSWERS` of
tests/sip_torture.py; the test waits for them, then 0.7 s more (past the 100 Trying delay
and the first Timer G retransmission), and checks that exactly those came back, that a
TCP stream that stops framing is closed after its answers (and only such a stream), and
that nothing was logged at ERROR or with a traceback.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import re
import socket
from collections.abc import Callable

import pytest
from pbx_harness import PbxHarness, Start
from sip_torture import ANSWERS, load

from ippbx.sip.errors import SipParseError
from ippbx.sip.message import Response, parse_message

WAIT = 5.0  # upper bound for the answers due to arrive
QUIET = 0.7  # then nothing more may come for this long

_VIA_PORT = re.compile(rb"^(?:via|v)[ \t]*:[ \t]*SIP/2\.0/[A-Za-z]+ [^\s;:,]+:(\d+)",
                       re.IGNORECASE | re.MULTILINE)


# the messages whose bytes cannot be framed on a stream (parse_message fails on them)
UNFRAMED = {"ncl", "scalar02", "scalarlg", "ltgtruri", "lwsruri", "lwsstart", "trws",
            "escruri", "badvers", "mismatch01", "mismatch02", "bigcode", "mcl01", "multi01",
            "inv2543", "insuf"}


def answer_port(data: bytes) -> int:
    """The UDP port the answer goes to: the top Via's sent-by port, else 5060."""
    match = _VIA_PORT.search(data)
    return int(match.group(1)) if match else 5060


def response(data: bytes) -> Response:
    """A response as ippbx sent it. Some answers copy what made the request malformed (a
    CSeq over 2**31, no From/To/Call-ID at all): those keep only their status here."""
    try:
        message = parse_message(data)
    except SipParseError:
        return Response(int(data.split(b" ", 2)[1]))
    assert isinstance(message, Response), message
    return message


_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\d+)", re.IGNORECASE | re.MULTILINE)


def split_stream(buffer: bytearray) -> list[bytes]:
    """Take the complete messages off the front of a TCP byte stream."""
    out = []
    while (end := buffer.find(b"\r\n\r\n")) != -1:
        match = _LENGTH.search(bytes(buffer[:end]))
        total = end + 4 + (int(match.group(1)) if match else 0)
        if len(buffer) < total:
            break
        out.append(bytes(buffer[:total]))
        del buffer[:total]
    return out


def loopback_addresses(count: int) -> list[str]:
    """`count` distinct addresses in a random corner of 127.0.0.0/8."""
    base = random.randrange(100, 250)
    third = random.randrange(0, 200)
    return [f"127.{base}.{third + i // 250}.{i % 250 + 1}" for i in range(count)]


class Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append(data)


async def wait_counts(counts: dict[str, int],
                      got: Callable[[], dict[str, list[Response]]]) -> None:
    """Until every message has at least its due number of answers (or WAIT), then QUIET."""
    loop = asyncio.get_running_loop()
    end = loop.time() + WAIT
    while any(len(got()[name]) < n for name, n in counts.items()) and loop.time() < end:
        await asyncio.sleep(0.02)
    await asyncio.sleep(QUIET)


def rounds(names: list[str]) -> list[list[str]]:
    """Split the messages so that no two in one round are the same transaction to a
    server (RFC 4475 reuses branches: same branch, sent-by and method = one transaction,
    §17.2.3); each round gets a fresh ippbx."""
    out: list[tuple[set[tuple[str, str, str]], list[str]]] = []
    for name in names:
        try:
            message = parse_message(load(name))
            via = message.top_via
            key = {(via.branch or "", f"{via.host}:{via.port}".lower(),
                    message.cseq[1])}
        except SipParseError:
            key = set()
        for keys, members in out:
            if not keys & key:
                keys |= key
                members.append(name)
                break
        else:
            out.append((set(key), [name]))
    return [members for _, members in out]


def check(got: dict[str, list[Response]], transport: str) -> None:
    statuses = {name: tuple(r.status for r in responses) for name, responses in got.items()}
    due = {name: getattr(answer, transport) for name, answer in ANSWERS.items()}
    if transport == "tcp":  # two requests in one segment: their answers in any order
        statuses["dblreq"] = tuple(sorted(statuses["dblreq"]))
    assert statuses == due
    (bext,) = got["bext01"]
    assert bext.get_all("Unsupported") == ["nothingSupportsThis", "nothingSupportsThisEither"]


async def over_udp(pbx: PbxHarness, names: list[str]) -> dict[str, list[Response]]:
    loop = asyncio.get_running_loop()
    target = (pbx.app.pbx.transport.local_host, pbx.app.pbx.transport.local_port)
    endpoints: dict[str, tuple[asyncio.BaseTransport, Collector]] = {}
    got: dict[str, list[Response]] = {name: [] for name in names}
    try:
        for name, address in zip(names, loopback_addresses(len(names)), strict=True):
            port = answer_port(load(name))
            try:
                endpoints[name] = await loop.create_datagram_endpoint(
                    Collector, local_addr=(address, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:  # someone holds 0.0.0.0:port
                    pytest.skip(f"UDP port {port} is taken on all of 127/8")
                raise
        for name, (transport, _) in endpoints.items():
            transport.sendto(load(name), target)  # type: ignore[attr-defined]

        def refresh() -> dict[str, list[Response]]:
            for name, (_, collector) in endpoints.items():
                got[name] = [response(d) for d in collector.received]
            return got

        await wait_counts({name: len(ANSWERS[name].udp) for name in names}, refresh)
        return refresh()
    finally:
        for transport, _ in endpoints.values():
            transport.close()


async def over_tcp(pbx: PbxHarness, names: list[str]) -> dict[str, list[Response]]:
    host, port = pbx.app.pbx.transport.local_host, pbx.app.pbx.transport.local_port
    got: dict[str, list[Response]] = {name: [] for name in names}
    writers: list[asyncio.StreamWriter] = []

    async def one(name: str, address: str) -> None:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, local_addr=(address, 0)), WAIT)
        writers.append(writer)
        writer.write(load(name))
        await writer.drain()
        buffer = bytearray()
        while data := await reader.read(65536):
            buffer += data
            got[name].extend(response(m) for m in split_stream(buffer))
        # EOF: ippbx closed the connection (after bytes it could not frame)

    tasks = {name: asyncio.ensure_future(one(name, address))
             for name, address in zip(names, loopback_addresses(len(names)), strict=True)}
    try:
        await wait_counts({name: len(ANSWERS[name].tcp) for name in names}, lambda: got)
        # a stream that stops framing is closed once its answers went out (error_linger);
        # the others stay open
        unframed = [task for name, task in tasks.items() if name in UNFRAMED]
        if unframed:
            await asyncio.wait(unframed, timeout=WAIT)
        assert {name for name, task in tasks.items() if not task.done()} == \
            set(names) - UNFRAMED
        for task in tasks.values():
            if task.done():
                task.result()  # nothing raised on our side either
        return got
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        for writer in writers:
            writer.transport.abort()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_every_torture_message_gets_the_answer_due(
    start_pbx: Start, caplog: pytest.LogCaptureFixture, transport: str
) -> None:
    caplog.set_level(logging.WARNING)
    exchange = over_udp if transport == "udp" else over_tcp
    got: dict[str, list[Response]] = {}
    for names in rounds(sorted(ANSWERS)):
        pbx: PbxHarness = await start_pbx([])
        got.update(await exchange(pbx, names))
        await pbx.stop()
    check(got, transport)
    noisy = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert noisy == [], [r.getMessage() for r in noisy]


def test_loopback_addresses_are_usable() -> None:
    """The tests above bind 127.x.y.z; Linux routes all of 127.0.0.0/8 to lo."""
    (address,) = loopback_addresses(1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((address, 0))
