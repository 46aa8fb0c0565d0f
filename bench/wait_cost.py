"""What a wait costs on ippbx's event loop (uvloop): a task against a future.

A call's coroutine waits for things beside each other (an INVITE's answer, the caller's
CANCEL, the call's hang-up). Waiting on an `asyncio.Event` beside futures takes a task
per wait; `sip/one_shot.py` hands out plain futures instead. This times the four ways,
N of each per repeat, and prints µs per wait:

- a task awaiting a future, made, scheduled, resolved and ended;
- a future resolved, with a done callback;
- an `Event.wait()` task made, scheduled and cancelled (a wait given up);
- a bare future cancelled.

    .venv/bin/python bench/wait_cost.py [--count 20000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import uvloop


async def _awaiting(future: asyncio.Future[int]) -> int:
    return await future


async def _settle() -> None:
    for _ in range(3):  # (the steps and callbacks scheduled run)
        await asyncio.sleep(0)


async def measure(count: int) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    out: dict[str, float] = {}

    futures = [loop.create_future() for _ in range(count)]
    start = time.perf_counter()
    tasks = [asyncio.ensure_future(_awaiting(f)) for f in futures]
    await asyncio.sleep(0)
    for f in futures:
        f.set_result(1)
    await _settle()
    out["task awaiting a future"] = time.perf_counter() - start
    assert all(t.done() for t in tasks)

    futures = [loop.create_future() for _ in range(count)]
    start = time.perf_counter()
    for f in futures:
        f.add_done_callback(lambda _: None)
    for f in futures:
        f.set_result(1)
    await _settle()
    out["future with a done callback"] = time.perf_counter() - start

    start = time.perf_counter()
    events = [asyncio.Event() for _ in range(count)]
    tasks = [asyncio.ensure_future(e.wait()) for e in events]
    await asyncio.sleep(0)
    for t in tasks:
        t.cancel()
    await _settle()
    out["Event.wait() task cancelled"] = time.perf_counter() - start
    assert all(t.cancelled() for t in tasks)

    start = time.perf_counter()
    futures = [loop.create_future() for _ in range(count)]
    for f in futures:
        f.cancel()
    await _settle()
    out["bare future cancelled"] = time.perf_counter() - start
    return {what: seconds / count * 1e6 for what, seconds in out.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs = [uvloop.run(measure(args.count)) for _ in range(args.repeats)]
    print(f"µs per wait, {args.count} each, {args.repeats} runs:")
    print("| wait | " + " | ".join(f"run {i + 1}" for i in range(args.repeats)) + " |")
    print("|---|" + "---|" * args.repeats)
    for what in runs[0]:
        print(f"| {what} | " + " | ".join(f"{run[what]:.2f}" for run in runs) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
