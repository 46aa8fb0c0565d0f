"""`kill -9` of a real `ippbx serve` in the middle of a call burst, then a restart: every
CDR of a call that had ended is in the store, every stored report is delivered."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
from reports_harness import API_MD5, Receiver, caller, config_text, spawn_ippbx, until
from sipp_harness import SippFactory, free_port


def stored(db: Path) -> tuple[list[tuple[str, dict[str, Any]]], set[str]]:
    """The outbox rows (destination URL, report) and the callids with a CDR."""
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT dest, body FROM outbox ORDER BY id").fetchall()
        cdrs = {callid for (callid,) in con.execute("SELECT callid FROM cdr")}
    return [(dest.partition(" ")[2], json.loads(body)) for dest, body in rows], cdrs


def lanes(reports: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Reports by what their order is kept within: the call, or the extension."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for report in reports:
        out[report.get("callid") or f"ext:{report.get('extension', '')}"].append(report)
    return dict(out)


async def test_kill_9_mid_burst_then_restart(tmp_path: Path, sipp: SippFactory) -> None:
    sip_port, api_port, carrier_port = free_port(), free_port(), free_port()
    db, config, log = tmp_path / "db.sqlite3", tmp_path / "ippbx.toml", tmp_path / "ippbx.log"
    config.write_text(config_text(db, sip_port, {"carrier": ("9", carrier_port)},
                                  api_port=api_port, backoff_max=0.5))
    live, down = await Receiver().start(), Receiver()
    api = f"http://127.0.0.1:{api_port}/api/v0.0.1"
    client = httpx.AsyncClient(timeout=5)

    async def login(port: int, url: str) -> str | None:
        body = {"username": "api", "password": API_MD5, "port": str(port), "url": url}
        try:
            answer = (await client.post(f"{api}/login", json=body)).json()
        except httpx.HTTPError:
            return None
        return str(answer["token"])

    proc = spawn_ippbx(config, log)
    try:
        t_live = await until(lambda: login(live.port, "live"), 15, "ippbx to answer")
        t_down = await login(down.port, "down")
        carrier = await sipp("uas.xml", port=carrier_port, calls=1000).astart()
        burst = await caller(sipp, f"127.0.0.1:{sip_port}", "95551234", calls=400, rate=50,
                             limit=20, duration_ms=300).astart()
        await until(lambda: sum(r["action"] == "NewCdr" for r in live.at("/live")) >= 30, 20,
                    "30 calls to end")
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        burst.kill()
        carrier.kill()
        await asyncio.sleep(0.3)  # a POST that left before the kill may still be read
        ended = {r["callid"] for r in live.at("/live") if r["action"] == "NewCdr"}
        rows, cdrs = stored(db)
        assert ended <= cdrs  # every call known to have ended has its CDR
        assert t_live and t_down
        want = {name: [body for url, body in rows if url.endswith(name)]
                for name in ("/live", "/down")}
        assert sum(b["action"] == "NewCdr" for b in want["/down"]) == len(cdrs)
        before = len(live.got)

        proc = spawn_ippbx(config, log)
        await down.start()
        await until(lambda: len(down.got) == len(want["/down"]) + 1, 20, "the stored reports")
        await until(lambda: len(live.got) == before + len(want["/live"]) + 1, 10, "the rest")
        bootup = {"action": "BootUp", "sn": "ippbxtest01"}
        # each stored report once, in its call's (or extension's) order
        assert lanes(down.at("/down")) == lanes([*want["/down"], bootup])
        assert lanes([g.body for g in live.got[before:]]) == lanes([*want["/live"], bootup])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        rows, after = stored(db)
        assert rows == [] and after == cdrs
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        await client.aclose()
        await live.stop()
        await down.stop()
