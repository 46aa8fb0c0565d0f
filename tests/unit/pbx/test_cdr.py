"""CDR records from finished calls: fields, durations, status from the failure cause."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ippbx.pbx import cdr
from ippbx.pbx.calls import CallRegistry, Leg, LegKind, LegStatus
from ippbx.store.sqlite import Store


def outbound(reg: CallRegistry) -> tuple[Leg, Leg]:
    caller = Leg(LegKind.EXTENSION, "1001", "95551234", extension="1001", created=100.0)
    call = reg.start_call(caller, "95551234")
    out = Leg(LegKind.TRUNK, "66666", "5551234", trunk="carrier", created=100.2)
    reg.add_callee(call, out)
    return caller, out


def test_answered_outbound_call() -> None:
    reg, store = CallRegistry(), Store(":memory:")
    reg.subscribe(cdr.CdrRecorder(store))
    caller, out = outbound(reg)
    reg.set_status(out.id, LegStatus.TALKING, now=103.0)
    reg.set_status(caller.id, LegStatus.TALKING, now=103.0)
    reg.end_leg(caller.id, 200, now=110.4)
    assert store.cdr_count() == 0  # written when the call leaves the registry
    reg.end_leg(out.id, 200, now=110.6)
    [record] = store.cdrs()
    assert record == cdr.CdrRecord(
        callid=caller.id, start=100.0, answer=103.0, end=110.6, callfrom="1001",
        callto="95551234", duration=11, talk=8, status="ANSWERED", type="Outbound",
        src_trunk="", dst_trunk="carrier", caller_ext="1001", callee_ext="",
        outboundid=out.id, inboundid="", cause=200, extensions=("1001",),
    )


@pytest.mark.parametrize(("cause", "status"), [
    (486, "BUSY"), (600, "BUSY"), (480, "NO ANSWER"), (487, "NO ANSWER"), (408, "NO ANSWER"),
    (603, "NO ANSWER"), (503, "FAILED"), (404, "FAILED"),
])
def test_failed_call_status(cause: int, status: str) -> None:
    reg = CallRegistry()
    records: list[cdr.CdrRecord] = []
    reg.subscribe(lambda e: records.append(cdr.from_call(e.call))
                  if type(e).__name__ == "CallEnded" else None)
    caller, out = outbound(reg)
    reg.end_leg(out.id, cause, now=104.0)
    reg.end_leg(caller.id, cause, now=104.0)
    [record] = records
    assert (record.status, record.cause, record.talk, record.duration) == (status, cause, 0, 4)
    assert record.answer is None and record.outboundid == out.id


def test_failed_without_callee_leg_uses_caller_cause() -> None:
    reg = CallRegistry()
    call = reg.start_call(Leg(LegKind.EXTENSION, "1001", "1003", extension="1001"), "1003")
    reg.end_leg(call.caller.id, 480)
    record = cdr.from_call(call)
    assert (record.status, record.cause, record.type, record.callto) == (
        "NO ANSWER", 480, "Internal", "1003")


def test_inbound_call_shows_the_extension_that_took_it() -> None:
    reg = CallRegistry()
    inbound = Leg(LegKind.TRUNK, "0123456", "5550100", trunk="carrier", created=50.0)
    call = reg.start_call(inbound, "5550100")
    ext = Leg(LegKind.EXTENSION, "0123456", "1002", extension="1002")
    reg.add_callee(call, ext)
    reg.set_status(ext.id, LegStatus.TALKING, now=52.0)
    reg.end_leg(inbound.id, 200, now=60.0)
    reg.end_leg(ext.id, 200, now=60.0)
    record = cdr.from_call(call)
    assert (record.type, record.callfrom, record.callto, record.src_trunk, record.dst_trunk) == (
        "Inbound", "0123456", "1002", "carrier", "")
    assert (record.inboundid, record.callee_ext, record.talk, record.duration) == (
        inbound.id, "1002", 8, 10)


def test_local_time_round_trip_and_store_queries() -> None:
    tz = ZoneInfo("Asia/Shanghai")
    assert cdr.local_time(1589958682.0, tz) == "2020-05-20 15:11:22"
    assert cdr.parse_local_time("2020-05-20 15:11:22", tz) == 1589958682.0
    with pytest.raises(ValueError):
        cdr.parse_local_time("2020-05-20T15:11:22", tz)
    assert cdr.zone("No/Such_Zone") == ZoneInfo("UTC")
    store = Store(":memory:")
    base = cdr.CdrRecord("1.1", 10.0, None, 12.0, "1001", "1002", 2, 0, "BUSY", "Internal",
                         caller_ext="1001", callee_ext="1002", extensions=("1001", "1002"))
    store.add_cdr(base)
    store.add_cdr(cdr.CdrRecord("2.2", 20.0, 21.0, 25.0, "1003", "95551234", 5, 4,
                                "ANSWERED", "Outbound", caller_ext="1003",
                                extensions=("1003",)))
    assert [r.callid for r in store.cdrs()] == ["1.1", "2.2"]
    assert [r.callid for r in store.cdrs(15.0, 30.0)] == ["2.2"]
    assert [r.callid for r in store.cdrs(extensions=["1002"])] == ["1.1"]
    assert [r.callid for r in store.cdrs(extensions=["1003", "1001"])] == ["1.1", "2.2"]
    assert store.cdrs(0, 9.9) == [] and store.cdrs()[0] == base


def test_the_database_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "ippbx.sqlite3"
    store = Store(path)
    store.add_cdr(cdr.CdrRecord("1.1", 10.0, None, 12.0, "1001", "1002", 2, 0, "BUSY",
                                "Internal"))
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes and set(modes.values()) == {0o600}, modes  # (the WAL files too)
    store.close()
    path.chmod(0o644)  # made by an earlier version: tightened at the next start
    Store(path).close()
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_cdr_keeps_its_recording_and_an_older_table_gains_the_column(
        tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)  # a CDR table as an earlier version made it
    old.execute("CREATE TABLE cdr (id INTEGER PRIMARY KEY, callid TEXT NOT NULL, "
                "started REAL NOT NULL, answered REAL, ended REAL NOT NULL, "
                "callfrom TEXT NOT NULL, callto TEXT NOT NULL, duration INTEGER NOT NULL, "
                "talk INTEGER NOT NULL, status TEXT NOT NULL, type TEXT NOT NULL, "
                "src_trunk TEXT NOT NULL DEFAULT '', dst_trunk TEXT NOT NULL DEFAULT '', "
                "caller_ext TEXT NOT NULL DEFAULT '', callee_ext TEXT NOT NULL DEFAULT '', "
                "outboundid TEXT NOT NULL DEFAULT '', inboundid TEXT NOT NULL DEFAULT '', "
                "cause INTEGER NOT NULL DEFAULT 0, hangup_by TEXT NOT NULL DEFAULT '', "
                "extensions TEXT NOT NULL DEFAULT '')")
    old.execute("INSERT INTO cdr (callid, started, ended, callfrom, callto, duration, talk, "
                "status, type) VALUES ('1.1', 10, 12, '1001', '1002', 2, 0, 'BUSY', "
                "'Internal')")
    old.commit()
    old.close()
    store = Store(path)
    recorded = cdr.CdrRecord("2.2", 20.0, 21.0, 25.0, "1001", "1002", 5, 4, "ANSWERED",
                             "Internal", recording="exten-1001-1002-x-2.2.wav")
    store.add_cdr(recorded)
    assert [(r.callid, r.recording) for r in store.cdrs()] == [
        ("1.1", ""), ("2.2", "exten-1001-1002-x-2.2.wav")]
    assert store.cdr_page("2.2")[1] == [recorded]
    store.close()
