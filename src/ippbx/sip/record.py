"""`Record`: the base of the SIP stack's small value classes, equal and printed by field.

Via, NameAddr, SipUri and the transaction layer's events are made by the dozen per call,
mostly from compiled code. Each writes its own `__init__` rather than being a dataclass:
mypyc compiles a dataclass's class but leaves the `__init__` that `dataclasses` generates
at import as a Python function, run by the interpreter for every instance. A four-field
record made from compiled code: 174 ns as a dataclass, 49 ns with its own `__init__`
(timeit, mypyc 2.4.1; BENCHMARKS.md, "Issue 13: records without dataclasses").

A subclass names its fields in `FIELDS`, in the order its `__init__` takes them; `Record`
gives it `==` (same class, equal fields) and a `repr` such as `Via(transport='UDP', …)`,
which is what the dataclasses gave. Like them, records are not hashable. A subclass names
its fields twice, in `__slots__` (for the source run as Python) and in `FIELDS`: compiled,
a class keeps no `__slots__` at run time, and mypyc takes no `__slots__ = FIELDS = …`
(`tests/unit/sip/test_record.py` checks the two agree). `Peer`, a hashed value, is a
`NamedTuple` instead (`sip/wire.py`).
"""

from __future__ import annotations

from typing import ClassVar

__all__ = ["Record"]


class Record:
    """Equality and repr by the fields a subclass names in `FIELDS`."""

    __slots__ = ()
    FIELDS: ClassVar[tuple[str, ...]] = ()

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        for name in self.FIELDS:
            if getattr(self, name) != getattr(other, name):
                return False
        return True

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.FIELDS)
        return f"{type(self).__name__}({fields})"
