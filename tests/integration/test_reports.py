"""Call reports end to end: a real ippbx, real sipp calls, a real HTTP receiver.

Sessions log in through the API with different destinations (relative url, absolute
`host:port/path` without and with scheme, no url) and forms (v0.0.1 OpenVox flat,
v1.1.0 and login version 1.0.2 Yeastar `call:[…]`); the receiver records every POST.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from reports_harness import SN, Pbx, Receiver, call_reports, caller, config_text, until
from sipp_harness import SippFactory, free_port


# -- tests ----------------------------------------------------------------------------------
def statuses(got: list[dict[str, Any]], ext: str = "1001") -> list[str]:
    """The ExtensionStatus values an extension went through, in order."""
    return [r["status"] for r in got if r["action"] == "ExtensionStatus"
            and r["extension"] == ext]


async def test_answered_call_reports_in_both_forms(tmp_path: Path, sipp: SippFactory) -> None:
    carrier_port = free_port()
    receiver = await Receiver().start()
    pbx = await Pbx.start(config_text(tmp_path / "db.sqlite3", free_port(),
                                      {"carrier": ("9", carrier_port)}))
    paths = ("/ov", "/ys", "/ys102", "/", "/abs/")
    try:
        port = str(receiver.port)
        ov = await pbx.login("v0.0.1", port=port, url="ov")  # relative
        # a Yeastar-path client that sends no version reads the flat form
        await pbx.login("v1.1.0", port="1", url=f"127.0.0.1:{port}/ys", urltag=1)
        await pbx.login("v1.1.0", port=port, url="ys102", version="1.0.2")
        await pbx.login("v0.0.1", port=port, version="1.0.2")  # no url: login IP + port
        await pbx.login("v0.0.1", port="1", url=f"http://127.0.0.1:{port}/abs/", urltag="1")
        carrier = await sipp("uas.xml", port=carrier_port, calls=1, trace_msg=True).astart()
        call = await caller(sipp, pbx, "95551234", calls=1, duration_ms=1500).astart()

        ring = await until(lambda: [r for r in receiver.at("/ov") if r["action"] == "RING"],
                           10, "RING")
        outboundid = ring[0]["outbound"]["outboundid"]
        live = await pbx.outbound(ov, outboundid)
        # `from` is the calling extension in the report and the query alike
        assert live == [{"outboundid": outboundid, "from": "1001", "to": "5551234",
                         "trunk": "carrier", "status": live[0]["status"]}]

        (await call.await_result(20)).assert_ok(calls=1)
        far = (await carrier.await_result(10)).assert_ok(calls=1)
        for path in paths:
            await until(lambda p=path: "Idle" in statuses(receiver.at(p))
                        and any(r["action"] == "NewCdr" for r in receiver.at(p)),
                        10, f"the last reports at {path}")
        assert await pbx.outbound(ov) == []
    finally:
        await pbx.stop()
        await receiver.stop()

    # the carrier was shown the trunk's caller id: only SIP carries it
    invite = next(m for m in far.messages()
                  if m.direction == "received" and m.first_line.startswith("INVITE"))
    assert "<sip:66666@" in (invite.header("From") or "")
    for got in receiver.got:
        assert got.headers["content-type"] == "application/json"
        assert got.headers["user-agent"] == "WebAPI"
        assert got.headers["connection"] == "keep-alive"  # ([reports] keep_alive, default)
        assert got.body["sn"] == SN

    ovr = call_reports(receiver.at("/ov"))
    callid = ovr[0]["callid"]
    trunk = {"from": "1001", "to": "5551234", "trunk": "carrier", "outboundid": outboundid}
    ext = {"extid": "1001"}
    assert ovr == [
        {"action": "ALERT", "callid": callid, "ext": ext, "sn": SN},
        {"action": "RING", "callid": callid, "outbound": trunk, "ext": ext, "sn": SN},
        {"action": "ANSWER", "callid": callid, "outbound": trunk, "ext": ext, "sn": SN},
        {"action": "ANSWER", "callid": callid, "ext": ext, "outbound": trunk, "sn": SN},
        {"action": "BYE", "callid": callid, "ext": ext, "outbound": trunk, "sn": SN},
        {"action": "BYE", "callid": callid, "outbound": trunk, "ext": ext, "sn": SN},
        ovr[6],
    ]
    assert [list(r) for r in ovr[1:4]] == [["action", "callid", "outbound", "ext", "sn"],
                                           ["action", "callid", "outbound", "ext", "sn"],
                                           ["action", "callid", "ext", "outbound", "sn"]]
    cdr = ovr[6]
    assert list(cdr) == ["action", "callid", "timestart", "callfrom", "callto",
                         "callduraction", "talkduraction", "status", "type", "srctrunkname",
                         "desttrunkname", "sn"]
    assert cdr["callid"] == callid and cdr["callfrom"] == "1001"
    assert cdr["callto"] == "95551234" and cdr["status"] == "ANSWERED"
    assert cdr["type"] == "Outbound" and cdr["desttrunkname"] == "carrier"
    assert cdr["srctrunkname"] == ""
    assert 1 <= int(cdr["talkduraction"]) <= int(cdr["callduraction"]) <= 4
    for path in ("/ov", "/ys", "/abs/"):  # the flat form
        assert call_reports(receiver.at(path)) == ovr, path
        assert statuses(receiver.at(path)) == ["Registered", "InUse", "Idle"], path

    out, ex = {"outbound": trunk}, {"ext": ext}
    for path in ("/ys102", "/"):  # login version 1.0.2, on either path: the call:[…] form
        ysr = call_reports(receiver.at(path))
        assert statuses(receiver.at(path)) == ["Registered", "Busy", "Idle"], path
        assert [r["action"] for r in ysr] == [
            "ALERT", "RING", "ANSWER", "ANSWERED", "BYE", "BYE", "NewCdr"]
        assert ysr[0] == {"action": "ALERT", "callid": callid, "call": [ex], "sn": SN}
        assert ysr[1] == {"action": "RING", "callid": callid, "call": [out, ex], "sn": SN}
        assert ysr[2]["call"] == [out, ex] and ysr[3]["call"] == [ex, out]
        assert ysr[4]["call"] == [ex, out] and ysr[5]["call"] == [out, ex]
        assert ysr[6] == cdr


async def test_busy_and_no_answer_give_callfailed_and_cdr(
    tmp_path: Path, sipp: SippFactory
) -> None:
    busy_port, ringer_port = free_port(), free_port()
    receiver = await Receiver().start()
    text = config_text(tmp_path / "db.sqlite3", free_port(),
                       {"busy": ("8", busy_port), "ringer": ("7", ringer_port)}, no_answer=1)
    pbx = await Pbx.start(text)
    try:
        await pbx.login("v0.0.1", port=str(receiver.port), url="ov")
        await pbx.login("v1.1.0", port=str(receiver.port), url="ys", version="1.0.2")
        busy = await sipp("uas_busy.xml", port=busy_port, calls=1).astart()
        call = await caller(sipp, pbx, "85550001", scenario="reports_uac_fail.xml",
                            calls=1).astart()
        (await call.await_result(15)).assert_ok(calls=1)
        (await busy.await_result(10)).assert_ok(calls=1)
        await until(lambda: len([r for r in receiver.at("/ys") if r["action"] == "NewCdr"]),
                    10, "the busy call's NewCdr")

        ringer = await sipp("uas_ring_forever.xml", port=ringer_port, calls=1).astart()
        call = await caller(sipp, pbx, "75550002", scenario="reports_uac_fail.xml",
                            calls=1).astart()
        (await call.await_result(15)).assert_ok(calls=1)
        (await ringer.await_result(10)).assert_ok(calls=1)
        await until(lambda: len([r for r in receiver.at("/ys") if r["action"] == "NewCdr"])
                    == 2, 10, "the unanswered call's NewCdr")
        # a number no route takes: refused (404) by the dial plan, reported all the same
        call = await caller(sipp, pbx, "55550003", scenario="reports_uac_fail.xml",
                            calls=1).astart()
        (await call.await_result(15)).assert_ok(calls=1)
        await until(lambda: len([r for r in receiver.at("/ys") if r["action"] == "NewCdr"])
                    == 3, 10, "the refused call's NewCdr")
        await until(lambda: len(receiver.at("/ov")) == len(receiver.at("/ys")), 5, "all")
        cdrs = pbx.app.store.cdrs()
    finally:
        await pbx.stop()
        await receiver.stop()

    ovr = call_reports(receiver.at("/ov"))
    assert [r["action"] for r in ovr] == ["CallFailed", "NewCdr",
                                          "ALERT", "RING", "CallFailed", "NewCdr",
                                          "CallFailed", "NewCdr"]
    failed_busy, cdr_busy, _, ring, failed_na, cdr_na, refused, cdr_refused = ovr
    assert refused == {"action": "CallFailed", "reason": 404, "callid": refused["callid"],
                       "ext": {"extid": "1001"}, "sn": SN}
    assert cdr_refused["callid"] == refused["callid"]
    assert (cdr_refused["status"], cdr_refused["callfrom"], cdr_refused["callto"],
            cdr_refused["type"]) == ("FAILED", "1001", "55550003", "Internal")
    assert statuses(receiver.at("/ov")) == 3 * ["InUse", "Idle"]
    assert failed_busy["reason"] == 486 and list(failed_busy)[:3] == ["action", "reason",
                                                                      "callid"]
    assert failed_busy["outbound"]["trunk"] == "busy" and failed_busy["ext"] == {
        "extid": "1001"}
    assert list(failed_busy)[3:] == ["outbound", "ext", "sn"]
    assert cdr_busy["status"] == "BUSY" and cdr_busy["talkduraction"] == "0"
    assert cdr_busy["callto"] == "85550001" and cdr_busy["desttrunkname"] == "busy"
    assert failed_na["reason"] == 480 and cdr_na["status"] == "NO ANSWER"
    assert failed_na["outbound"]["outboundid"] == ring["outbound"]["outboundid"]
    assert len({failed_busy["callid"], cdr_busy["callid"]}) == 1
    assert len({ring["callid"], failed_na["callid"], cdr_na["callid"]}) == 1

    ysr = call_reports(receiver.at("/ys"))
    assert [r["action"] for r in ysr] == [r["action"] for r in ovr]
    assert ysr[0]["reason"] == "486 Busy Here" and ysr[4]["reason"] == "480 Temporarily unavailable"
    assert ysr[0]["call"] == [{"outbound": failed_busy["outbound"]}, {"ext": {"extid": "1001"}}]
    assert ysr[6]["reason"] == "404 NOT found"
    assert [(c.status, c.cause, c.type) for c in cdrs] == [
        ("BUSY", 486, "Outbound"), ("NO ANSWER", 480, "Outbound"), ("FAILED", 404, "Internal")]


@pytest.mark.slow
async def test_receiver_down_60s_under_20_calls_per_second_then_up(
    tmp_path: Path, sipp: SippFactory
) -> None:
    """The acceptance run: a receiver down for 60 s while calls go on at 20/s, then up:
    every report arrives, in order within each call and extension, none twice; another
    receiver is not held up meanwhile."""
    rate, seconds = 20, 60
    calls = rate * seconds
    carrier_port = free_port()
    down = Receiver()  # not started: down
    other = await Receiver().start()
    pbx = await Pbx.start(config_text(tmp_path / "db.sqlite3", free_port(),
                                      {"carrier": ("9", carrier_port)}, backoff_max=1.0))
    try:
        await pbx.login("v0.0.1", port=str(down.port), url="ov")
        await pbx.login("v1.1.0", port=str(down.port), url="ys", version="1.0.2")
        await pbx.login("v0.0.1", port=str(other.port), url="live")
        went_down = time.monotonic()
        carrier = await sipp("uas.xml", port=carrier_port, calls=calls,
                             sipp_timeout_s=seconds + 40).astart()
        burst = await caller(sipp, pbx, "95551234", calls=calls, rate=rate, duration_ms=0,
                             limit=20, sipp_timeout_s=seconds + 30).astart()
        (await burst.await_result(seconds + 30)).assert_ok(calls=calls)
        (await carrier.await_result(10)).assert_ok(calls=calls)
        # the live receiver is not held up by the dead one
        await until(lambda: sum(r["action"] == "NewCdr" for r in other.at("/live")) == calls,
                    20, "every NewCdr at the live receiver")
        assert down.got == []
        answered = {r.callid: r.answer for r in pbx.app.store.cdrs()}
        latency = sorted(g.at - answered[g.body["callid"]] for g in other.got
                         if g.body["action"] == "ANSWER" and list(g.body)[2] == "outbound")
        p50, p99 = latency[len(latency) // 2], latency[int(len(latency) * 0.99)]
        print(f"answer → receiver latency over {len(latency)} calls: "
              f"p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms")
        # how fast is a benchmark figure (printed here), not a timed assertion
        assert len(latency) == calls
        assert pbx.app.store.outbox_count() >= 2 * 7 * calls
        await asyncio.sleep(max(0.0, went_down + seconds - time.monotonic()))
        up = time.monotonic()
        await down.start()
        await until(lambda: pbx.app.reports.delivery.pending() == 0, 120,
                    "the outbox to drain")
        print(f"{len(down.got)} reports delivered in {time.monotonic() - up:.1f} s "
              "after the receiver came back")
        assert pbx.app.store.outbox_count() == 0 and pbx.app.reports.delivery.dropped == 0
    finally:
        await pbx.stop()
        await down.stop()
        await other.stop()

    for path in ("/ov", "/ys", "/live"):
        got = (down if path != "/live" else other).at(path)
        per_call: dict[str, list[str]] = defaultdict(list)
        for report in call_reports(got):
            per_call[report["callid"]].append(report["action"])
        answered = "ANSWERED" if path == "/ys" else "ANSWER"
        expected = ["ALERT", "RING", "ANSWER", answered, "BYE", "BYE", "NewCdr"]
        assert len(per_call) == calls, path
        assert Counter(tuple(v) for v in per_call.values()) == {tuple(expected): calls}, path
        # the extension's status reports kept their order too: they alternate, no repeat
        seen = statuses(got)
        assert seen[0] == "Registered" and seen[-1] == "Idle", path
        assert all(a != b for a, b in zip(seen[1:], seen[2:], strict=False)), path
    live = [r for r in other.at("/live") if r["action"] != "BootUp"]
    mine = [g.body for g in down.got if g.path == "/ov"]
    assert sorted(map(repr, mine)) == sorted(map(repr, live))  # the same reports, once each


async def test_a_receiver_that_rejects_extension_status_delays_no_call_report(
    tmp_path: Path, sipp: SippFactory
) -> None:
    """A receiver answering 400 to every ExtensionStatus (it wants a callid): the first
    such report is tried 3 times (1 s, then 2 s apart) and dropped, the later ones once
    each (the receiver has shown it refuses them); the calls' RING, ANSWER and NewCdr
    arrive at once all the same. Two sessions with one destination: one copy."""
    carrier_port = free_port()

    def no_status(body: dict[str, Any]) -> int:
        return 400 if body["action"] == "ExtensionStatus" else 200

    receiver = await Receiver(answer=no_status).start()
    pbx = await Pbx.start(config_text(tmp_path / "db.sqlite3", free_port(),
                                      {"carrier": ("9", carrier_port)}, backoff_max=60.0))
    calls = 5
    try:
        for _ in range(2):  # a connector that logged in twice: one queue, one copy
            await pbx.login("v1.1.0", port=str(receiver.port), url="crm")
        carrier = await sipp("uas.xml", port=carrier_port, calls=calls).astart()
        burst = await caller(sipp, pbx, "95551234", calls=calls, rate=2, duration_ms=500,
                             limit=1).astart()
        (await burst.await_result(30)).assert_ok(calls=calls)
        (await carrier.await_result(10)).assert_ok(calls=calls)
        await until(lambda: sum(g.body["action"] == "NewCdr" for g in receiver.got) == calls,
                    10, "every NewCdr")
        await until(lambda: pbx.app.reports.delivery.pending() == 0, 20, "the rejected ones")
        cdrs = {r.callid: r for r in pbx.app.store.cdrs()}
    finally:
        await pbx.stop()
        await receiver.stop()

    late = []
    for got in receiver.got:
        record = cdrs.get(got.body.get("callid", ""))
        if record is None or got.body["action"] not in ("RING", "ANSWER", "NewCdr"):
            continue
        event = {"RING": record.start, "ANSWER": record.answer, "NewCdr": record.end}
        delay = got.at - (event[got.body["action"]] or record.start)
        if delay > 1.0:
            late.append((got.body["action"], round(delay, 2)))
    assert late == []  # each within 1 s of its event, behind no rejected report
    per_call = Counter(g.body["callid"] for g in receiver.got if "callid" in g.body)
    assert sorted(per_call.values()) == [7] * calls  # one copy of each, two sessions
    posts = [g for g in receiver.got if g.body["action"] == "ExtensionStatus"]
    first = [g.at for g in posts[:3]]
    assert first[1] - first[0] >= 0.9 and first[2] - first[1] >= 1.9
    # 3 tries of the first, then every status change of the calls once, in order
    assert [g.body["status"] for g in posts] == 3 * ["Registered"] + calls * ["InUse", "Idle"]


async def test_sessions_and_reports_survive_a_restart(tmp_path: Path, sipp: SippFactory) -> None:
    carrier_port = free_port()
    receiver = Receiver()  # down while the first run lasts
    text = config_text(tmp_path / "db.sqlite3", free_port(), {"carrier": ("9", carrier_port)})
    pbx = await Pbx.start(text)
    try:
        token = await pbx.login("v0.0.1", port=str(receiver.port), url="ov")
        yeastar = await pbx.login("v1.1.0", port=str(receiver.port), url="ys",
                                  version="1.0.2")
        carrier = await sipp("uas.xml", port=carrier_port, calls=2).astart()
        call = await caller(sipp, pbx, "95551234", calls=2, duration_ms=200).astart()
        (await call.await_result(20)).assert_ok(calls=2)
        (await carrier.await_result(10)).assert_ok(calls=2)
        await until(lambda: pbx.app.store.cdr_count() == 2, 5, "two CDRs")
        stored = pbx.app.store.outbox_count()
        assert stored >= 2 * 2 * 7
    finally:
        await pbx.stop()

    pbx = await Pbx.start(text)
    try:
        assert pbx.app.store.cdr_count() == 2
        await receiver.start()
        await until(lambda: pbx.app.reports.delivery.pending() == 0, 15, "the outbox to drain")
        assert len(receiver.got) == stored + 2  # and a BootUp each
        for path, answered in (("/ov", "ANSWER"), ("/ys", "ANSWERED")):
            got = receiver.at(path)
            # BootUp has a lane of its own: it need not wait for the stored reports
            assert [r for r in got if r["action"] == "BootUp"] == [{"action": "BootUp",
                                                                     "sn": SN}]
            per_call: dict[str, list[str]] = defaultdict(list)
            for report in call_reports(got):
                per_call[report["callid"]].append(report["action"])
            assert list(per_call.values()) == 2 * [
                ["ALERT", "RING", "ANSWER", answered, "BYE", "BYE", "NewCdr"]]
        assert await pbx.outbound(token) == []  # the tokens still work
        answer = await pbx.post("v1.1.0", "outbound/query", {}, yeastar)
        assert answer == {"status": "Success", "outbound": []}
        # CDRs of the first run, downloaded with the first run's token
        now = time.time()
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        body = {"extid": "1001", "starttime": f"{day} 00:00:00", "endtime": f"{day} 23:59:59"}
        answer = await pbx.post("v0.0.1", "cdr/get_random", body, token)
        assert answer["status"] == "Success" and len(answer["random"]) == 32
        url = (f"http://127.0.0.1:{pbx.app.api.port}/api/v0.0.1/cdr/download"
               f"?extid=1001&starttime={body['starttime']}&endtime={body['endtime']}"
               f"&token={token}&random={answer['random']}")
        response = await pbx.client.get(url)
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        lines = response.text.splitlines()
        assert lines[0].startswith("callid,timestart,callfrom,callto,callduraction,")
        assert len(lines) == 3 and all(",1001,95551234," in line for line in lines[1:])
        again = (await pbx.client.get(url)).json()
        assert again == {"status": "Failed", "errno": "20020"}
    finally:
        await pbx.stop()
        await receiver.stop()
