"""The report outbox: every report is a row before it is sent, deleted once delivered or
dropped.

A row belongs to a destination (`dest`: the report form and URL, shared by every session
that has them) and to a lane (`lane`: the call's callid, or `ext:<number>` for an
extension's status reports), which is what its order is kept within; id order is the order
within a lane. Writes are committed at once (WAL, synchronous=NORMAL), so a report stored
before a crash of the process is still there after the restart.

An outbox made by an earlier version (one queue per session token) is renamed
`outbox_v1` by `migrate`; `outbox_adopt_legacy` files its rows under their session's
destination once (the delivery knows destinations, the store does not).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass

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


class OutboxTable:
    """Mixin of `Store`: the pending reports."""

    _db: sqlite3.Connection

    def outbox_add(self, rows: Iterable[tuple[str, str, bytes, float]]) -> list[OutboxRow]:
        """Store (dest, lane, body, created) rows in one transaction; the stored rows."""
        out: list[OutboxRow] = []
        db = self._db
        db.execute("BEGIN")
        try:
            for dest, lane, body, created in rows:
                cur = db.execute(
                    "INSERT INTO outbox (dest, lane, body, created) VALUES (?,?,?,?)",
                    (dest, lane, body, created),
                )
                out.append(OutboxRow(int(cur.lastrowid or 0), dest, lane, body, created))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return out

    def outbox_delete(self, row_id: int) -> None:
        self._db.execute("DELETE FROM outbox WHERE id=?", (row_id,))

    def outbox_delete_dest(self, dest: str) -> int:
        """Drop every pending report of a destination; how many there were."""
        return self._db.execute("DELETE FROM outbox WHERE dest=?", (dest,)).rowcount

    def outbox_load(self) -> list[OutboxRow]:
        """Every pending report, oldest first."""
        rows = self._db.execute("SELECT id, dest, lane, body, created FROM outbox ORDER BY id")
        return [OutboxRow(int(i), d, lane, bytes(b), float(c)) for i, d, lane, b, c in rows]

    def outbox_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def outbox_adopt_legacy(
        self, convert: Callable[[LegacyRow], tuple[str, str] | None]
    ) -> tuple[int, int]:
        """File an earlier version's rows in this outbox, in one transaction: `convert`
        gives each row its (dest, lane), or None to drop it; the old table goes. Returns
        (kept, dropped)."""
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
        return kept, dropped
