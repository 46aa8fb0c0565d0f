"""Benchmark: what one configuration change costs the running PBX, by configuration size.

Run: `.venv/bin/python bench/config_change.py [--sizes 100,1000,10000] [--repeat 15]`.
For each size N an `App` is built (not started: no socket, same objects) over a fresh
SQLite store seeded with N extensions, one trunk, one outbound and one inbound route. Then
`RunningConfig.add` of one extension, and `delete` of it again, are timed: validation of the
whole configuration, the SQLite transaction, and the apply to every running part (registrar,
auth, trunks, B2BUA and dial plan, features, MWI, applications, queues, reports, API). The
event loop is held that long: calls and API requests wait for it.

Beside it, the floor: `Config.model_validate` of the same configuration from plain data
(what reading the file costs; a change cannot be cheaper than validating once). Prints
median and max ms per change and the ratio to the floor.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ippbx.app import App
from ippbx.config import Config, parse_config
from ippbx.running_config import objects_of


def config_text(size: int, store: Path) -> str:
    lines = ["[api]", 'listen = "127.0.0.1:0"', 'password = "x"',
             "[sip]", 'listen = "127.0.0.1:0"',
             "[media]", 'engine = "none"',
             "[store]", f'path = "{store}"',
             "[[trunks]]", 'name = "carrier"', 'host = "127.0.0.1"', "port = 5080",
             "[[outbound_routes]]", 'name = "out"', 'prefix = "9"', 'match = "X."',
             'trunks = ["carrier"]',
             "[[inbound_routes]]", 'name = "did"', 'trunk = "carrier"',
             'destination = "extension:100000"']
    for i in range(size):
        lines += ["[[extensions]]", f'number = "{100000 + i}"', f'password = "pw{i}"',
                  f'name = "User {i}"', "voicemail = true"]
    return "\n".join(lines) + "\n"


def floor_ms(config: Config, repeat: int) -> float:
    data = {**{name: getattr(config, name) for name in ("api", "sip", "media", "store")},
            **objects_of(config)}
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        Config.model_validate(data)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure(size: int, repeat: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        config = parse_config(config_text(size, Path(tmp) / "pbx.sqlite3"))
        app = App(config)
        try:
            running = app.running
            times = []
            for i in range(repeat):
                number = str(900000 + i)
                start = time.perf_counter()
                running.add("extensions", {"number": number, "password": "p"})
                times.append((time.perf_counter() - start) * 1000)
                start = time.perf_counter()
                running.delete("extensions", [number])
                times.append((time.perf_counter() - start) * 1000)
            return statistics.median(times), max(times), floor_ms(running.config, repeat)
        finally:
            app.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, Python {sys.version.split()[0]}")
    print(f"{'extensions':>10} {'change ms':>10} {'max ms':>8} {'validate ms':>12} "
          f"{'ratio':>6}")
    for size in (int(s) for s in args.sizes.split(",")):
        median, worst, floor = measure(size, args.repeat)
        print(f"{size:>10} {median:>10.2f} {worst:>8.2f} {floor:>12.2f} "
              f"{median / floor:>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
