"""sip/ratelog.py: at most `burst` lines per window per key, with a suppressed count."""

from __future__ import annotations

import logging

import pytest

from ippbx.sip.ratelog import RateLimitedLog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_suppressed_then_summary(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    clock = Clock()
    limited = RateLimitedLog(logging.getLogger("test.ratelog"), burst=3, window=10.0,
                             clock=clock)
    written = [limited.warning("bad", "bad message %d", i) for i in range(1000)]
    assert written == [True] * 3 + [False] * 997
    assert limited.suppressed("bad") == 997
    assert limited.warning("other", "another kind") is True  # keys have their own budget
    clock.now += 9.9
    assert limited.warning("bad", "still the same window") is False
    clock.now += 0.2
    assert limited.warning("bad", "bad message %d", 1000) is True
    assert limited.suppressed("bad") == 0
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["bad message 0", "bad message 1", "bad message 2", "another kind",
                     "bad message 1000 (998 more suppressed)"]
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in caplog.records)


def test_a_thousand_events_cost_a_bounded_number_of_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    clock = Clock()
    limited = RateLimitedLog(logging.getLogger("test.ratelog2"), clock=clock)
    for i in range(10_000):  # 1,000/s for 10 s
        clock.now += 0.001
        limited.warning("flood", "junk %d", i)
    assert 10 <= len(caplog.records) <= 20
