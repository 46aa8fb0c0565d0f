"""The report outbox: every report is a row before it is sent, deleted once delivered or
dropped.

A row belongs to a destination (`dest`: the report form and URL, shared by every session
that has them) and to a lane (`lane`: the call's callid, or `ext:<number>` for an
extension's status reports), which is what its order is kept within; id order is the order
within a lane.

Writes go through the store's write queue (`ippbx.store.batch`): they are committed in one
transaction with everything else written in the same `FLUSH_DELAY` (5 ms; WAL,
synchronous=NORMAL). A report stored more than that before a crash of the process is still
there after the restart; one stored in the last 5 ms before it may be lost (the delivery
sends the other reports at once, but waits for `outbox_stored()` before it POSTs a NewCdr,
and so for the CDR written before it). A graceful stop (`close()`) loses nothing.
Ids are given here, not by SQLite, so `outbox_add` returns its rows before they are
written: the next id is one above the largest the table (or its AUTOINCREMENT sequence)
has seen, so ids never repeat across restarts. One process writes the file at a time.

An outbox made by an earlier version (one queue per session token) is renamed
`outbox_v1` by `migrate`; `outbox_adopt_legacy` files its rows under their session's
destination once (the delivery knows destinations, the store does not).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass

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
_INSERT = "INSERT INTO outbox (id, dest, lane, body, created) VALUES (?,?,?,?,?)"
_DELETE = "DELETE FROM outbox WHERE id=?"


def migrate(db: sqlite3.Connection) -> None:
    """Move a per-session outbox of an earlier version aside (before SCHEMA runs)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
    if "token" in columns and "dest" not in columns:
        db.execute("DROP INDEX IF EXISTS outbox_token")
        db.execute("ALTER TABLE outbox RENAME TO outbox_v1")


@dataclass(frozen=True, slots=True)
class OutboxRow:
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

    def outbox_add(self, rows: Iterable[tuple[str, str, bytes, float]]) -> list[OutboxRow]:
        """Queue (dest, lane, body, created) rows; the rows, with their ids."""
        out: list[OutboxRow] = []
        for dest, lane, body, created in rows:
            row_id = self._next_outbox_id
            self._next_outbox_id = row_id + 1
            params = (row_id, dest, lane, body, created)
            self._outbox_queued[row_id] = params
            self._write(_INSERT, params)
            out.append(OutboxRow(row_id, dest, lane, body, created))
        return out

    def outbox_stored(self, row_id: int) -> bool:
        """Whether the insert of row `row_id` has been flushed (if not: `flushed()`)."""
        return row_id <= self._outbox_stored_upto

    def outbox_delete(self, row_id: int) -> None:
        """Delete a delivered or dropped row; one whose insert is still queued (delivered
        within the batch delay, the usual case) is simply never written."""
        params = self._outbox_queued.pop(row_id, None)
        if params is not None and self._unwrite(_INSERT, params):
            return
        self._write(_DELETE, (row_id,))

    def outbox_delete_dest(self, dest: str) -> int:
        """Drop every pending report of a destination; how many there were."""
        self.flush()
        return self._db.execute("DELETE FROM outbox WHERE dest=?", (dest,)).rowcount

    def outbox_load(self) -> list[OutboxRow]:
        """Every pending report, oldest first."""
        self.flush()
        rows = self._db.execute("SELECT id, dest, lane, body, created FROM outbox ORDER BY id")
        return [OutboxRow(int(i), d, lane, bytes(b), float(c)) for i, d, lane, b, c in rows]

    def outbox_count(self) -> int:
        self.flush()
        return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

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
