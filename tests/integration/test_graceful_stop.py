"""A graceful stop (SIGTERM) of a real `ippbx serve` with answered and ringing calls up:
it hangs them all up before it exits, as an administrator stopping the service expects.
Every answered leg gets a BYE (the carrier stops billing, the phone stops showing a
call), every ringing callee a CANCEL and every ringing caller a 503; each call has its
CDR in the file and the journal of answered dialogs is empty, so nothing is left for a
next start to clean up, and no next start is needed."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path
from typing import Any

import httpx
from pbx_harness import rejected_with
from reports_harness import API_MD5, caller, config_text, spawn_ippbx, until
from sipp_harness import SippFactory, free_port


def rows(db: Path, query: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as con:
        return con.execute(query).fetchall()


def journalled(db: Path) -> int:
    return int(rows(db, "SELECT COUNT(*) FROM dialogs")[0][0])


class Api:
    """ippbx's API on `port`: a login once it answers, then `outbound/query` of all calls."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}/api/v0.0.1"
        self.client = httpx.AsyncClient(timeout=5)
        self.token = ""

    async def up(self) -> bool:
        try:
            body = {"username": "api", "password": API_MD5}
            answer = (await self.client.post(f"{self.base}/login", json=body)).json()
        except httpx.HTTPError:
            return False
        self.token = answer.get("token", "")
        return answer["status"] == "Success"

    async def live(self) -> list[str]:
        answer = await self.client.post(f"{self.base}/outbound/query?token={self.token}",
                                        json={"outboundid": "all"})
        return sorted(call["status"] for call in answer.json()["outbound"])


async def answered_calls(sipp: SippFactory, sip_port: int, carrier_port: int,
                         calls: int) -> tuple[Any, Any]:
    """`calls` calls 1001 → 9 5551234 → the sipp carrier on `carrier_port`, answered;
    both ends then wait for the BYE only the PBX can send: (carrier, phones)."""
    carrier = await sipp("uas.xml", port=carrier_port, calls=calls,
                         sipp_timeout_s=60).astart()
    phones = await caller(sipp, f"127.0.0.1:{sip_port}", "95551234", calls=calls,
                          rate=10, limit=calls, scenario="pbx_uac_auth_recv_bye.xml",
                          sipp_timeout_s=60).astart()
    return carrier, phones


async def test_a_graceful_stop_hangs_up_every_call(tmp_path: Path, sipp: SippFactory) -> None:
    answered, ringing = 3, 2
    sip_port, api_port = free_port(), free_port()
    carrier_port, ringer_port = free_port(), free_port()
    db, config, log = tmp_path / "db.sqlite3", tmp_path / "ippbx.toml", tmp_path / "ippbx.log"
    config.write_text(config_text(
        db, sip_port, {"carrier": ("9", carrier_port), "ringer": ("8", ringer_port)},
        api_port=api_port))
    api = Api(api_port)
    proc = spawn_ippbx(config, log)
    try:
        await until(api.up, 15, "ippbx to answer")
        carrier, talkers = await answered_calls(sipp, sip_port, carrier_port, answered)
        # a carrier that rings until CANCELled, callers that wait for a final answer
        ringer = await sipp("uas_ring_forever.xml", port=ringer_port, calls=ringing,
                            sipp_timeout_s=60).astart()
        waiting = await caller(sipp, f"127.0.0.1:{sip_port}", "85551234", calls=ringing,
                               rate=10, limit=ringing, scenario=rejected_with(tmp_path, 503),
                               sipp_timeout_s=60).astart()
        await until(lambda: journalled(db) == 2 * answered, 15, "the answered calls")

        async def all_up() -> bool:
            return await api.live() == ["Progress"] * ringing + ["Talking"] * answered

        await until(all_up, 15, "the ringing calls")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        (await carrier.await_result(10)).assert_ok(calls=answered)  # each got its BYE
        (await talkers.await_result(10)).assert_ok(calls=answered)
        (await ringer.await_result(10)).assert_ok(calls=ringing)  # CANCEL, then 487
        (await waiting.await_result(10)).assert_ok(calls=ringing)  # 503
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        await api.client.aclose()
    assert journalled(db) == 0  # nothing left for a next start
    cdrs = rows(db, "SELECT status, hangup_by, dst_trunk FROM cdr ORDER BY dst_trunk")
    assert cdrs == [("ANSWERED", "pbx", "carrier")] * answered \
        + [("FAILED", "pbx", "ringer")] * ringing, cdrs  # (503)
    assert f"stopping: hung up {answered + ringing} call(s)" in log.read_text()


async def test_a_bye_the_stop_sees_unanswered_is_left_for_the_next_start(
        tmp_path: Path, sipp: SippFactory) -> None:
    """A carrier that vanished: the stop waits 4 s without an answer (T2) for its BYEs,
    not a BYE transaction's 32 s, and keeps those dialogs in the journal (the next start
    sends their BYE again); the phones' BYEs were answered, so theirs are gone."""
    calls = 2
    sip_port, api_port, carrier_port = free_port(), free_port(), free_port()
    db, config, log = tmp_path / "db.sqlite3", tmp_path / "ippbx.toml", tmp_path / "ippbx.log"
    config.write_text(config_text(db, sip_port, {"carrier": ("9", carrier_port)},
                                  api_port=api_port))
    api = Api(api_port)
    proc = spawn_ippbx(config, log)
    try:
        await until(api.up, 15, "ippbx to answer")
        carrier, phones = await answered_calls(sipp, sip_port, carrier_port, calls)
        await until(lambda: journalled(db) == 2 * calls, 15, "the answered calls")
        carrier.kill()  # gone without a word
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(12) == 0  # (4 s of silence from the carrier, not 32)
        (await phones.await_result(10)).assert_ok(calls=calls)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        await api.client.aclose()
    left = rows(db, "SELECT port FROM dialogs")
    assert left == [(carrier_port,)] * calls, left  # the carrier's, not the phones'
    assert len(rows(db, "SELECT id FROM cdr")) == calls
