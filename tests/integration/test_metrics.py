"""`GET /metrics` of a real ippbx, scraped over real HTTP and parsed with
`prometheus_client.parser`, while sipp phones and carriers register and call through it
on loopback, a report receiver takes its call reports, and rtpengine is stopped and
killed under it.

The counters must move with what happened: an answered call, a busy one with its 486,
an unroutable one with its 404, a registration, API requests by errno, reports
delivered with their latency; the token and `enabled = false` guard the page.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pbx_harness import PbxHarness, Start, TrunkSpec, ext_password, rejected_with
from prometheus_client.parser import text_string_to_metric_families
from reports_harness import Receiver
from sipp_harness import SippFactory, free_port, free_port_block

NUMBER = "5551234"  # dialled as 9 + NUMBER, out through the trunk "carrier"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text page, by (sample name, labels)."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def get(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when the page does not have it)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def metrics_url(pbx: PbxHarness) -> str:
    return f"http://127.0.0.1:{pbx.app.api.port}/metrics"


async def scrape(pbx: PbxHarness) -> Samples:
    response = await pbx.client.get(metrics_url(pbx))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


async def scrape_until(pbx: PbxHarness, check: Any, what: str, timeout: float = 10) -> Samples:
    """Scrape until `check(samples)` holds; the samples that satisfied it."""
    found: list[Samples] = []

    async def ok() -> bool:
        samples = await scrape(pbx)
        found[:] = [samples]
        return bool(check(samples))

    await pbx.wait_for(ok, timeout, what)
    return found[0]


def caller(sipp: SippFactory, pbx: PbxHarness, scenario: str, dialled: str,
           **kwargs: Any) -> Any:
    kwargs.setdefault("recv_timeout_ms", 5000)
    return sipp(scenario, remote=pbx.sip_address, service=dialled, calls=1,
                sipp_timeout_s=15, auth=("1001", ext_password("1001")),
                keys={"user": "1001"}, **kwargs)


def live_calls(samples: Samples) -> float:
    return sum(v for (name, _), v in samples.items() if name == "ippbx_live_calls")


async def test_counters_move_with_real_calls_registrations_api_requests_and_reports(
    start_pbx: Start, sipp: SippFactory, tmp_path: Path
) -> None:
    trunk_port = free_port()
    receiver = await Receiver().start()
    try:
        pbx = await start_pbx([TrunkSpec("carrier", trunk_port)])
        await pbx.login(report_port=receiver.port)  # (a session whose reports we take)
        before = await scrape(pbx)
        assert get(before, "ippbx_api_requests_total", endpoint="login", errno="0") == 2
        assert get(before, "ippbx_registered_extensions") == 0
        assert live_calls(before) == 0
        assert get(before, "ippbx_call_setups_per_second") == 0
        assert get(before, "ippbx_trunk_status", trunk="carrier", status="Unknown") == 1
        assert get(before, "ippbx_trunk_channels_max", trunk="carrier") == 0
        assert get(before, "ippbx_rtpengine_enabled") == 0
        assert abs(get(before, "ippbx_start_time_seconds") - time.time()) < 60

        # a registration
        register = sipp("pbx_register.xml", remote=pbx.sip_address, port=free_port(),
                        calls=1, auth=("1002", ext_password("1002")), keys={"user": "1002"},
                        recv_timeout_ms=3000, sipp_timeout_s=10)
        await register.astart()
        (await register.await_result(10)).assert_ok(calls=1)
        after = await scrape(pbx)
        assert get(after, "ippbx_registered_extensions") == 1
        assert get(after, "ippbx_registration_bindings") == 1
        assert get(after, "ippbx_register_requests_total", status="200") == 1
        assert get(after, "ippbx_registration_changes_total", change="registered") == 1

        # an answered outbound call: live while it lasts, on the trunk's channels
        far = await sipp("uas.xml", port=trunk_port, calls=1, sipp_timeout_s=15).astart()
        near = await caller(sipp, pbx, "uac_auth.xml", "9" + NUMBER,
                            duration_ms=1500).astart()
        during = await scrape_until(  # (the caller's dialog is up once its ACK came)
            pbx, lambda s: get(s, "ippbx_live_calls", direction="outbound",
                               state="talking") == 1 and get(s, "ippbx_sip_dialogs") == 2,
            "the call to be talking")
        assert live_calls(during) == 1
        assert get(during, "ippbx_trunk_channels_in_use", trunk="carrier") == 1
        assert get(during, "ippbx_call_attempts_total", direction="outbound") == 1
        assert get(during, "ippbx_calls_answered_total", direction="outbound") == 1
        (await near.await_result(15)).assert_ok(calls=1)
        (await far.await_result(10)).assert_ok(calls=1)
        await pbx.wait_idle()

        # a busy carrier (486) and an unroutable number (404)
        far = await sipp("uas_busy.xml", port=trunk_port, calls=1, sipp_timeout_s=15).astart()
        near = await caller(sipp, pbx, rejected_with(tmp_path, 486), "9" + NUMBER).astart()
        (await near.await_result(15)).assert_ok(calls=1)
        (await far.await_result(10)).assert_ok(calls=1)
        near = await caller(sipp, pbx, rejected_with(tmp_path, 404), "0123").astart()
        (await near.await_result(15)).assert_ok(calls=1)
        await pbx.wait_idle()

        # API requests: one refused for its token, one answered
        assert (await pbx.client.post(
            f"{pbx.api_url}/outbound/query?token=nope", json={})).json()["errno"] == "20004"
        assert await pbx.outbound() == []

        # the reports of those calls reach the receiver
        async def cdrs() -> bool:
            return sum(1 for g in receiver.got if g.body.get("action") == "NewCdr") == 3

        await pbx.wait_for(cdrs, 10, "the three NewCdr reports")
        after = await scrape_until(
            pbx, lambda s: get(s, "ippbx_reports_delivered_total") == len(receiver.got),
            "the delivered reports to be counted")
    finally:
        await receiver.stop()

    assert live_calls(after) == 0
    assert get(after, "ippbx_trunk_channels_in_use", trunk="carrier") == 0
    assert get(after, "ippbx_call_attempts_total", direction="outbound") == 2
    assert get(after, "ippbx_call_attempts_total", direction="internal") == 1
    assert get(after, "ippbx_call_attempts_total", direction="inbound") == 0
    assert get(after, "ippbx_calls_answered_total", direction="outbound") == 1
    failures = {(dict(labels)["direction"], dict(labels)["code"]): v
                for (name, labels), v in after.items() if name == "ippbx_call_failures_total"}
    assert failures == {("outbound", "486"): 1, ("internal", "404"): 1}
    assert get(after, "ippbx_call_setups_per_second") > 0  # (three calls in the last 10 s)
    assert get(after, "ippbx_api_requests_total", endpoint="outbound/query",
               errno="20004") == 1
    assert get(after, "ippbx_api_requests_total", endpoint="outbound/query", errno="0") == 1
    assert get(after, "ippbx_api_sessions") == 2
    # every report queued is delivered, dropped or still pending; each delivery timed
    delivered = get(after, "ippbx_reports_delivered_total")
    assert delivered == len(receiver.got) >= 3 * 2  # (a CallFailed or BYE and a NewCdr each)
    assert get(after, "ippbx_reports_queued_total") == (
        delivered + get(after, "ippbx_reports_dropped_total")
        + get(after, "ippbx_reports_pending"))
    assert after[("ippbx_report_courier_restarts_total", frozenset())] == 0  # (the courier
    # POSTed them, and is listed)
    assert get(after, "ippbx_report_delivery_seconds_count") == delivered
    assert get(after, "ippbx_report_delivery_seconds_bucket", le="+Inf") == delivered
    assert 0 < get(after, "ippbx_report_delivery_seconds_sum") < delivered * 5
    assert 0 <= get(after, "ippbx_event_loop_lag_seconds") < 1
    assert get(after, "ippbx_event_loop_lag_max_seconds") >= get(
        after, "ippbx_event_loop_lag_seconds")
    assert get(after, "ippbx_sip_dialogs") == 0
    assert get(after, "ippbx_process_resident_memory_bytes") > 0
    await pbx.stop()


async def test_a_token_guards_the_page(start_pbx: Start) -> None:
    token = "metrics-Token-42"
    pbx = await start_pbx([], extra=f'[metrics]\ntoken = "{token}"\n')
    url = metrics_url(pbx)
    refused = await pbx.client.get(url)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert "ippbx_" not in refused.text
    for wrong in ("Bearer metrics-token-42", f"Basic {token}", token, "Bearer"):
        response = await pbx.client.get(url, headers={"Authorization": wrong})
        assert response.status_code == 401, wrong
    response = await pbx.client.get(url, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    samples = parse(response.text)
    assert get(samples, "ippbx_api_requests_total", endpoint="login", errno="0") == 1
    assert await pbx.outbound() == []  # (the API itself wants no bearer token)
    await pbx.stop()


async def test_disabled_metrics_are_not_served(start_pbx: Start) -> None:
    pbx = await start_pbx([], extra="[metrics]\nenabled = false\n")
    response = await pbx.client.get(metrics_url(pbx))
    assert response.status_code == 404
    assert "ippbx_" not in response.text
    assert await pbx.outbound() == []
    await pbx.stop()


async def test_rtpengine_health_follows_the_engine(start_pbx: Start, tmp_path: Path) -> None:
    """ippbx's own rtpengine answers its pings (up, a round trip); stopped (SIGSTOP) it
    is down; killed, it is started again and counted."""
    low = free_port_block(20)
    pbx = await start_pbx([], media={"engine": "rtpengine", "port_min": low,
                                     "port_max": low + 19})
    engine = pbx.app.media.engine
    watch = pbx.app.metrics.engine
    assert engine is not None and watch is not None
    await watch.stop()  # (again at the test's pace, not every 5 s)
    watch.every, watch.timeout = 0.1, 0.3
    watch.start()
    [name] = engine.ng_addresses

    def up(value: float) -> Any:
        return lambda s: get(s, "ippbx_rtpengine_up", engine=name) == value

    samples = await scrape_until(
        pbx, lambda s: get(s, "ippbx_rtpengine_ping_seconds", engine=name) > 0 and up(1)(s),
        "a ping answered")
    assert get(samples, "ippbx_rtpengine_enabled") == 1
    assert get(samples, "ippbx_rtpengine_ping_seconds", engine=name) < 1
    assert get(samples, "ippbx_rtpengine_restarts_total") == 0
    pid = engine.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        samples = await scrape_until(pbx, up(0), "the stopped engine to be down", 5)
        assert get(samples, "ippbx_rtpengine_request_failures_total", reason="no_answer") > 0
    finally:
        os.kill(pid, signal.SIGCONT)
    await scrape_until(pbx, up(1), "the engine to be up again", 5)
    os.kill(pid, signal.SIGKILL)
    samples = await scrape_until(
        pbx, lambda s: get(s, "ippbx_rtpengine_restarts_total") == 1 and up(1)(s),
        "the engine to be restarted", 10)
    assert engine.pid not in (None, pid)
    assert get(samples, "ippbx_rtpengine_requests_total") > 0
    await pbx.stop()


@pytest.mark.parametrize("accept", ["application/openmetrics-text; version=1.0.0", ""])
async def test_the_format_follows_what_the_scraper_accepts(
    start_pbx: Start, accept: str
) -> None:
    pbx = await start_pbx([])
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(metrics_url(pbx), headers={"Accept": accept})
    assert response.status_code == 200
    if accept:
        assert response.headers["content-type"].startswith("application/openmetrics-text")
        assert response.text.endswith("# EOF\n")
    else:
        assert response.headers["content-type"].startswith("text/plain")
        assert get(parse(response.text), "ippbx_live_calls", direction="inbound",
                   state="talking") == 0
    await pbx.stop()
