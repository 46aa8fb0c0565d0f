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


def test_busy_loop_cuts_admissions_to_below_what_it_coped_with() -> None:
    shedder = LoadShedder(busy_max=0.9)
    assert offer(shedder, 0.0, 1000, 0.1) == (100, 0)
    shedder.sample(0.1, busy=0.98, lag=0.01)  # saturated at 1000/s
    assert shedder.limit == pytest.approx(900)
    admitted, refused = offer(shedder, 0.1, 1000, 0.1)
    assert 80 <= admitted <= 92 and refused == 100 - admitted
    shedder.sample(0.2, busy=0.97, lag=0.01)  # still too busy: lower again
    assert shedder.limit == pytest.approx(0.9 * admitted / 0.1)
    assert shedder.episodes == 1 and shedder.shed == refused + 0


def test_lag_alone_also_counts_and_the_floor_holds() -> None:
    shedder = LoadShedder(lag_max=0.1)
    shedder.sample(0.1, busy=0.2, lag=0.5)  # starved of CPU by someone else
    assert shedder.limit == FLOOR  # nothing was admitted in that interval
    assert offer(shedder, 0.1, 100, 1.0)[0] <= FLOOR + 2


def test_calm_again_the_limit_grows_and_is_lifted() -> None:
    shedder = LoadShedder()
    offer(shedder, 0.0, 500, 0.1)
    shedder.sample(0.1, busy=0.95, lag=0.0)
    limit = shedder.limit
    assert limit is not None
    now = 0.1
    for _ in range(200):  # 20 s at 100/s offered, a calm loop
        offer(shedder, now, 100, 0.1)
        now += 0.1
        shedder.sample(now, busy=0.6, lag=0.001)  # under, but not by half: slowly
        if shedder.limit is None:
            break
    assert shedder.limit is None  # lifted once far above what arrives
    assert offer(shedder, now, 1000, 0.1) == (100, 0)


def test_bad_settings() -> None:
    for kwargs in ({"busy_max": 0.0}, {"busy_max": 1.5}, {"lag_max": 0.0}, {"interval": 0.0}):
        with pytest.raises(ValueError):
            LoadShedder(**kwargs)  # type: ignore[arg-type]
