"""Fuzzing the whole SIP stack a server runs (transport front end, UA core, B2BUA) with
hypothesis: RFC 4475 torture messages mutated byte by byte, cut, spliced and repeated,
and arbitrary bytes, over UDP and TCP. Whatever arrives, nothing raises, nothing is
logged as an error or with a traceback, and every answer goes back to the sender.

This is the bounded run of `make test` (`FUZZ_EXAMPLES`, 300 by default); `make fuzz`
runs the same properties far longer (FUZZ_EXAMPLES=20000).
"""

from __future__ import annotations

import asyncio
import logging
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sip_stack import Stack
from sip_torture import ANSWERS, load

from ippbx.sip.message import Response
from ippbx.sip.wire import Peer

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
SEEDS = [load(name) for name in sorted(ANSWERS)]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A torture message, changed a few times."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        how = draw(st.sampled_from(["flip", "cut", "insert", "repeat", "crlf"]))
        if how == "flip":
            data[at] = draw(st.integers(0, 255))
        elif how == "cut":
            del data[at:at + draw(st.integers(1, 40))]
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=20))
        elif how == "repeat":
            end = min(len(data), at + draw(st.integers(1, 200)))
            data[at:at] = data[at:end]
        else:
            data[at:at] = b"\r\n"
    return bytes(data)


PACKETS = st.one_of(mutated(), st.binary(max_size=600),
                    st.lists(mutated(), min_size=2, max_size=3).map(b"".join))


def run(packets: list[bytes], transport: str) -> None:
    async def main() -> None:
        stack = await Stack.start()
        try:
            source = Peer("127.0.0.9", 5070, transport)
            for data in packets:
                stack.feed(data, source)
            await stack.settle()
            for message, dest in stack.transport.sent:
                if isinstance(message, Response):
                    assert dest.host == source.host, (message, dest)
        finally:
            await stack.stop()

    asyncio.run(main())


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_nothing_a_peer_sends_breaks_the_stack(
    transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(st.lists(PACKETS, min_size=1, max_size=4))
    def check(packets: list[bytes]) -> None:
        caplog.clear()
        run(packets, transport)
        noisy = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
        assert noisy == [], [r.getMessage() for r in noisy]

    check()
