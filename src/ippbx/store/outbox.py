"""The report outbox: a report is a row until it is delivered or dropped; rows that wait
are in the SQLite file.

A row belongs to a destination (`dest`: the report form and URL, shared by every session
that has them) and to a lane (`lane`: the call's callid, or `ext:<number>` for an
extension's status reports), which is what its order is kept within; id order is the order
within a lane.

Writes go through the store's write queue (`ippbx.store.batch`): they are committed in one
transaction with everything else written in the same `FLUSH_DELAY` (5 ms; WAL,
synchronous=NORMAL). A row added with `hold` (every report but a NewCdr) is first kept in
memory: it is queued for writing only if it is still there `HOLD` (1 s) later. A
receiver that answers in time costs no write at all (each written row costs an insert
and a delete: half the store's work at full call rate, once per report), while a report
that waits for a slow or dead receiver, or for a retry, is in the file a second after it
was made. What a crash of the process can lose: a held report younger than `HOLD` and not
yet delivered; any other row stored in the last 5 ms before it. A NewCdr is never held:
it is committed with the call's CDR, and the delivery waits for `outbox_stored()` before
it POSTs one. A graceful stop (`close()`) writes the held rows and loses nothing.
Ids are given here, not by SQLite, so `outbox_add` returns its rows before they are
written: the next id is one above the largest the table (or its AUTOINCREMENT sequence)
has seen, so ids never repeat across restarts. One process writes the file at a time.

An outbox made by an earlier version (one queue per session token) is renamed
`outbox_v1` by `migrate`; `outbox_adopt_legacy` files its rows under their session's
destination once (the delivery knows destinations, the store does not).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ippbx.store.batch import WriteQueue

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    dest    TEXT NOT NULL,
    lane    TEXT NOT NULL,
    body    BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_dest ON outbox (dest, id);
"""
HOLD = 1.0
"""Seconds a held row waits in memory for its delivery before it is queued for writing."""
HOLD_TICK = 0.1
"""Seconds between two looks for held rows whose time is up at the most (under load one
look queues a tenth of a second's rows, instead of one timer per row)."""

_INSERT = "INSERT INTO outbox (id, dest, lane, body, created) VALUES (?,?,?,?,?)"
_DELETE = "DELETE FROM outbox WHERE id=?"


def migrate(db: sqlite3.Connection) -> None:
    """Move a per-session outbox of an earlier version aside (before SCHEMA runs)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
    if "token" in columns and "dest" not in columns:
        db.execute("DROP INDEX IF EXISTS outbox_token")
        db.execute("ALTER TABLE outbox RENAME TO outbox_v1")


class OutboxRow(NamedTuple):
    """A pending report. A tuple: it is also the row's insert parameters (one object per
    report), and goes to the report courier as it is."""

    id: int
    dest: str
    lane: str
    body: bytes
    created: float


@dataclass(frozen=True, slots=True)
class LegacyRow:
    """A row of an earlier version's outbox: the session it was for, not a destination."""

    token: str
    body: bytes
    created: float


class OutboxTable(WriteQueue):
    """Mixin of `Store`: the pending reports."""

    def _open_outbox(self) -> None:
        """Ids go on above every id the file has seen."""
        self._next_outbox_id = self._outbox_top() + 1
        self._outbox_stored_upto = self._next_outbox_id - 1  # (ids settled in the file)
        self._outbox_queued: dict[int, tuple[object, ...]] = {}  # inserts not yet flushed
        self._outbox_held: dict[int, tuple[object, ...]] = {}  # rows not yet queued
        self._outbox_due: deque[tuple[float, int]] = deque()  # (loop time, id): when to
        # queue a held row, in id order (rows delivered meanwhile are skipped)
        self._outbox_timer: asyncio.TimerHandle | None = None
        self._outbox_timer_loop: asyncio.AbstractEventLoop | None = None  # (its loop)

    def _outbox_top(self) -> int:
        """The largest id in the outbox or in its AUTOINCREMENT sequence (0: none)."""
        return int(self._db.execute(
            "SELECT max(COALESCE((SELECT MAX(id) FROM outbox), 0),"
            " COALESCE((SELECT seq FROM sqlite_sequence WHERE name='outbox'), 0))"
        ).fetchone()[0])

    def _flushed(self) -> None:
        self._outbox_stored_upto = self._next_outbox_id - 1
        self._outbox_queued.clear()
        super()._flushed()

    def outbox_add(self, rows: Iterable[tuple[str, str, bytes, float]], *,
                   hold: Sequence[bool] = ()) -> list[OutboxRow]:
        """Queue (dest, lane, body, created) rows; the rows, with their ids. Row `i` is held
        for `HOLD` seconds first when `hold[i]` is true (inside a running event loop)."""
        out: list[OutboxRow] = []
        loop = asyncio._get_running_loop() if hold else None  # (see batch._write)
        due = loop.time() + HOLD if loop is not None else 0.0
        for index, (dest, lane, body, created) in enumerate(rows):
            row_id = self._next_outbox_id
            self._next_outbox_id = row_id + 1
            row = OutboxRow(row_id, dest, lane, body, created)
            if loop is not None and index < len(hold) and hold[index]:
                self._outbox_held[row_id] = row
                self._outbox_due.append((due, row_id))
            else:
                self._outbox_queue_write(row_id, row)
            out.append(row)
        if loop is not None and self._outbox_due and self._outbox_timer_loop is not loop:
            self._outbox_arm(loop)  # (the first held row, or a new loop)
        return out

    def _outbox_arm(self, loop: asyncio.AbstractEventLoop, not_before: float = 0.0) -> None:
        self._outbox_timer = loop.call_at(max(self._outbox_due[0][0], not_before),
                                          self._outbox_on_due)
        self._outbox_timer_loop = loop

    def _outbox_on_due(self) -> None:
        """Queue the held rows whose time is up; wait for the next one."""
        self._outbox_timer = self._outbox_timer_loop = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        due, held = self._outbox_due, self._outbox_held
        while due and due[0][0] <= now:
            row_id = due.popleft()[1]
            params = held.pop(row_id, None)
            if params is not None:
                self._outbox_queue_write(row_id, params)
        if due:
            self._outbox_arm(loop, now + HOLD_TICK)
        elif len(held) == 0:  # (a dict keeps the size of its busiest moment)
            self._outbox_held = {}

    def _outbox_queue_write(self, row_id: int, params: tuple[object, ...]) -> None:
        self._outbox_queued[row_id] = params
        self._write(_INSERT, params)

    def _outbox_write_held(self) -> None:
        """Queue every held row now (a read of the table, a stop)."""
        timer, loop = self._outbox_timer, self._outbox_timer_loop
        self._outbox_timer = self._outbox_timer_loop = None
        if timer is not None and loop is not None and not loop.is_closed():
            timer.cancel()
        held = self._outbox_held
        self._outbox_held = {}
        self._outbox_due.clear()
        for row_id, params in held.items():
            self._outbox_queue_write(row_id, params)

    def _close_queue(self) -> None:
        self._outbox_write_held()
        super()._close_queue()

    def outbox_stored(self, row_id: int) -> bool:
        """Whether row `row_id` is committed (if queued: `flushed()`; held rows are not)."""
        return row_id <= self._outbox_stored_upto and row_id not in self._outbox_held

    def outbox_dests(self) -> dict[str, int]:
        """How many pending reports each destination has (held ones included)."""
        self._outbox_write_held()
        self.flush()
        return {dest: int(n) for dest, n in self._db.execute(
            "SELECT dest, COUNT(*) FROM outbox GROUP BY dest ORDER BY MIN(id)")}

    def outbox_page(self, dest: str, from_id: int, limit: int) -> list[OutboxRow]:
        """Up to `limit` pending reports of `dest` from id `from_id` on, in id order (the
        held and queued ones written first: they are part of it)."""
        self._outbox_write_held()
        self.flush()
        rows = self._db.execute(
            "SELECT id, dest, lane, body, created FROM outbox WHERE dest=? AND id>=?"
            " ORDER BY id LIMIT ?", (dest, from_id, limit))
        return [OutboxRow(int(i), d, lane, bytes(b), float(c)) for i, d, lane, b, c in rows]

    def outbox_delete(self, row_id: int) -> None:
        """Delete a delivered or dropped row; one still held or whose insert is still
        queued (delivered in time, the usual case) is simply never written."""
        if self._outbox_held.pop(row_id, None) is not None:
            return
        params = self._outbox_queued.pop(row_id, None)
        if params is not None and self._unwrite(_INSERT, params):
            return
        self._write(_DELETE, (row_id,))

    def outbox_delete_dest(self, dest: str) -> int:
        """Drop every pending report of a destination; how many there were."""
        self._outbox_write_held()
        self.flush()
        return self._db.execute("DELETE FROM outbox WHERE dest=?", (dest,)).rowcount

    def outbox_load(self) -> list[OutboxRow]:
        """Every pending report, oldest first."""
        self._outbox_write_held()
        self.flush()
        rows = self._db.execute("SELECT id, dest, lane, body, created FROM outbox ORDER BY id")
        return [OutboxRow(int(i), d, lane, bytes(b), float(c)) for i, d, lane, b, c in rows]

    def outbox_count(self) -> int:
        """Pending reports, held ones included."""
        self.flush()
        count = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        return int(count) + len(self._outbox_held)

    def outbox_adopt_legacy(
        self, convert: Callable[[LegacyRow], tuple[str, str] | None]
    ) -> tuple[int, int]:
        """File an earlier version's rows in this outbox, in one transaction: `convert`
        gives each row its (dest, lane), or None to drop it; the old table goes. Returns
        (kept, dropped). Runs at once (at start: nothing else is queued for long)."""
        self.flush()
        db = self._db
        exists = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='outbox_v1'"
        ).fetchone()
        if exists is None:
            return 0, 0
        rows = db.execute("SELECT token, body, created FROM outbox_v1 ORDER BY id").fetchall()
        kept = dropped = 0
        db.execute("BEGIN")
        try:
            for token, body, created in rows:
                where = convert(LegacyRow(token, bytes(body), float(created)))
                if where is None:
                    dropped += 1
                    continue
                db.execute(
                    "INSERT INTO outbox (dest, lane, body, created) VALUES (?,?,?,?)",
                    (*where, body, created),
                )
                kept += 1
            db.execute("DROP TABLE outbox_v1")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        finally:  # (SQLite gave those rows their ids)
            self._next_outbox_id = max(self._next_outbox_id, self._outbox_top() + 1)
            self._outbox_stored_upto = self._next_outbox_id - 1
        return kept, dropped
