"""The metrics' own bookkeeping: call counters from a real call registry's events, the
latency histogram, the loop probe, and the `/metrics` page (format, bearer token)."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ippbx.api.http_server import HttpRequest
from ippbx.metrics import DIRECTIONS, STATES, CallStats, Histogram, LoopProbe, Metrics
from ippbx.pbx.calls import CallRegistry, Leg, LegKind, LegStatus


def ext_leg(number: str, dialled: str, *, outgoing: bool = False) -> Leg:
    return Leg(LegKind.EXTENSION, number, dialled, extension=number, outgoing=outgoing)


def trunk_leg(frm: str, to: str, *, outgoing: bool = False) -> Leg:
    return Leg(LegKind.TRUNK, frm, to, trunk="carrier", outgoing=outgoing)


def watched() -> tuple[CallRegistry, CallStats]:
    registry = CallRegistry()
    stats = CallStats()
    registry.subscribe(stats)
    return registry, stats


def live(stats: CallStats) -> dict[tuple[str, str], int]:
    return {key: n for key, n in stats.live.items() if n}


def test_an_outbound_call_moves_through_the_states_and_counts_once() -> None:
    registry, stats = watched()
    call = registry.start_call(ext_leg("1001", "95551234"), "95551234")
    assert live(stats) == {("internal", "progress"): 1}
    assert stats.attempts == {}  # (where it goes is not known yet)
    out = trunk_leg("66666", "5551234")
    registry.add_callee(call, out)
    assert stats.attempts == {"outbound": 1}
    assert live(stats) == {("outbound", "progress"): 1}
    registry.ringing(out.id)
    assert live(stats) == {("outbound", "ringing"): 1}
    registry.set_status(out.id, LegStatus.TALKING)
    registry.set_status(call.caller.id, LegStatus.TALKING)
    assert live(stats) == {("outbound", "talking"): 1}
    assert stats.answered == {"outbound": 1}
    for leg in (out, call.caller):  # hold: every leg waits
        registry.set_status(leg.id, LegStatus.WAIT)
    assert live(stats) == {("outbound", "wait"): 1}
    registry.end_leg(out.id, 200)
    registry.end_leg(call.caller.id, 200)
    assert live(stats) == {} and stats.tracked() == 0
    assert stats.attempts == {"outbound": 1} and stats.answered == {"outbound": 1}
    assert stats.failures == {}
    assert stats.created == 1


def test_failed_calls_count_with_their_sip_code() -> None:
    registry, stats = watched()
    busy = registry.start_call(ext_leg("1001", "1002"), "1002")
    callee = ext_leg("1002", "1002")
    registry.add_callee(busy, callee)
    registry.end_leg(callee.id, 486)
    registry.end_leg(busy.caller.id, 486)
    refused = registry.start_call(ext_leg("1001", "0123"), "0123")  # the dial plan's 404
    registry.end_leg(refused.caller.id, 404)
    inbound = registry.start_call(trunk_leg("0123456", "5550100"), "5550100")
    assert stats.attempts == {"internal": 2, "inbound": 1}  # (inbound: known at once)
    registry.end_leg(inbound.caller.id, 487)  # the carrier cancelled
    assert stats.failures == {("internal", 486): 1, ("internal", 404): 1, ("inbound", 487): 1}
    assert stats.answered == {} and live(stats) == {}


def test_a_call_ippbx_answers_itself_is_answered_and_settled() -> None:
    registry, stats = watched()
    call = registry.start_call(ext_leg("1001", "6000"), "6000")  # an IVR
    registry.set_status(call.caller.id, LegStatus.TALKING)
    assert stats.attempts == {"internal": 1} and stats.answered == {"internal": 1}
    registry.set_status(call.caller.id, LegStatus.WAIT)  # in the menu
    assert live(stats) == {("internal", "wait"): 1}
    registry.end_leg(call.caller.id, 200)
    assert stats.failures == {}


def test_a_click_to_call_counts_where_its_second_leg_goes() -> None:
    """The party ippbx calls first answering says nothing of the call's direction."""
    registry, stats = watched()
    call = registry.start_call(ext_leg("1001", "5551234", outgoing=True), "5551234")
    registry.set_status(call.caller.id, LegStatus.TALKING)
    assert stats.attempts == {} and stats.answered == {}
    registry.add_callee(call, trunk_leg("66666", "5551234"))
    assert stats.attempts == {"outbound": 1} and stats.answered == {"outbound": 1}
    registry.end_leg(call.callee.id, 200)  # type: ignore[union-attr]
    registry.end_leg(call.caller.id, 200)
    assert stats.failures == {} and live(stats) == {}


def test_registration_changes_are_counted() -> None:
    registry, stats = watched()
    registry.registration_changed("1001", True)
    registry.registration_changed("1002", True)
    registry.registration_changed("1001", False)
    assert stats.registrations == {True: 2, False: 1}


def test_counters_add_up_whatever_happens_to_the_calls() -> None:
    """attempts = answered + failures + live unanswered, per direction, and the live
    gauge holds every live call once, through random call histories."""
    rng = random.Random(7)
    registry, stats = watched()
    for _ in range(3000):
        calls = registry.calls()
        roll = rng.random()
        if roll < 0.2 or not calls:
            caller = (trunk_leg("0123", "5550100") if rng.random() < 0.3
                      else ext_leg("1001", "x", outgoing=rng.random() < 0.2))
            registry.start_call(caller, "x")
            continue
        call = rng.choice(calls)
        live_legs = [leg for leg in call.legs() if leg.live]
        if roll < 0.4 and (call.callee is None or not call.callee.live):
            callee = trunk_leg("6", "x") if rng.random() < 0.5 else ext_leg("1002", "x")
            registry.add_callee(call, callee)
            if rng.random() < 0.5:
                registry.ringing(callee.id)
        elif roll < 0.7 and live_legs:
            leg = rng.choice(live_legs)
            registry.set_status(leg.id, rng.choice([LegStatus.TALKING, LegStatus.WAIT,
                                                    LegStatus.PROGRESS]))
        elif live_legs:
            registry.end_leg(rng.choice(live_legs).id, rng.choice([200, 404, 486, 487, 503]))
        assert sum(stats.live.values()) == len(registry) == stats.tracked()
    for direction in DIRECTIONS:
        failed = sum(n for (d, _), n in stats.failures.items() if d == direction)
        assert stats.attempts[direction] >= stats.answered[direction] + failed
    # end everything: then the counters add up exactly
    for call in registry.calls():
        for leg in call.legs():
            if leg.live:
                registry.end_leg(leg.id, 480)
    assert len(registry) == 0 and sum(stats.live.values()) == 0
    assert stats.created == sum(stats.attempts.values()) > 300
    for direction in DIRECTIONS:
        failed = sum(n for (d, _), n in stats.failures.items() if d == direction)
        assert stats.attempts[direction] == stats.answered[direction] + failed
    assert set(stats.attempts) == set(DIRECTIONS)
    assert all(state in STATES for _, state in stats.live)


def test_histogram_buckets_are_inclusive_and_cumulative() -> None:
    histogram = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 7.0):
        histogram.observe(value)
    assert histogram.counts == [2, 2, 1] and histogram.count == 5
    family = histogram.family("x_seconds", "X.")
    buckets = {s.labels["le"]: s.value for s in family.samples if s.name == "x_seconds_bucket"}
    assert buckets == {"0.1": 2, "1.0": 4, "+Inf": 5}
    with pytest.raises(ValueError):
        Histogram((1.0, 0.5))


async def probed(probe: LoopProbe, ticks: int, timeout: float = 5.0) -> None:
    """Until the probe has sampled the loop `ticks` times (bounded)."""
    deadline = time.monotonic() + timeout
    while len(probe._lags) < ticks:
        assert time.monotonic() < deadline, f"the probe did not tick {ticks} times"
        await asyncio.sleep(0.01)


async def test_the_loop_probe_sees_a_blocked_loop_and_leaves_no_timer() -> None:
    created = [0]
    probe = LoopProbe(lambda: created[0])
    probe.start(asyncio.get_running_loop())
    try:
        await probed(probe, 1)  # (a probe, on an idle loop)
        assert probe.lag < 0.2
        time.sleep(0.7)  # the loop is blocked past the next probe's time
        await probed(probe, 2)
        assert probe.max_lag() >= 0.15
        created[0] = 30
        assert probe.setup_rate() == pytest.approx(30 / 1.3, rel=0.3)
    finally:
        probe.stop()
    assert not probe.running
    lag, ticks = probe.lag, len(probe._lags)
    await asyncio.sleep(0.7)  # (longer than a probe's period: none may come)
    assert (probe.lag, len(probe._lags)) == (lag, ticks)  # (no tick after stop)


def request(path: str = "/metrics", method: str = "GET",
            headers: list[tuple[bytes, bytes]] | None = None) -> HttpRequest:
    return HttpRequest(method, path, b"", headers or [], b"", "127.0.0.1")


def test_the_page_parses_as_prometheus_text_with_the_call_metrics() -> None:
    metrics = Metrics()
    registry = CallRegistry()
    metrics.calls.follow(registry)  # (as the app subscribes it: a handler per kind)
    call = registry.start_call(ext_leg("1001", "1002"), "1002")
    registry.end_leg(call.caller.id, 404)
    metrics.report_latency.observe(0.02)
    response = metrics.page(request())
    assert response.status == 200
    assert dict(response.headers)[b"Content-Type"].startswith(b"text/plain")
    assert isinstance(response.body, bytes)
    families = {f.name: f for f in text_string_to_metric_families(response.body.decode())}
    for name in ("ippbx_live_calls", "ippbx_call_attempts", "ippbx_call_failures",
                 "ippbx_report_delivery_seconds", "ippbx_event_loop_lag_seconds",
                 "ippbx_call_setups_per_second", "ippbx_process_cpu_seconds"):
        assert name in families, sorted(families)
        assert families[name].documentation
    failures = {(s.labels["direction"], s.labels["code"]): s.value
                for s in families["ippbx_call_failures"].samples}
    assert failures == {("internal", "404"): 1.0}
    assert families["ippbx_report_delivery_seconds"].type == "histogram"
    assert len(families["ippbx_live_calls"].samples) == len(DIRECTIONS) * len(STATES)


def test_the_token_is_wanted_when_set() -> None:
    token = "s3cret-token"
    metrics = Metrics(token=lambda: token)
    assert metrics.page(request()).status == 401
    assert (dict(metrics.page(request()).headers)[b"WWW-Authenticate"]
            == b'Bearer realm="ippbx metrics"')
    for wrong in (b"Bearer nope", b"Basic " + token.encode(), b"Bearer", token.encode(),
                  b"Bearer " + token.encode() + b"x"):
        assert metrics.page(request(headers=[(b"authorization", wrong)])).status == 401, wrong
    for right in (b"Bearer " + token.encode(), b"bearer  " + token.encode()):
        assert metrics.page(request(headers=[(b"authorization", right)])).status == 200
    token = ""  # (asked at each scrape: a reload that drops it opens the page)
    assert metrics.page(request()).status == 200


def test_other_paths_methods_and_a_disabled_page() -> None:
    metrics = Metrics()
    assert metrics.page(request("/metrics/x")).status == 404
    assert metrics.page(request(method="POST")).status == 405
    assert metrics.page(request(method="HEAD")).status == 200
    assert Metrics(enabled=False).page(request()).status == 404


def test_addresses_outside_the_apis_allowed_ips_are_refused() -> None:
    allowed = {"10.0.0.7"}
    metrics = Metrics(allowed=lambda ip: ip in allowed)
    refused = metrics.page(request())  # (from 127.0.0.1)
    assert refused.status == 403 and b"ippbx_" not in bytes(refused.body)
    allowed.add("127.0.0.1")
    assert metrics.page(request()).status == 200
