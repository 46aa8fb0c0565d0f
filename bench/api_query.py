"""HTTP API load: `outbound/query` with N real calls held, against a raw ASGI baseline.

    .venv/bin/python bench/api_query.py                      # N = 0, 1000, 10000, 50000
    .venv/bin/python bench/api_query.py --calls 0,1000 --seconds 3      # quick

One ippbx (core 0): extension 1001 registers and scenario (a) calls of sip_cps.py
(digest-authenticated extension → trunk, sipp UAS as carrier) are added in batches at
--rate calls/s until N are held, then --settle-seconds pass (the SIP transactions of the
ramp are kept 32 s after they end: the figures are for N calls held, not for the ramp's
tail). At each N the baseline is measured first, with ippbx holding its calls beside it:
bench/asgi_hello.py, a raw ASGI app answering a small JSON body, on uvicorn with
httptools, uvloop and one worker, pinned to core 0 as ippbx is. Then wrk on core 1
(`wrk -t2 -c64 -d10s -s post.lua --latency`, POST JSON, token from a login) asks
`outbound/query` for one live id, ten live ids, and all calls (with N = 0: ids that do not
exist, and all = []). Each body is first checked once (status Success, the expected number
of calls). Prints req/s, p50, p99 and the ratio to the baseline of the same N.

Goals (BENCHMARKS.md): one id with 50k live >= 0.8 x raw ASGI req/s; all calls with 1k
live p99 < 20 ms. Exit 0 when every figure was measured, 1 otherwise, 2 if sipp or wrk is
missing (Debian: apt-get install sip-tester wrk).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from benchlib import (
    BENCH,
    IPPBX_CPU,
    VENV_BIN,
    Procs,
    bench_main,
    free_port,
    log,
    machine_info,
    pinned,
    print_machine,
    require_tools,
    rss_kb,
    save_json,
    table,
    wait_bound,
    workdir,
)
from heldlib import OutboundBench
from wrklib import run_wrk

GOAL_ONE_RATIO = 0.8
GOAL_ALL_1K_P99_MS = 20.0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", default="0,1000,10000,50000", help="comma list of N (ascending)")
    p.add_argument("--rate", type=float, default=300.0, help="rate calls are added at, /s")
    p.add_argument("--settle-seconds", type=float, default=40.0,
                   help="wait after each ramp before measuring")
    p.add_argument("--seconds", type=int, default=10, help="wrk -d")
    p.add_argument("--threads", type=int, default=2, help="wrk -t")
    p.add_argument("--connections", type=int, default=64, help="wrk -c")
    p.add_argument("--max-minutes", type=float, default=9.5, help="hard wall-clock limit")
    p.add_argument("--json", help="write the results to this JSON file")
    return p.parse_args()


def baseline(procs: Procs, base, args: argparse.Namespace,  # noqa: ANN001
             label: str) -> dict[str, object]:
    wd = base / f"asgi-{label}"
    wd.mkdir()
    port = free_port()
    argv = [str(VENV_BIN / "python"), "-m", "uvicorn", "asgi_hello:app",
            "--app-dir", str(BENCH), "--host", "127.0.0.1", "--port", str(port),
            "--http", "httptools", "--loop", "uvloop", "--workers", "1", "--lifespan", "off",
            "--no-access-log", "--log-level", "warning"]
    proc = procs.spawn(pinned(IPPBX_CPU, argv), wd, "uvicorn")
    try:
        if not wait_bound(port, "tcp", 20, proc):
            raise RuntimeError("uvicorn did not start: "
                               + (wd / "uvicorn.stderr").read_text(errors="replace")[-1000:])
        body = json.dumps({"outboundid": "1700000000.1"})
        res = run_wrk(procs, wd, "wrk", f"http://127.0.0.1:{port}/api/v0.0.1/outbound/query",
                      body, args.seconds, args.threads, args.connections)
    finally:
        procs.stop(proc)
    log(f"{label}: raw ASGI (uvicorn+httptools+uvloop, 1 worker): {res.rps:,.0f} req/s, "
        f"p50 {res.p50_ms:.2f} ms, p99 {res.p99_ms:.2f} ms {res.errors}")
    return {"rps": res.rps, "p50_ms": res.p50_ms, "p99_ms": res.p99_ms, "errors": res.errors,
            "non_2xx": res.non_2xx}


def main(procs: Procs) -> int:
    args = parse_args()
    info = machine_info()
    print_machine(info, "bench/api_query.py " + " ".join(sys.argv[1:]))
    base = workdir("api")
    log(f"work directory: {base}")
    counts = sorted(int(n) for n in args.calls.split(",") if n.strip())
    rows: list[list[object]] = []
    results: list[dict[str, object]] = []
    raws: dict[int, dict[str, object]] = {}
    ok = True
    wd = base / "ippbx"
    wd.mkdir()
    bench = OutboundBench(procs, wd)
    try:
        bench.start()
        held = 0
        hold_ms = int(args.max_minutes * 60 * 1000)  # longer than the script may run
        for n in counts:
            if n > held:
                ramp = bench.hold(n - held, args.rate, hold_ms,
                                  timeout=(n - held) / args.rate * 2 + 60)
                log(f"N={n}: ramp: {ramp.describe()} -> "
                    f"{'clean' if ramp.clean else 'NOT clean'}; "
                    f"settling {args.settle_seconds:g} s")
                held = n
                time.sleep(args.settle_seconds)
            raw = raws[n] = baseline(procs, base, args, f"N={n}")
            raw_rps = float(raw["rps"]) or float("nan")  # type: ignore[arg-type]
            rows.append(["raw ASGI hello", f"{n:,}", "-", f"{raw_rps:,.0f}",
                         f"{raw['p50_ms']:.2f}", f"{raw['p99_ms']:.2f}", "1.00", ""])
            calls = bench.pbx.outbound(timeout=120)
            live = [c["outboundid"] for c in calls]
            if len(live) != n:
                log(f"N={n}: ippbx lists {len(live)} calls, expected {n}")
                ok = False
            if live:
                step = max(1, len(live) // 10)
                one, ten = live[len(live) // 2], live[::step][:10]
            else:  # ids that do not exist: the lookup still runs
                one, ten = "1700000000.1", [f"1700000000.{i}" for i in range(1, 11)]
            queries = [("one id", one, 1 if live else 0),
                       ("ten ids", ",".join(ten), min(10, len(live))),
                       ("all", "", len(live))]
            for label, ids, expect in queries:
                answer = bench.pbx.post("outbound/query", {"outboundid": ids}, timeout=120)
                got = len(answer.get("outbound", []))
                if answer.get("status") != "Success" or got != expect:
                    log(f"N={n} {label}: answer has {got} calls, expected {expect}: "
                        f"{str(answer)[:200]}")
                    ok = False
                res = run_wrk(procs, wd, f"wrk-{n}-{label.replace(' ', '')}",
                              bench.pbx.query_url("outbound/query"),
                              json.dumps({"outboundid": ids}), args.seconds, args.threads,
                              args.connections)
                ratio = res.rps / raw_rps
                note = " ".join(x for x in (res.errors, f"non-2xx {res.non_2xx}"
                                            if res.non_2xx else "") if x)
                log(f"N={n} {label}: {res.rps:,.1f} req/s, p50 {res.p50_ms:.2f} ms, "
                    f"p99 {res.p99_ms:.2f} ms, x{ratio:.2f} of raw {note}")
                rows.append([f"outbound/query {label}", f"{n:,}", expect, f"{res.rps:,.1f}",
                             f"{res.p50_ms:.2f}", f"{res.p99_ms:.2f}", f"{ratio:.2f}", note])
                results.append({"calls": n, "query": label, "returned": expect,
                                "rps": res.rps, "p50_ms": res.p50_ms, "p99_ms": res.p99_ms,
                                "ratio": ratio, "errors": res.errors,
                                "non_2xx": res.non_2xx, "requests": res.requests})
                if res.requests == 0:
                    ok = False
            log(f"N={n}: ippbx RSS {rss_kb(bench.pbx.pid) / 1024:.1f} MiB")
            time.sleep(0.5)
    except RuntimeError as exc:
        log(f"could not complete: {exc}")
        ok = False
    finally:
        bench.close()
    log("")
    log(table(["query", "N live", "calls returned", "req/s", "p50 ms", "p99 ms",
               "x raw ASGI", "wrk notes"], rows))
    one50 = [r for r in results if r["calls"] == 50_000 and r["query"] == "one id"]
    if one50:
        ratio = float(one50[0]["ratio"])  # type: ignore[arg-type]
        log(f"goal one id with 50k live >= {GOAL_ONE_RATIO} x raw: "
            f"{'MET' if ratio >= GOAL_ONE_RATIO else 'NOT MET'} ({ratio:.2f})")
    all1k = [r for r in results if r["calls"] == 1000 and r["query"] == "all"]
    if all1k:
        p99 = float(all1k[0]["p99_ms"])  # type: ignore[arg-type]
        log(f"goal all calls with 1k live p99 < {GOAL_ALL_1K_P99_MS:g} ms: "
            f"{'MET' if p99 < GOAL_ALL_1K_P99_MS else 'NOT MET'} ({p99:.1f} ms)")
    save_json(args.json, {"machine": info, "args": vars(args), "raw": raws,
                          "results": results})
    return 0 if ok else 1


if __name__ == "__main__":
    require_tools("sipp", "wrk")
    bench_main(main, parse_args().max_minutes * 60)
