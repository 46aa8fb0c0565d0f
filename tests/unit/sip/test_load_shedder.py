"""Overload control's admission decisions (sip/overload.py), driven with made-up clocks."""

from __future__ import annotations

import pytest

from ippbx.sip.overload import FLOOR, LoadShedder


def offer(shedder: LoadShedder, start: float, rate: float, seconds: float) -> tuple[int, int]:
    """Offer `rate` requests per second for `seconds`; (admitted, refused)."""
    admitted = refused = 0
    for n in range(int(rate * seconds)):
        if shedder.admit(start + n / rate):
            admitted += 1
        else:
            refused += 1
    return admitted, refused


def test_calm_loop_admits_everything() -> None:
    shedder = LoadShedder()
    for step in range(50):
        now = step * 0.1
        assert offer(shedder, now, 1000, 0.1) == (100, 0)
        shedder.sample(now + 0.1, busy=0.5, lag=0.002)
    assert shedder.limit is None and shedder.shed == 0 and shedder.episodes == 0


def saturate(shedder: LoadShedder, now: float, rate: float) -> float:
    """Offer `rate` per second to a saturated loop until the limit is set; the time."""
    while shedder.limit is None:
        assert offer(shedder, now, rate, 0.1) == (int(rate / 10), 0)
        now += 0.1
        shedder.sample(now, busy=1.0, lag=0.01, backlog=800 * 1024)
        assert now < 5, "no limit after 5 s of a saturated loop"
    return now


def test_a_busy_loop_that_keeps_up_is_no_overload() -> None:
    """Busy all the time, but nothing waits: no limit (the queue is what matters)."""
    shedder = LoadShedder()
    for step in range(1, 50):
        shedder.sample(step / 10, busy=1.0, lag=0.005, backlog=60 * 1024)
        assert shedder.limit is None


def test_busy_loop_cuts_admissions_to_below_what_it_coped_with() -> None:
    shedder = LoadShedder()
    now = saturate(shedder, 0.0, 1000)
    assert now == pytest.approx(0.1)  # the first interval with a queue
    assert shedder.limit == pytest.approx(950)
    admitted, refused = offer(shedder, now, 1000, 0.1)
    assert 85 <= admitted <= 97 and refused == 100 - admitted
    # the queue is still over the threshold but shrinking (800 → 600 KiB): the work
    # admitted before the cut drains, and the limit holds rather than being cut again
    shedder.sample(now + 0.1, busy=1.0, lag=0.01, backlog=600 * 1024)
    assert shedder.limit == pytest.approx(950)
    now += 0.1
    admitted, refused_too = offer(shedder, now, 1000, 0.1)
    # it grows again (650 KiB): cut to what was admitted, once more
    shedder.sample(now + 0.1, busy=1.0, lag=0.01, backlog=650 * 1024)
    assert shedder.limit == pytest.approx(0.95 * admitted / 0.1)
    assert shedder.episodes == 1 and shedder.shed == refused + refused_too


def test_one_late_interval_is_no_overload() -> None:
    """A start or a garbage collection: one long callback, then a prompt loop."""
    shedder = LoadShedder(lag_max=0.1)
    shedder.sample(0.1, busy=1.0, lag=0.8)
    shedder.sample(0.2, busy=0.5, lag=0.3)
    for step in range(3, 20):
        shedder.sample(step / 10, busy=0.2, lag=0.001)
    assert shedder.limit is None and shedder.episodes == 0


def test_lag_that_lasts_also_counts_and_the_floor_holds() -> None:
    shedder = LoadShedder(lag_max=0.1)
    for step in (1, 2, 3):  # starved of CPU by someone else, three intervals in a row
        shedder.sample(step / 10, busy=0.2, lag=0.5)
    assert shedder.limit == FLOOR  # nothing was admitted in those intervals
    assert offer(shedder, 0.1, 100, 1.0)[0] <= FLOOR + 2


def test_a_kernel_backlog_counts_at_once() -> None:
    """The loop keeps short iterations while datagrams queue in the socket buffer: that
    backlog alone sets the limit, from the first interval it shows."""
    shedder = LoadShedder(backlog_max=512 * 1024)
    offer(shedder, 0.0, 2000, 0.1)
    shedder.sample(0.1, busy=0.99, lag=0.001, backlog=400 * 1024)
    assert shedder.limit is None
    offer(shedder, 0.1, 2000, 0.1)
    shedder.sample(0.2, busy=0.99, lag=0.001, backlog=600 * 1024)
    assert shedder.limit == pytest.approx(0.95 * 2000)
    assert shedder.peak_backlog == 600 * 1024


def test_calm_again_the_limit_grows_and_is_lifted() -> None:
    shedder = LoadShedder()
    now = saturate(shedder, 0.0, 500)
    for _ in range(300):  # 30 s at 100/s offered, a calm loop
        offer(shedder, now, 100, 0.1)
        now += 0.1
        shedder.sample(now, busy=0.6, lag=0.001)  # no queue, not calm: slowly
        if shedder.limit is None:
            break
    assert shedder.limit is None  # lifted once far above what arrives
    assert offer(shedder, now, 1000, 0.1) == (100, 0)


def test_bad_settings() -> None:
    for kwargs in ({"lag_max": 0.0}, {"interval": 0.0}, {"backlog_max": 0}):
        with pytest.raises(ValueError):
            LoadShedder(**kwargs)  # type: ignore[arg-type]
