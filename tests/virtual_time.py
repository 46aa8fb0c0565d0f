"""Running SIP examples on virtual time, and what every such example must show.

`VirtualClockLoop` is an event loop whose clock jumps to the next timer whenever nothing
is ready (the in-memory net never needs waiting for), so SIP timers, ring timeouts and
prompt lengths cost no wall-clock time and nothing depends on the machine's speed; a
loop left with nothing to wait for (every task blocked, no timer set: a hang) raises, and
so does one that turns `SPIN_LIMIT` times without its clock moving (a spin).
`unanswered(net)` lists the requests that reached the PBX without a final response;
`assert_quiet(caplog)` fails on anything logged at ERROR or with a traceback;
`run_world` runs one example on a fresh loop and stops its parties after it;
`run_example` does so on a fresh in-memory net with a cap on its messages, and
`check_examples` runs hypothesis's examples of a scenario, each quiet.
"""

from __future__ import annotations

import asyncio
import logging
import selectors
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pbx_stack import PBX, World
from sip_net import FakeNet

from ippbx.sip.message import Request, Response

S = TypeVar("S")
Play = Callable[[World, S, Path], Awaitable[None]]

VIRTUAL_LIMIT = 300.0  # seconds (virtual) an example may run before it counts as a hang
SPIN_LIMIT = 200_000  # turns of the loop at one virtual instant that count as a spin


class _JumpingSelector(selectors.DefaultSelector):
    """Polls without blocking; where the loop would wait, moves its clock on instead."""

    def __init__(self, loop: VirtualClockLoop) -> None:
        super().__init__()
        self._clock = loop
        self._tripped = False  # (said once: the runner's clean-up may still run timers)
        self._turns = 0  # loop turns since the clock last moved

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        if ready:
            return ready
        if timeout is None:
            raise RuntimeError("a hang: every task waits and no timer is set")
        if timeout == 0:  # (something is ready: the clock stays)
            self._turns += 1
            if self._turns == SPIN_LIMIT:
                raise RuntimeError(f"a spin: {SPIN_LIMIT} turns of the loop and time never "
                                   "moved")
            return ready
        self._turns = 0
        # To the next timer itself: `now + (when - now)` can fall one ulp short of `when`
        # and a loop that waits for that timer would then never see time move.
        scheduled = self._clock._scheduled  # type: ignore[attr-defined]
        nearest = scheduled[0].when() if scheduled else 0.0
        self._clock.virtual_now = max(self._clock.virtual_now + timeout, nearest)
        if self._clock.virtual_now > VIRTUAL_LIMIT and not self._tripped:
            self._tripped = True
            raise RuntimeError(f"a hang: still running after {VIRTUAL_LIMIT} s")
        return ready


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose time passes only while it would wait (for a timer)."""

    def __init__(self) -> None:
        self.virtual_now = 0.0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self.virtual_now


def _key(message: Request | Response) -> tuple[str | None, tuple[int, str]]:
    return message.top_via.branch, message.cseq


def unanswered(net: FakeNet) -> list[Request]:
    """The requests that reached ippbx and got no final response from it."""
    answered = {_key(m) for src, _, m in net.log
                if (src.host, src.port) == (PBX.host, PBX.port)
                and isinstance(m, Response) and m.status >= 200}
    return [m for _, dest, m in net.log
            if (dest.host, dest.port) == (PBX.host, PBX.port) and isinstance(m, Request)
            and m.method != "ACK" and _key(m) not in answered]


def assert_quiet(caplog: pytest.LogCaptureFixture) -> None:
    noisy = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert noisy == [], [r.getMessage() for r in noisy]


def run_world(world: World, body: Callable[[], Awaitable[None]]) -> None:
    """Run `body` on a fresh virtual-time loop, then stop `world`'s UAs whatever
    happened."""
    async def main() -> None:
        try:
            await body()
        finally:
            await world.stop()

    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        runner.run(main())


def run_example(play: Play[S], scenario: S, directory: Path, max_messages: int) -> None:
    """`play` one scenario in a fresh world; more than `max_messages` is a storm."""
    world = World()
    world.net.max_messages = max_messages
    run_world(world, lambda: play(world, scenario, directory))
    assert not world.net.stormed, f"more than {max_messages} messages: a storm"


def check_examples(run: Callable[[S], object], scenarios: st.SearchStrategy[S], *,
                   examples: int, caplog: pytest.LogCaptureFixture) -> None:
    """`run` `examples` scenarios drawn by hypothesis; each must also be quiet (nothing
    at ERROR, no traceback)."""
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow,
                                     HealthCheck.function_scoped_fixture])
    @given(scenarios)
    def check(scenario: S) -> None:
        caplog.clear()
        run(scenario)
        assert_quiet(caplog)

    check()
