"""Every RFC 4475 torture message fed to ippbx as a server receives it, sans-IO.

The bytes of each message (tests/unit/sip/torture) go through the transport's pure
front end (`read_datagram` for UDP, `read_stream` for TCP: parsing, Via stamping, the
error answer for what does not parse), then the UA core (header checks, transactions,
dialogs) and the PBX's B2BUA behind it (registrar, digest auth, dial plan), exactly as
`PbxService` wires them; only the sockets are replaced by an in-memory transport that
records what would be sent where. The answer due for each message, with its RFC 4475
section and the reason, is the table `ANSWERS` of tests/sip_torture.py. Checked for each
message and transport: the statuses sent (and nothing more, even after the 100 Trying
delay and Timer G), each one sent back to the address the message came from, and no
error or traceback logged.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from sip_stack import Stack
from sip_torture import ANSWERS, fixture_names, load

from ippbx.sip.message import Request, Response
from ippbx.sip.wire import Peer

_VIA_PORT = re.compile(rb"^(?:via|v)[ \t]*:[ \t]*SIP/2\.0/[A-Za-z]+ [^\s;:,]+:(\d+)",
                       re.IGNORECASE | re.MULTILINE)


def source_for(name: str, index: int, transport: str) -> Peer:
    """A distinct address per message (no rate limit or ban carries over), at the port
    the answer goes to over UDP: the top Via's sent-by port (5060 if none)."""
    match = _VIA_PORT.search(load(name))
    port = int(match.group(1)) if match else 5060
    return Peer(f"10.44.{index // 200}.{index % 200 + 1}", port, transport)


@pytest.fixture
async def stacks() -> AsyncIterator[Callable[[], Awaitable[Stack]]]:
    """`await stacks()`: a new stack (several messages of RFC 4475 share a Via branch and
    sent-by, which makes them one transaction to a single server)."""
    started: list[Stack] = []

    async def start() -> Stack:
        started.append(await Stack.start())
        return started[-1]

    yield start
    for stack in started:
        await stack.stop()


def test_every_fixture_has_an_answer() -> None:
    assert fixture_names() == set(ANSWERS)
    assert len(ANSWERS) == 13 + 19 + 1 + 15 + 1  # RFC 4475 §3.1.1, §3.1.2, §3.2, §3.3, §3.4


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_every_torture_message_gets_the_answer_due(
    stacks: Callable[[], Awaitable[Stack]], transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    names = sorted(ANSWERS)
    sources = {name: source_for(name, i, transport) for i, name in enumerate(names)}
    servers: dict[str, Stack] = {}
    for name in names:
        servers[name] = server = await stacks()
        server.feed(load(name), sources[name])
        await server.settle()
    # past the 100 Trying delay (200 ms) and Timer G's first retransmission (T1 = 500 ms):
    # nothing more may come
    await asyncio.sleep(0.6)
    sent: dict[str, list[tuple[Request | Response, Peer]]] = {}
    for name, server in servers.items():
        await server.settle()
        sent[name] = server.transport.sent
    got = {name: tuple(m.status for m, _ in sent[name] if isinstance(m, Response))
           for name in names}
    due = {name: getattr(ANSWERS[name], transport) for name in names}
    assert got == due
    for name in names:  # only responses, each to the address the message came from
        for message, dest in sent[name]:
            assert isinstance(message, Response), (name, message)
            assert dest == sources[name], (name, message, dest)
    (bext, _), = sent["bext01"]
    assert bext.get_all("Unsupported") == ["nothingSupportsThis", "nothingSupportsThisEither"]
    for name in ("mpart01", "intmeth", "esc02"):  # 501 says what is implemented
        assert "OPTIONS" in (sent[name][0][0].get("Allow") or "")
    noisy = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert noisy == [], [r.getMessage() for r in noisy]


async def test_a_request_answered_at_once_gets_no_100_after_its_final(
    stacks: Callable[[], Awaitable[Stack]],
) -> None:
    """A 481/407 sent before the 100 Trying delay: no provisional follows it."""
    stack = await stacks()
    for index, name in enumerate(("wsinv", "esc01", "longreq")):  # 481, 407, 407
        stack.feed(load(name), source_for(name, index, "udp"))
    await stack.settle()
    await asyncio.sleep(0.3)
    assert sorted(m.status for m, _ in stack.transport.sent) == [407, 407, 481]


async def test_an_unknown_auth_scheme_is_challenged_not_counted(
    stacks: Callable[[], Awaitable[Stack]],
) -> None:
    """RFC 4475 §3.3.7: credentials in a scheme nobody knows prove nothing either way, so
    the same source sending them again and again is challenged every time, never banned."""
    stack = await stacks()
    source = Peer("10.45.0.1", 5060)
    for i in range(12):
        data = load("regaut01").replace(b"z9hG4bKkdjuw", f"z9hG4bKrega{i}".encode())
        stack.feed(data, source)
        await stack.settle()
    assert [m.status for m, _ in stack.transport.sent] == [401] * 12
