"""`kill -9` of a real `ippbx serve` with five answered calls up: at its next start it
sends BYE on every leg the dead process left up, so neither the carrier nor the phone
keeps (or is billed for) a call nobody bridges any more."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import httpx
from reports_harness import API_MD5, caller, config_text, spawn_ippbx, until
from sipp_harness import SippFactory, free_port


def journalled(db: Path) -> int:
    with sqlite3.connect(db) as con:
        return int(con.execute("SELECT COUNT(*) FROM dialogs").fetchone()[0])


async def test_the_next_start_ends_the_calls_a_crash_left_up(
    tmp_path: Path, sipp: SippFactory
) -> None:
    calls = 5
    sip_port, api_port, carrier_port = free_port(), free_port(), free_port()
    db, config, log = tmp_path / "db.sqlite3", tmp_path / "ippbx.toml", tmp_path / "ippbx.log"
    config.write_text(config_text(db, sip_port, {"carrier": ("9", carrier_port)},
                                  api_port=api_port))
    api = f"http://127.0.0.1:{api_port}/api/v0.0.1"
    client = httpx.AsyncClient(timeout=5)

    async def up() -> bool:
        try:
            body = {"username": "api", "password": API_MD5}
            return (await client.post(f"{api}/login", json=body)).json()["status"] == "Success"
        except httpx.HTTPError:
            return False

    proc = spawn_ippbx(config, log)
    try:
        await until(up, 15, "ippbx to answer")
        # both ends wait for a BYE that only the PBX can send
        carrier = await sipp("uas.xml", port=carrier_port, calls=calls,
                             sipp_timeout_s=60).astart()
        phones = await caller(sipp, f"127.0.0.1:{sip_port}", "95551234", calls=calls,
                              rate=10, limit=calls, scenario="pbx_uac_auth_recv_bye.xml",
                              sipp_timeout_s=60).astart()
        await until(lambda: journalled(db) == 2 * calls, 15, "the answered calls' dialogs")
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        assert journalled(db) == 2 * calls  # what the dead process left up

        proc = spawn_ippbx(config, log)
        (await carrier.await_result(30)).assert_ok(calls=calls)  # each got its BYE
        (await phones.await_result(30)).assert_ok(calls=calls)
        await until(lambda: journalled(db) == 0, 10, "the journal to empty")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        await client.aclose()
    assert "call legs left up by the previous run: sending BYE" in log.read_text()
