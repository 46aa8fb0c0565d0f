"""Texts already parsed and what they parsed to, so the same header text is parsed once.

A call brings the same text back many times: a request's Via in each response we send
to it, the caller's From in its ACKs and BYE, a callee's To in its 180 and 200, a
Request-URI in the INVITE sent again with credentials, a CSeq in every response and ACK.
`Via.parse`, `NameAddr.parse` and `SipUri.parse` keep what they parsed here and hand out
a copy on a hit (a twentieth of a parse), so a caller may change what it gets;
`parse_cseq`'s (number, method) tuples cannot change, and are handed out as they are.
Only parses that succeeded are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

_T = TypeVar("_T")


class ParseMemo(Generic[_T]):
    """`parse(text)` through a memo of texts and their parsed values, handing out
    `copy(value)` each time (the value itself when `copy` is None: an immutable one).
    Bounded: at `size` entries it starts again empty (texts are chosen by peers; a
    steady call load refills it at once). Texts longer than `longest` are parsed each
    time and never kept."""

    __slots__ = ("entries", "size", "longest", "_parse", "_copy")

    def __init__(self, parse: Callable[[str], _T], copy: Callable[[_T], _T] | None,
                 size: int = 4096, longest: int = 300) -> None:
        self.entries: dict[str, _T] = {}
        self.size = size
        self.longest = longest
        self._parse = parse
        self._copy = copy

    def parse(self, text: str) -> _T:
        """What `text` parses to, as a fresh value; the parser's error if it does not."""
        known = self.entries.get(text)
        copy = self._copy
        if known is not None:
            return known if copy is None else copy(known)
        parsed = self._parse(text)
        if len(text) <= self.longest:
            entries = self.entries
            if len(entries) >= self.size:
                entries.clear()
            entries[text] = parsed if copy is None else copy(parsed)
        return parsed
