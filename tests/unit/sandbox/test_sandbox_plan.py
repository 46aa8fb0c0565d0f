"""The seeded call plan: same seed, same calls; the mix, the rate, the first call."""

from __future__ import annotations

import statistics

import pytest

from ippbx.sandbox.plan import CallKind, CallMix, Planner

EXTS = ["1001", "1002", "1003", "1004", "1005"]


def plan(seed: int | str, n: int = 200, **kwargs: object) -> list[tuple[str, str, str]]:
    planner = Planner(seed, EXTS, "9", ["5550100"], **kwargs)  # type: ignore[arg-type]
    return [(c.kind.value, c.caller, c.dialled) for c in (planner.next() for _ in range(n))]


def test_same_seed_same_sequence_other_seed_another() -> None:
    assert plan(42) == plan(42)
    assert plan("42") == plan(42)  # the seed is used as text either way
    assert plan(42) != plan(43)


def test_sequence_does_not_depend_on_the_rate_or_the_extension_order() -> None:
    dialled = [d for _, _, d in plan(7)]
    assert [d for _, _, d in plan(7, calls_per_minute=600)] == dialled
    planner = Planner(7, list(reversed(EXTS)), "9", ["5550100"])
    assert [planner.next().dialled for _ in range(200)] == dialled


def test_first_call_is_outbound_and_kinds_are_mixed() -> None:
    for seed in range(30):
        assert Planner(seed, EXTS, "9", ["5550100"]).next().kind is CallKind.OUTBOUND
    kinds = [k for k, _, _ in plan(1, 2000)]
    shares = {k: kinds.count(k.value) / len(kinds) for k in CallKind}
    assert shares[CallKind.OUTBOUND] == pytest.approx(0.6, abs=0.05)
    assert shares[CallKind.INTERNAL] == pytest.approx(0.2, abs=0.05)
    assert shares[CallKind.INBOUND] == pytest.approx(0.2, abs=0.05)


def test_what_each_kind_dials() -> None:
    planner = Planner(3, EXTS, "9", ["5550100", "5550199"])
    for _ in range(500):
        call = planner.next()
        if call.kind is CallKind.OUTBOUND:
            assert call.caller in EXTS
            assert call.dialled.startswith("9555") and len(call.dialled) == 8
        elif call.kind is CallKind.INTERNAL:
            assert call.caller in EXTS and call.dialled in EXTS
            assert call.caller != call.dialled
        else:
            assert call.dialled in ("5550100", "5550199")
            assert call.caller.isdigit() and call.caller not in EXTS
        assert 4.0 <= call.talk <= 30.0 and call.gap >= 0


def test_no_dids_no_inbound_one_extension_no_internal() -> None:
    planner = Planner(5, ["1001"], "9")
    assert {planner.next().kind for _ in range(300)} == {CallKind.OUTBOUND}
    only_in = Planner(5, EXTS, "9", ["5550100"], mix=CallMix(outbound=0, internal=0))
    assert {only_in.next().kind for _ in range(50)} == {CallKind.INBOUND}


def test_rate_and_abandon_share() -> None:
    planner = Planner(11, EXTS, "9", ["5550100"], calls_per_minute=30)
    calls = [planner.next() for _ in range(4000)]
    assert statistics.mean(c.gap for c in calls) == pytest.approx(2.0, rel=0.1)
    abandon = [c.patience for c in calls if c.patience is not None]
    assert len(abandon) / len(calls) == pytest.approx(0.08, abs=0.02)
    assert all(1.0 <= p <= 3.0 for p in abandon)
    assert [c.index for c in calls[:3]] == [1, 2, 3]


def test_describe() -> None:
    call = Planner(0, EXTS, "9").next()
    assert call.describe().startswith(f"#1 outbound {call.caller} -> 9")


@pytest.mark.parametrize("kwargs", [
    {"extensions": []},
    {"calls_per_minute": 0},
    {"mix": CallMix(outbound=0, internal=0, inbound=0)},
])
def test_bad_arguments(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"seed": 1, "extensions": EXTS, "prefix": "9", **kwargs}
    with pytest.raises(ValueError):
        Planner(**args)  # type: ignore[arg-type]
