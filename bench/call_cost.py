"""Python function calls per SIP call: the size of the per-call path, counted, not timed.

CPU figures on a shared machine move by several per cent between runs (BENCHMARKS.md),
more than most single changes to the call path do. cProfile's call counts do not move:
this runs one fixed-rate step of scenario (a) (`sip_cps.py --fixed-rate RATE
--no-overload`) with ippbx under cProfile, and divides each count by the calls ippbx
started (`CallRegistry.start_call`, the warm-up's included). The SIP stack runs as Python
here (IPPBX_PURE=1): cProfile sees no call inside compiled code, so the count measures the
source, the same before and after `make native`.

    .venv/bin/python bench/call_cost.py                        # 100/s for 20 s, ~1 min
    IPPBX_BENCH_REF=d975ed5 .venv/bin/python bench/call_cost.py  # another commit's code

Prints the function calls per SIP call (builtins and C methods included), how many of
them each part made (the SIP stack, the PBX side, …; a builtin in its caller's part),
then the functions with the most calls per SIP call, and those with the most time of their own
(cProfile's clock, slowed by cProfile itself: compare shares, not microseconds).
`--keep FILE` keeps the profile (pstats) for a closer look.
"""

from __future__ import annotations

import argparse
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchlib import BENCH, VENV_BIN, log, save_json, table

# a function ippbx calls once per call, in every commit measured so far
PER_CALL = ("calls.py", "start_call")


def short(key: tuple[str, int, str]) -> str:
    path, line, name = key
    if path == "~":
        return name
    return f"{name} ({'/'.join(Path(path).parts[-2:])}:{line})"


# The parts a call's function calls are counted in, by the file of the Python function
# (a builtin counts in the part of the function that called it). Start-up's imports are
# in the profile too: a fixed cost, spread over the calls.
# (ippbx runs from a src/ directory here, the working tree's or a commit's export: its
# files are told from the venv's, which may lie under a directory named ippbx too)
PARTS = (
    ("the SIP stack", ("/src/ippbx/sip/",)),
    ("the PBX side", ("/src/ippbx/pbx/",)),
    ("API, metrics, store", ("/src/ippbx/api/", "/src/ippbx/metrics", "/src/ippbx/store/")),
    ("start-up imports", ("<frozen importlib", "/re/", "/typing.py", "/dataclasses.py",
                          "/enum.py")),
    ("ippbx, other", ("/src/ippbx/",)),
)
OTHER_PART = "asyncio and the standard library"


def part_of(path: str) -> str:
    for name, marks in PARTS:
        if any(mark in path for mark in marks):
            return name
    return OTHER_PART


def by_part(stats: dict) -> dict[str, float]:
    """Function calls per part (`PARTS`), each builtin call in its caller's part."""
    parts: dict[str, float] = {}
    for (path, _, _), value in stats.items():
        if path == "~":  # a builtin: counted where it was called from
            for (caller, _, _), edge in value[4].items():
                part = part_of(caller)
                parts[part] = parts.get(part, 0) + edge[1]
        else:
            part = part_of(path)
            parts[part] = parts.get(part, 0) + value[1]
    return dict(sorted(parts.items(), key=lambda kv: -kv[1]))


def counts(profile: Path, top: int) -> dict:
    """Calls per SIP call: in all, and the functions with most calls and most self time."""
    stats = pstats.Stats(str(profile)).stats  # type: ignore[attr-defined]
    calls = [v[1] for k, v in stats.items()
             if k[0].endswith(PER_CALL[0]) and k[2] == PER_CALL[1]]
    if not calls or not calls[0]:
        raise SystemExit(f"no {PER_CALL[1]} in the profile: no call was placed")
    sip_calls = calls[0]
    total = sum(v[1] for v in stats.values())
    busy = sum(v[2] for k, v in stats.items()
               if not k[0].endswith(("app.py", "runners.py")))  # (the loop's wait is idle)
    by_count = sorted(stats.items(), key=lambda kv: -kv[1][1])[:top]
    by_self = sorted(stats.items(), key=lambda kv: -kv[1][2])
    by_self = [kv for kv in by_self if not kv[0][0].endswith(("app.py", "runners.py"))][:top]
    return {
        "sip_calls": sip_calls,
        "per_call": total / sip_calls,
        "by_part": {part: n / sip_calls for part, n in by_part(stats).items()},
        "by_count": [(short(k), v[1] / sip_calls) for k, v in by_count],
        "by_self": [(short(k), 100 * v[2] / busy) for k, v in by_self],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--scenario", choices=["a", "b"], default="a",
                   help="a: extension to trunk; b: trunk to extension (sip_cps.py's)")
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--keep", metavar="FILE", help="copy the profile (pstats) there")
    p.add_argument("--json")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="ippbx-bench-cost-") as tmp:
        profile = Path(tmp) / "ippbx.pstats"
        env = {**os.environ, "IPPBX_PURE": "1", "IPPBX_BENCH_COMMAND":
               f"{VENV_BIN / 'python'} -m cProfile -o {profile} -m ippbx.cli"}
        argv = [sys.executable, str(BENCH / "sip_cps.py"), "--fixed-rate", f"{args.rate:g}",
                "--step-seconds", f"{args.seconds:g}", "--no-overload",
                "--scenario", args.scenario]
        log("running:", " ".join(argv[1:]), "(ippbx under cProfile)")
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        steps = [line for line in done.stdout.splitlines() if "achieved" in line]
        for line in steps:
            log(line.strip())
        if done.returncode != 0 or not profile.exists():
            log(done.stdout[-2000:], done.stderr[-2000:])
            return done.returncode or 1
        if args.keep:
            shutil.copy(profile, args.keep)
        found = counts(profile, args.top)
    log(f"{found['sip_calls']} SIP calls: {found['per_call']:,.0f} function calls per SIP "
        "call")
    log(table(["part", "per SIP call", "share"],
              [(part, f"{n:,.0f}", f"{100 * n / found['per_call']:.0f} %")
               for part, n in found["by_part"].items()]))
    log(table(["most calls", "per SIP call"],
              [(name, f"{n:.1f}") for name, n in found["by_count"]]))
    log(table(["most time of its own", "% of busy"],
              [(name, f"{share:.1f}") for name, share in found["by_self"]]))
    save_json(args.json, {"step": steps, **found})
    return 0


if __name__ == "__main__":
    sys.exit(main())
