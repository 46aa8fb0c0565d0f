"""Rate-limited warnings for what peers send us: a flood of bad packets costs a few lines.

Anyone can send a SIP endpoint malformed messages at line rate, so logging each one with
a traceback turns a flood into megabytes of log and most of a CPU. `RateLimitedLog` writes
one WARNING line (never a traceback) per event, at most `burst` lines per `window`
seconds for each `key` (a short word naming the kind of event, e.g. "unparsable"); the
events over the limit are counted, and the first line of the key after its window
ends says how many were left out since the last line: `… (123 more suppressed)`.
Nothing is written when the flood stops, so the last count is only reported by the next
event of that key (no timer: this module is sans-IO, fed a clock).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["RateLimitedLog"]

BURST = 10
WINDOW = 10.0
_MAX_KEYS = 256  # keys are chosen by our code, but keep the table bounded all the same


class _Budget:
    __slots__ = ("start", "used", "suppressed")

    def __init__(self, start: float) -> None:
        self.start = start
        self.used = 0
        self.suppressed = 0  # events over the limit since the last line written


class RateLimitedLog:
    """At most `burst` warnings per `window` seconds per key; see the module docstring."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int = BURST,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.burst = burst
        self.window = window
        self.clock = clock
        self._budgets: dict[str, _Budget] = {}

    def warning(self, key: str, msg: str, *args: object) -> bool:
        """Log `msg % args` at WARNING unless `key` used its budget; True if written."""
        now = self.clock()
        budget = self._budgets.get(key)
        if budget is None:
            if len(self._budgets) >= _MAX_KEYS:
                self._budgets.clear()
            budget = self._budgets[key] = _Budget(now)
        elif now - budget.start >= self.window:
            budget.start = now
            budget.used = 0
        if budget.used >= self.burst:
            budget.suppressed += 1
            return False
        budget.used += 1
        if budget.suppressed:
            msg = f"{msg} (%d more suppressed)"
            args = (*args, budget.suppressed)
            budget.suppressed = 0
        self.logger.warning(msg, *args)
        return True

    def suppressed(self, key: str) -> int:
        """Events of `key` left out and not yet reported."""
        budget = self._budgets.get(key)
        return budget.suppressed if budget is not None else 0
