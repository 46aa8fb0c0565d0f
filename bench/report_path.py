"""The report path on its own: the CPU an answered call's reports cost ippbx, without SIP.

    .venv/bin/python bench/report_path.py [--calls 6000] [--rate 300] [--repeats 3]
                                          [--receiver keep-alive|close] [--json FILE]

Why: on a shared machine a SIP step's CPU moves by ten points from one run to the next,
more than the report path's changes do. Here a worker process (pinned to core 0, uvloop)
plays calls on a real `CallRegistry` (an extension calls out through a trunk: start,
180, 200, both BYEs, the end, `--hold-ms` (1 s) apart as in bench/sip_cps.py) with ippbx's
`ReportService` on it: ExtensionStatus, the report builder, orjson, the outbox in a real
SQLite file (the CDRs written there too, as ippbx does), the delivery and its HTTP
client, in the worker's process (`[reports] own_process = false`) and, in a third run per
repeat (unless --no-courier), in the courier process, moved to core 1.
`bench/report_sink.py` answers on core 1.
A spinner keeps the loop `--busy` (0.6) of the time, in 2.4 ms turns every 4 ms, as SIP
work does at full call rate (so reports wait as they do there). Each repeat runs the
worker with one API session logged in and with nobody logged in (the registry, the
extension states and the spinner alone), then with the session and the courier, and
reports the CPU (getrusage, user + system) per call of each and the differences: what
the reports cost a call, and per report; with the courier, what they cost ippbx's
process and the courier's own CPU per call (from /proc). IPPBX_BENCH_REF=REF runs one
commit's code (bench/benchlib.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from benchlib import (
    IPPBX_CPU,
    LOAD_CPU,
    Procs,
    bench_main,
    ippbx_source,
    log,
    machine_info,
    median,
    print_machine,
    run_worker,
    save_json,
    shown_args,
    table,
)
from sip_cps import Sink

REPORTS_PER_CALL = 7  # ALERT, RING, ANSWER, ANSWER(ED), BYE, BYE, NewCdr


def courier_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) of process `pid` so far (0 without one)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def play(calls: int, rate: float, hold_ms: float, port: int, session: bool,
               busy: float, own_process: bool) -> dict:
    """(worker) `calls` calls at `rate`/s; CPU seconds and what the receiver got."""
    import hashlib

    import uvloop  # noqa: F401  (the loop runs under uvloop: see worker())

    from ippbx.api.reports import ReportService
    from ippbx.api.sessions import SessionManager
    from ippbx.config import load_config
    from ippbx.pbx.calls import CallRegistry, Leg, LegKind, LegStatus
    from ippbx.pbx.cdr import CdrRecorder
    from ippbx.store.sqlite import Store

    config = load_config(None)
    if "own_process" in type(config.reports).model_fields:  # (not in older commits)
        config = config.model_copy(update={"reports": config.reports.model_copy(
            update={"own_process": own_process})})
    with tempfile.TemporaryDirectory(prefix="ippbx-bench-reports-") as tmp:
        store = Store(Path(tmp) / "db.sqlite3")
        registry = CallRegistry()
        registry.subscribe(CdrRecorder(store))  # (as App does: the CDRs share the batches)
        sessions = SessionManager(config.api)
        service = ReportService(config, registry, sessions, store)
        if session:
            md5 = hashlib.md5(config.api.password.encode()).hexdigest()
            sessions.login(config.api.username, md5, "127.0.0.1", "openvox", port=str(port))
        await service.start()
        pid = getattr(service.delivery, "pid", None)  # the courier ([reports] own_process)
        if pid is not None:  # (on the receiver's core, as bench/sip_cps.py puts it)
            os.sched_setaffinity(pid, {int(LOAD_CPU)})
        loop = asyncio.get_running_loop()
        ext = config.extensions[0].number
        ended = asyncio.Event()
        left = calls

        def end(caller: str, callee: str) -> None:
            nonlocal left
            registry.end_leg(callee, 200)
            registry.end_leg(caller, 200)
            left -= 1
            if not left:
                ended.set()

        def one() -> None:
            caller = Leg(LegKind.EXTENSION, ext, "95551234", extension=ext)
            call = registry.start_call(caller, "95551234")
            out = Leg(LegKind.TRUNK, "66666", "5551234", trunk="carrier")
            registry.add_callee(call, out)
            registry.ringing(out.id)
            registry.set_status(out.id, LegStatus.TALKING)
            registry.set_status(caller.id, LegStatus.TALKING)
            loop.call_later(hold_ms / 1000, end, caller.id, out.id)

        period = 0.004

        def spin() -> None:  # the SIP work of a loaded ippbx: long loop iterations
            until = time.perf_counter() + busy * period
            while time.perf_counter() < until:
                pass
            loop.call_later(period * (1 - busy), spin)

        if busy > 0:
            spin()
        await asyncio.sleep(0.5)  # BootUp delivered, the connection open
        before = resource.getrusage(resource.RUSAGE_SELF)
        courier_before = courier_cpu(pid)
        t0 = time.monotonic()
        for n in range(calls):
            due = t0 + n / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            one()
        await ended.wait()
        want = service.delivery.queued
        while session and service.delivery.delivered + service.delivery.dropped < want:
            await asyncio.sleep(0.002)
        wall = time.monotonic() - t0
        after = resource.getrusage(resource.RUSAGE_SELF)
        courier = courier_cpu(pid) - courier_before
        await service.stop()
        written = store.transactions
        store.close()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"cpu": cpu, "wall": wall, "delivered": service.delivery.delivered,
            "dropped": service.delivery.dropped, "transactions": written,
            "courier_cpu": courier}


def worker(args: argparse.Namespace) -> int:
    import uvloop

    os.sched_setaffinity(0, {int(IPPBX_CPU)})
    result = uvloop.run(play(args.calls, args.rate, args.hold_ms, args.port, args.session,
                             args.busy, args.own_process))
    print(json.dumps(result))
    return 0


def path_worker(source: Path, args: argparse.Namespace, port: int, session: bool,
                own_process: bool = False) -> dict:
    argv = ["--calls", str(args.calls), "--rate", str(args.rate), "--hold-ms",
            str(args.hold_ms), "--port", str(port), "--busy", str(args.busy)]
    if session:
        argv.append("--session")
    if own_process:
        argv.append("--own-process")
    return run_worker("report_path.py", argv, source, args.calls / args.rate + 120)


def main(procs: Procs, args: argparse.Namespace) -> int:
    info = machine_info()
    print_machine(info, shown_args(sys.argv))
    source, described = ippbx_source()
    log(f"ippbx code: {described}")
    wd = Path(tempfile.mkdtemp(prefix="ippbx-bench-report-path-"))
    sink = Sink(procs, wd, keep_alive=args.receiver == "keep-alive")
    rows, per_call, per_call_courier = [], [], []
    for repeat in range(args.repeats):
        without = path_worker(source, args, sink.port, session=False)
        with_ = path_worker(source, args, sink.port, session=True)
        base_us = 1e6 * without["cpu"] / args.calls
        app_us = 1e6 * with_["cpu"] / args.calls
        reports = with_["delivered"] / args.calls
        per_call.append(app_us - base_us)
        row = [repeat + 1, f"{base_us:.0f}", f"{app_us:.0f}", f"{app_us - base_us:.0f}",
               f"{(app_us - base_us) / max(reports, 1):.1f}", f"{reports:.2f}",
               with_["dropped"], with_["transactions"]]
        if args.courier:
            by_courier = path_worker(source, args, sink.port, session=True, own_process=True)
            pbx_us = 1e6 * by_courier["cpu"] / args.calls
            per_call_courier.append(pbx_us - base_us)
            row += [f"{pbx_us - base_us:.0f}",
                    f"{1e6 * by_courier['courier_cpu'] / args.calls:.0f}",
                    by_courier["dropped"]]
        rows.append(row)
    head = ["run", "µs CPU/call, nobody logged in", "with a session", "reports' cost/call",
            "per report (µs)", "reports/call", "dropped", "SQLite transactions"]
    if args.courier:
        head += ["with the courier: reports' cost/call in ippbx", "the courier's CPU/call",
                 "dropped"]
    log(table(head, rows))
    log(f"median cost of the reports: {median(per_call):.0f} µs CPU per call "
        f"({args.calls} calls at {args.rate:g}/s, receiver {args.receiver}, "
        f"loop busy {args.busy:g})")
    if per_call_courier:
        log(f"with the courier ([reports] own_process): {median(per_call_courier):.0f} µs "
            "of ippbx's CPU per call")
    sink.stop()
    save_json(args.json, {"machine": info, "code": described, "rows": rows,
                          "median_us_per_call": median(per_call),
                          "median_us_per_call_courier": (median(per_call_courier)
                                                         if per_call_courier else None)})
    return 0


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--calls", type=int, default=6000)
    p.add_argument("--rate", type=float, default=300.0)
    p.add_argument("--hold-ms", type=float, default=1000.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--busy", type=float, default=0.6,
                   help="share of the loop's time a spinner takes, in both runs (the SIP "
                        "work of a loaded ippbx: reports then wait for longer iterations)")
    p.add_argument("--receiver", choices=["keep-alive", "close"], default="keep-alive")
    p.add_argument("--courier", action=argparse.BooleanOptionalAction, default=True,
                   help="also a run per repeat with the reports POSTed by the courier "
                        "process ([reports] own_process; moved to core 1): the CPU it "
                        "leaves ippbx per call, and its own (the other runs POST them "
                        "from ippbx's process)")
    p.add_argument("--json")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--session", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--own-process", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args()


if __name__ == "__main__":
    ARGS = parse()
    if ARGS.worker:
        sys.exit(worker(ARGS))
    bench_main(lambda procs: main(procs, ARGS), 30 * 60)
