"""Sandbox mode (issue 8) end to end: `ippbx demo` with simulated phones and carrier.

Every run uses port 0 for SIP, API (HTTP and HTTPS) and carrier (the sandbox binds the
carrier first and writes its port into the PBX's trunk), so nothing here needs
5060/5080/9011/8088. The API is
queried and reports are received over real HTTP, as an integrator would.

- in process: within 10 s `outbound/query` lists a call in Progress or Talking; a
  session logged in with a report receiver gets RING / ANSWER / BYE / NewCdr of one demo
  call (and so does the demo's own `--receiver`); `stop()` hangs everything up and
  leaves no task, call or temporary store;
- `ippbx demo` as a subprocess: two runs with one --seed dial the same numbers (another
  seed dials others) and end with exit 0 after --duration; SIGINT stops it with exit 0.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
from reports_harness import Receiver, until

from ippbx.sandbox.runner import Sandbox, SandboxOptions

API_MD5 = hashlib.md5(b"apipass").hexdigest()
LIVE = {"Progress", "Talking"}
PLACED = re.compile(r"#(\d+) (outbound|internal|inbound)\s+(\S+) -> (\S+)")
API_URL = re.compile(r"API (http://127\.0\.0\.1:\d+)/api/v0\.0\.1/")
FREE_PORTS = ["--sip-port", "0", "--api-port", "0", "--https-port", "0", "--tls-port", "0",
              "--carrier-port", "0"]


def free_ports_options(**kwargs: Any) -> SandboxOptions:
    return SandboxOptions(sip_port=0, api_port=0, https_port=0, tls_port=0, carrier_port=0,
                          **kwargs)


async def login(client: httpx.AsyncClient, api: str, **fields: Any) -> str:
    body = {"username": "api", "password": API_MD5, **fields}
    answer = (await client.post(f"{api}/login", json=body)).json()
    assert answer["status"] == "Success", answer
    return str(answer["token"])


async def outbound(client: httpx.AsyncClient, api: str, token: str) -> list[dict[str, str]]:
    answer = (await client.post(f"{api}/outbound/query?token={token}",
                                json={"outboundid": "all"})).json()
    assert answer["status"] == "Success", answer
    return list(answer["outbound"])


def leftover_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]


# -- in process ----------------------------------------------------------------------------
async def test_live_calls_reports_and_clean_stop(tmp_path: Path) -> None:
    receiver = await Receiver().start()
    out = io.StringIO()
    sandbox = Sandbox(free_ports_options(seed=2024, calls_per_minute=90, status_interval=1,
                                         store=str(tmp_path / "demo.sqlite3"),
                                         receiver_port=0, verbose=True), out=out)
    client = httpx.AsyncClient(timeout=5)
    began = time.monotonic()
    await sandbox.start()
    try:
        assert sandbox.app is not None
        api = f"http://127.0.0.1:{sandbox.app.api.port}/api/v0.0.1"
        token = await login(client, api, port=str(receiver.port), url="demo")

        async def live_call() -> list[dict[str, str]]:
            return [c for c in await outbound(client, api, token) if c["status"] in LIVE]

        calls = await until(live_call, 10, "a live outbound call")
        assert time.monotonic() - began < 10
        assert calls[0]["trunk"] == "carrier" and calls[0]["from"].startswith("100")
        assert re.fullmatch(r"\d+\.\d+", calls[0]["outboundid"])

        def complete_call() -> str | None:
            actions: dict[str, set[str]] = defaultdict(set)
            for report in receiver.at("/demo"):
                if "callid" in report:
                    actions[report["callid"]].add(report["action"])
            return next((callid for callid, seen in actions.items()
                         if {"RING", "ANSWER", "BYE", "NewCdr"} <= seen), None)

        callid = await until(complete_call, 45, "RING, ANSWER, BYE and NewCdr of one call")
        cdr = next(r for r in receiver.at("/demo")
                   if r["action"] == "NewCdr" and r["callid"] == callid)
        assert cdr["status"] == "ANSWERED" and int(cdr["talkduraction"]) >= 0
        assert sandbox.app.reports.delivery.delivered >= 4
        assert "reports delivered" in sandbox.status_line()
        assert sandbox.stats.placed >= 3
    finally:
        await client.aclose()
        await sandbox.stop()
        await receiver.stop()
    assert sandbox.app is not None and len(sandbox.app.registry) == 0  # all hung up
    assert leftover_tasks() == []
    text = out.getvalue()
    assert text.count("live calls") >= 3  # one status line a second, and a last one
    # the demo's own receiver (--receiver) got the reports too, the last ones included
    assert sandbox.receiver is not None and sandbox.receiver.received >= 4
    assert "report NewCdr callid" in text
    assert text.count("status Unregistered") == 5


async def test_default_options_stop_leaves_nothing() -> None:
    """A `make demo`-like run (default traffic, temporary store) for 3 s, then stop()."""
    sandbox = Sandbox(free_ports_options(), out=io.StringIO())
    await sandbox.start()
    store = Path(sandbox.store_path)
    try:
        assert store.exists()
        assert sandbox.app is not None and sandbox.app.api_tls is not None
        assert f"https://127.0.0.1:{sandbox.app.api_tls.port}/api/v0.0.1/" in sandbox.banner()
        assert (store.parent / "ippbx-api.crt").exists()  # beside the temporary store
        await asyncio.sleep(3)
        assert sandbox.history and sandbox.history[0].kind == "outbound"
    finally:
        await sandbox.stop()
    assert sandbox.app is not None and len(sandbox.app.registry) == 0
    assert sandbox.app.pbx.b2bua.active_tasks == 0
    assert all(phone.ua.pending_tasks == 0 for phone in sandbox.phones.values())
    assert not store.exists() and not store.parent.exists()
    assert leftover_tasks() == []
    await sandbox.stop()  # twice is harmless


# -- `ippbx demo` as a process -------------------------------------------------------------
async def demo_process(*args: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ippbx.cli", "demo", *FREE_PORTS, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )


async def finish(proc: asyncio.subprocess.Process, timeout: float) -> tuple[int, str, str]:
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_same_seed_dials_the_same_numbers() -> None:
    options = ["--duration", "4", "--calls-per-minute", "300", "-v", "--status-interval", "1"]
    procs = [await demo_process("--seed", seed, *options) for seed in ("4242", "4242", "77")]
    results = [await finish(proc, 40) for proc in procs]
    dialled = []
    for code, out, err in results:
        assert code == 0, (out, err)
        assert "Traceback" not in err, err
        assert "ippbx demo stopped" in out
        assert "live calls" in out
        dialled.append([m.groups() for m in PLACED.finditer(out)])
    first, again, other = dialled
    n = min(len(first), len(again))
    assert n >= 5, (first, again)
    assert [int(d[0]) for d in first] == list(range(1, len(first) + 1))
    assert first[:n] == again[:n]
    assert first[:n] != other[:n]
    assert "seed 4242 " in results[0][1] and "seed 77 " in results[2][1]


async def test_sigint_stops_cleanly_with_exit_0() -> None:
    began = time.monotonic()
    proc = await demo_process("--status-interval", "1")
    assert proc.stdout is not None
    head = ""
    try:
        while (match := API_URL.search(head)) is None:
            line = await asyncio.wait_for(proc.stdout.readline(), 10)
            assert line, f"ippbx demo ended early: {head}"
            head += line.decode()
        api = match.group(1) + "/api/v0.0.1"
        async with httpx.AsyncClient(timeout=5) as client:
            token = await login(client, api)

            async def live_call() -> list[dict[str, str]]:
                return [c for c in await outbound(client, api, token) if c["status"] in LIVE]

            await until(live_call, max(0.5, 10 - (time.monotonic() - began)),
                        "a live outbound call within 10 s of `ippbx demo`")
        proc.send_signal(signal.SIGINT)
        code, out, err = await finish(proc, 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 0, (head + out, err)
    assert "SIGINT received, stopping" in out and "ippbx demo stopped" in out
    assert "Traceback" not in err, err
