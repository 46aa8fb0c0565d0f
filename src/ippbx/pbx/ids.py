"""Leg ids in Asterisk `uniqueid` form: "<unix seconds>.<seq>", with one process-wide counter.

Ids are strings everywhere and are never parsed as numbers ("1589938378.1130" keeps its
trailing zero).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable


class IdGenerator:
    """Hands out unique leg ids; the clock is injectable for tests."""

    def __init__(self, clock: Callable[[], float] = time.time, start: int = 1) -> None:
        self._clock = clock
        self._seq = itertools.count(start)

    def next(self) -> str:
        return f"{int(self._clock())}.{next(self._seq)}"


_default = IdGenerator()


def new_id() -> str:
    """A fresh id from the process-wide generator."""
    return _default.next()
