"""Asterisk dial patterns (`_X.`, `NXX`, `[1-5]`, `!`) compiled to regular expressions.

Pattern letters: `X` any digit, `Z` 1-9, `N` 2-9, `[…]` a set or range of characters,
`.` one or more characters, `!` zero or more characters. Anything else matches itself.
A leading `_` (Asterisk's marker for a pattern) is accepted and ignored.
"""

from __future__ import annotations

import re
from functools import lru_cache


class PatternError(ValueError):
    """A dial pattern that cannot be compiled."""


_LETTERS = {"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]", ".": ".+", "!": ".*"}


@lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Compile an Asterisk pattern into an anchored regex; raise PatternError if malformed."""
    text = pattern[1:] if pattern.startswith("_") else pattern
    if not text:
        raise PatternError("empty pattern")
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        upper = ch.upper()
        if upper in _LETTERS:
            out.append(_LETTERS[upper])
            if upper in ".!" and i != len(text) - 1:
                raise PatternError(f"'{ch}' must end the pattern {pattern!r}")
            i += 1
        elif ch == "[":
            end = text.find("]", i + 1)
            if end == -1:
                raise PatternError(f"unclosed '[' in pattern {pattern!r}")
            body = text[i + 1 : end]
            if not body:
                raise PatternError(f"empty '[]' in pattern {pattern!r}")
            bad_edges = body.startswith("-") or body.endswith("-")
            if not re.fullmatch(r"[0-9A-Za-z*#+\-]+", body) or bad_edges:
                raise PatternError(f"bad character set [{body}] in pattern {pattern!r}")
            try:
                re.compile(f"[{body}]")
            except re.error as exc:
                raise PatternError(f"bad character set [{body}] in pattern {pattern!r}") from exc
            out.append(f"[{body}]")
            i = end + 1
        elif ch == "]":
            raise PatternError(f"unmatched ']' in pattern {pattern!r}")
        elif ch.isalnum() or ch in "*#+":
            out.append(re.escape(ch))
            i += 1
        else:
            raise PatternError(f"unexpected character {ch!r} in pattern {pattern!r}")
    return re.compile("".join(out), re.IGNORECASE)


def matches(pattern: str, number: str) -> bool:
    """Whether `number` matches the whole Asterisk `pattern`."""
    return compile_pattern(pattern).fullmatch(number) is not None
