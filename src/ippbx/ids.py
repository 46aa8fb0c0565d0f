"""Leg ids in Asterisk `uniqueid` form: "<unix seconds>.<seq>", with one process-wide counter.

Ids are strings everywhere and are never parsed as numbers ("1589938378.1130" keeps its
trailing zero). A node name (`[calls] node`), like Asterisk's `systemname`, prefixes
every id ("pbx2-1589938378.1130"), so ippbx nodes that share a store or one application
never hand out the same id. The generator is process-wide: the app names its node
(`set_node`) and keeps the counter running; tests may install their own (`use`).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable


class IdGenerator:
    """Hands out unique leg ids; the clock is injectable for tests."""

    def __init__(self, clock: Callable[[], float] = time.time, start: int = 1,
                 node: str = "") -> None:
        self._clock = clock
        self._seq = itertools.count(start)
        self._prefix = ""
        self.node = node

    @property
    def node(self) -> str:
        return self._prefix[:-1]

    @node.setter
    def node(self, name: str) -> None:
        self._prefix = f"{name}-" if name else ""

    def next(self) -> str:
        return f"{self._prefix}{int(self._clock())}.{next(self._seq)}"


_current = IdGenerator()


def use(generator: IdGenerator) -> IdGenerator:
    """Make `generator` the one `new_id` draws from; returns the one it replaces."""
    global _current
    previous, _current = _current, generator
    return previous


def set_node(name: str) -> None:
    """Prefix the ids handed out from now on with `name` ("" for none)."""
    _current.node = name


def new_id() -> str:
    """A fresh id from the process-wide generator."""
    return _current.next()
