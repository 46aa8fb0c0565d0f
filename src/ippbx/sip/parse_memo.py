"""Texts already parsed and what they parsed to, so the same header text is parsed once.

A call brings the same text back many times: a request's Via in each response we send
to it, the caller's From in its ACKs and BYE, a callee's To in its 180 and 200, a
Request-URI in the INVITE sent again with credentials. `Via.parse`, `NameAddr.parse` and
`SipUri.parse` keep what they parsed here and hand out a copy on a hit (a twentieth of a
parse), so a caller may change what it gets. Only parses that succeeded are kept.
"""

from __future__ import annotations

from typing import Generic, TypeVar

_T = TypeVar("_T")


class ParseMemo(Generic[_T]):
    """Texts and their parsed values, bounded: at `size` entries it starts again empty
    (texts are chosen by peers; a steady call load refills it at once). Texts longer than
    `longest` are never kept."""

    __slots__ = ("entries", "size", "longest")

    def __init__(self, size: int = 4096, longest: int = 300) -> None:
        self.entries: dict[str, _T] = {}
        self.size = size
        self.longest = longest

    def keep(self, text: str, parsed: _T) -> None:
        if len(text) > self.longest:
            return
        entries = self.entries
        if len(entries) >= self.size:
            entries.clear()
        entries[text] = parsed
