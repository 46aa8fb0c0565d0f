"""The store's write queue on real SQLite files: one transaction per flush for every kind
of write, reads see what is queued, outbox ids, a failing statement, no loop: at once."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ippbx.pbx.cdr import CdrRecord
from ippbx.store import outbox
from ippbx.store.dialogs import DialogRow
from ippbx.store.sessions import SessionRow
from ippbx.store.sqlite import FLUSH_CAP, FLUSH_DELAY, RegistrationRow, Store


def cdr(n: int) -> CdrRecord:
    return CdrRecord(f"{n}.1", float(n), None, n + 2.0, "1001", "1002", 2, 0, "BUSY",
                     "Internal", caller_ext="1001", callee_ext="1002")


def session(token: str, last_seen: float = 1.0) -> SessionRow:
    return SessionRow(token, "openvox", "10.0.0.5", "8260", "", "0", "", "", 1.0, last_seen)


def registration(ext: str) -> RegistrationRow:
    return RegistrationRow(ext, f"<sip:{ext}@10.0.0.9>", 1e12, "10.0.0.9", 5060, "udp",
                           "cid", 1, "phone")


def dialog_row(n: int) -> DialogRow:
    return DialogRow(f"c{n}", f"l{n}", f"r{n}", "<sip:a@h>", "<sip:b@h>", 7, "sip:b@h",
                     ("<sip:p;lr>",), True, "127.0.0.9", 5070, "udp", 1000.0)


def transactions(store: Store) -> list[str]:
    """BEGIN/COMMIT/ROLLBACK statements the store's connection runs from now on."""
    seen: list[str] = []

    def trace(sql: str) -> None:
        if sql.split()[0].upper() in ("BEGIN", "COMMIT", "ROLLBACK"):
            seen.append(sql.split()[0].upper())

    store._db.set_trace_callback(trace)
    return seen


def count(path: Path, table: str) -> int:
    """Rows of `table` as another connection (another process) sees the file."""
    with sqlite3.connect(path) as con:
        return int(con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def write_one_of_each(store: Store, n: int) -> None:
    store.add_cdr(cdr(n))
    [row] = store.outbox_add([("openvox http://r/", str(n), b"{}", 1.0)])
    store.outbox_add([("openvox http://r/", str(n), b"{}", 1.0)])
    store.outbox_delete(row.id)
    store.save_session(session(f"t{n}"))
    store.touch_session(f"t{n}", 2.0)
    store.save_registration(registration(f"10{n:02d}"))
    store.dialogs_apply([dialog_row(n)], [])


async def until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(FLUSH_DELAY / 2)


async def test_writes_of_every_kind_share_one_transaction_after_the_delay(
    tmp_path: Path,
) -> None:
    path = tmp_path / "db.sqlite3"
    store = Store(path)
    seen = transactions(store)
    for n in range(20):
        write_one_of_each(store, n)
    assert seen == []  # nothing written yet
    assert count(path, "cdr") == count(path, "outbox") == count(path, "sessions") == 0
    await until(lambda: count(path, "cdr") == 20)  # the timer flushed, nobody read
    assert seen == ["BEGIN", "COMMIT"]
    assert (count(path, "outbox"), count(path, "sessions"), count(path, "registrations"),
            count(path, "dialogs")) == (20, 20, 20, 20)
    with sqlite3.connect(path) as con:
        assert {r for (r,) in con.execute("SELECT last_seen FROM sessions")} == {2.0}
    store.close()


async def test_flush_and_flushed_commit_what_is_queued(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = Store(path)
    seen = transactions(store)
    [row] = store.outbox_add([("openvox http://r/", "c", b"{}", 1.0)])
    store.add_cdr(cdr(1))
    assert not store.outbox_stored(row.id) and count(path, "outbox") == 0
    await store.flushed()
    assert store.outbox_stored(row.id) and count(path, "outbox") == 1
    await store.flushed()  # nothing queued: at once
    store.add_cdr(cdr(2))
    store.flush()
    assert count(path, "cdr") == 2 and seen == ["BEGIN", "COMMIT"] * 2
    store.close()


async def test_reads_see_queued_writes(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    write_one_of_each(store, 1)
    assert [r.callid for r in store.cdrs()] == ["1.1"] and store.cdr_count() == 1
    store.add_cdr(cdr(2))
    assert store.cdr_count() == 2
    store.outbox_add([("openvox http://r/", "x", b"{}", 1.0)])
    assert store.outbox_count() == 2 and len(store.outbox_load()) == 2
    store.touch_session("t1", 5.0)
    assert [s.last_seen for s in store.load_sessions()] == [5.0]
    store.delete_registration("1001")
    assert store.load_registrations(0.0) == []
    store.dialogs_apply([], [dialog_row(1).key])
    assert store.dialogs_load() == []
    store.outbox_add([("openvox http://gone/", "y", b"{}", 1.0)])
    assert store.outbox_delete_dest("openvox http://gone/") == 1
    store.close()


async def test_outbox_ids_go_up_across_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = Store(path)
    first = store.outbox_add([("openvox http://r/", "c", bytes([n]), 1.0) for n in range(3)])
    store.flush()  # (written, then deleted: rows deleted while queued never reach the file)
    for row in first:  # the table ends empty: only the AUTOINCREMENT sequence remembers
        store.outbox_delete(row.id)
    store.close()
    assert count(path, "outbox") == 0
    store = Store(path)
    second = store.outbox_add([("openvox http://r/", "c", b"a", 1.0)])
    store.close()
    store = Store(path)
    third = store.outbox_add([("openvox http://r/", "c", b"b", 1.0)])
    ids = [r.id for r in first + second + third]
    assert ids == sorted(set(ids)) and ids[0] >= 1
    assert [(r.id, r.body) for r in store.outbox_load()] == [(second[0].id, b"a"),
                                                            (third[0].id, b"b")]
    store.close()


async def test_a_row_deleted_before_its_insert_was_flushed_is_never_written(
    tmp_path: Path,
) -> None:
    """The usual report: delivered within the batch delay. Neither its insert nor its
    delete reaches the file; a row deleted after the flush is deleted there."""
    path = tmp_path / "db.sqlite3"
    store = Store(path)
    seen = transactions(store)
    written: list[str] = []
    store._db.set_trace_callback(lambda sql: written.append(sql.split()[0].upper()))
    rows = store.outbox_add([("openvox http://r/", "c", b"1", 1.0),
                             ("openvox http://r/", "c", b"2", 1.0),
                             ("openvox http://r/", "c", b"3", 1.0)])
    store.outbox_delete(rows[0].id)
    store.outbox_delete(rows[1].id)
    await store.flushed()
    assert written.count("INSERT") == 1 and "DELETE" not in written
    assert count(path, "outbox") == 1
    store.outbox_delete(rows[2].id)
    await store.flushed()
    assert written.count("DELETE") == 1 and count(path, "outbox") == 0
    assert store.outbox_count() == 0 and seen == []  # (the tracer was replaced)
    store.close()


async def test_a_failing_statement_is_logged_and_the_rest_lands(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "db.sqlite3"
    store = Store(path)
    store.add_cdr(cdr(0))
    [taken] = store.outbox_add([("openvox http://r/", "c", b"0", 1.0)])
    store.flush()
    with sqlite3.connect(path) as other:  # a second writer took the next id
        other.execute("INSERT INTO outbox VALUES (?, 'x', 'x', x'00', 0)", (taken.id + 1,))
    seen = transactions(store)
    with caplog.at_level(logging.ERROR, logger="ippbx.store.batch"):
        store.add_cdr(cdr(1))
        store.outbox_add([("openvox http://r/", "c", b"1", 1.0),  # the id in use
                          ("openvox http://r/", "c", b"2", 1.0)])
        store.add_cdr(cdr(2))
        await store.flushed()
    assert "1 of 4 queued writes failed" in caplog.text
    assert "INSERT INTO outbox" in caplog.text and "openvox" not in caplog.text  # no values
    assert seen == ["BEGIN", "ROLLBACK", "BEGIN", "COMMIT"]
    assert count(path, "cdr") == 3
    assert [r.body for r in store.outbox_load()] == [b"0", b"\x00", b"2"]
    store.add_cdr(cdr(3))  # the store goes on
    await store.flushed()
    assert count(path, "cdr") == 4
    store.close()


async def test_the_cap_flushes_at_once_and_close_flushes(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = Store(path)
    seen = transactions(store)
    for n in range(FLUSH_CAP + 1):
        store.add_cdr(cdr(n))
    assert seen == ["BEGIN", "COMMIT"] and count(path, "cdr") == FLUSH_CAP
    store.close()
    assert count(path, "cdr") == FLUSH_CAP + 1
    with pytest.raises(sqlite3.ProgrammingError):
        store.add_cdr(cdr(0))


def test_without_a_running_loop_each_write_lands_at_once(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = Store(path)
    seen = transactions(store)
    store.add_cdr(cdr(1))
    assert count(path, "cdr") == 1
    [row] = store.outbox_add([("openvox http://r/", "c", b"1", 1.0)])
    assert store.outbox_stored(row.id) and count(path, "outbox") == 1
    store.outbox_delete(row.id)
    assert count(path, "outbox") == 0
    assert seen == ["BEGIN", "COMMIT"] * 3
    store.close()


def test_a_batch_left_by_a_closed_loop_is_written_by_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = Store(path)

    async def write() -> None:
        store.add_cdr(cdr(1))

    asyncio.run(write())  # the loop ends before its timer fires
    store.add_cdr(cdr(2))  # no loop now: both go at once
    assert count(path, "cdr") == 2
    store.close()


async def test_held_rows_are_written_only_if_they_wait_past_the_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report delivered within the hold costs no write at all; one still there after
    it is written (a slow or dead receiver); a NewCdr (not held) is written at once."""
    monkeypatch.setattr(outbox, "HOLD", 0.2)
    path = tmp_path / "db.sqlite3"
    store = Store(path)
    written: list[str] = []
    store._db.set_trace_callback(lambda sql: written.append(sql.split()[0].upper()))
    quick, slow, new_cdr = store.outbox_add(
        [("openvox http://r/", "c", b"quick", 1.0), ("openvox http://r/", "c", b"slow", 1.0),
         ("openvox http://r/", "c", b"cdr", 1.0)], hold=[True, True, False])
    await store.flushed()
    assert count(path, "outbox") == 1  # the NewCdr
    assert store.outbox_stored(new_cdr.id) and not store.outbox_stored(slow.id)
    assert store.outbox_count() == 3  # held rows are pending reports all the same
    store.outbox_delete(quick.id)  # delivered within the hold
    await asyncio.sleep(outbox.HOLD + 2 * FLUSH_DELAY)
    await store.flushed()
    assert [r.body for r in store.outbox_load()] == [b"slow", b"cdr"]
    assert store.outbox_stored(slow.id)
    assert written.count("INSERT") == 2 and "DELETE" not in written  # nothing for "quick"
    store.close()


async def test_held_rows_past_their_time_go_a_tenth_of_a_second_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under load (a row held every few ms, none delivered) the rows whose time is up are
    written in a few transactions, not one per row, and each by HOLD + HOLD_TICK."""
    monkeypatch.setattr(outbox, "HOLD", 0.2)
    path = tmp_path / "db.sqlite3"
    store = Store(path)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for n in range(40):  # over 0.2 s
        store.outbox_add([("openvox http://r/", f"c{n}", b"x", 1.0)], hold=[True])
        await asyncio.sleep(0.005)
    await store.flushed()
    before = store.transactions
    while count(path, "outbox") < 40:
        assert loop.time() - start < 0.2 + 0.25 + outbox.HOLD + outbox.HOLD_TICK + 0.3
        await asyncio.sleep(0.01)
    assert store.transactions - before <= 6  # (40 with a timer per row)
    store.close()


async def test_held_rows_are_written_at_a_graceful_stop_and_go_with_their_destination(
    tmp_path: Path,
) -> None:
    path = tmp_path / "db.sqlite3"
    store = Store(path)
    store.outbox_add([("openvox http://gone/", "c", b"1", 1.0),
                      ("openvox http://r/", "c", b"2", 1.0)], hold=[True, True])
    assert store.outbox_delete_dest("openvox http://gone/") == 1
    store.outbox_add([("openvox http://r/", "d", b"3", 1.0)], hold=[True])
    store.close()  # long before the hold is up
    assert count(path, "outbox") == 2
    store = Store(path)
    assert [r.body for r in store.outbox_load()] == [b"2", b"3"]
    store.close()


def test_without_a_running_loop_nothing_is_held(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = Store(path)
    [row] = store.outbox_add([("openvox http://r/", "c", b"1", 1.0)], hold=[True])
    assert store.outbox_stored(row.id) and count(path, "outbox") == 1
    store.close()
