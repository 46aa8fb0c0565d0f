"""How ippbx runs Python's garbage collector: no full collection while calls need answers.

Measured (BENCHMARKS.md): under call load, finished SIP transactions are kept 32 s (RFC
3261 timers), so a busy PBX holds hundreds of thousands of tracked objects, and each
automatic full (generation 2) collection paused the event loop for 0.4-0.7 s, long enough
for phones and carriers to retransmit. ippbx's call path frees its objects by reference
counting (a full collection after a load run found no garbage), so:

- objects alive after start-up are frozen out of collection (`gc.freeze()`);
- young collections (generations 0 and 1) stay automatic and cheap;
- full collections are not automatic; `FullCollector` runs one when the PBX is idle (no
  live call) at most every `idle_interval` seconds, and unconditionally every
  `max_interval` seconds, so garbage in reference cycles is still reclaimed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

# gen2 runs after this many gen1 collections: in practice never on its own
_NEVER = 1_000_000_000


def configure() -> tuple[int, int, int]:
    """Freeze what start-up allocated and stop automatic full collections; returns the
    thresholds that were in force before."""
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(before[0], before[1], _NEVER)
    return before


class FullCollector:
    """Runs the full collections that `configure()` took off the hot path."""

    def __init__(
        self,
        busy: Callable[[], bool],
        *,
        idle_interval: float = 600.0,
        max_interval: float = 3600.0,
        check_every: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._busy = busy
        self._idle_interval = idle_interval
        self._max_interval = max_interval
        self._check_every = check_every
        self._clock = clock
        self._last = clock()
        self._task: asyncio.Task[None] | None = None
        self._before: tuple[int, int, int] | None = None

    def due(self) -> bool:
        """Whether a full collection should run now."""
        age = self._clock() - self._last
        return age >= self._max_interval or (age >= self._idle_interval and not self._busy())

    def collect(self) -> int:
        started = self._clock()
        found = gc.collect()
        self._last = self._clock()
        log.debug("full collection: %d unreachable objects in %.0f ms", found,
                  (self._last - started) * 1000)
        return found

    async def start(self) -> None:
        self._before = configure()
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._before is not None:
            gc.set_threshold(*self._before)
            gc.unfreeze()
            self._before = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._check_every)
            if self.due():
                self.collect()
