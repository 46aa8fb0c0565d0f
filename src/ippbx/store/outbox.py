"""The report outbox: every report is a row before it is sent, deleted after a 2xx.

Rows belong to a session (its token); their id order is the delivery order. Writes are
committed at once (WAL, synchronous=NORMAL), so a report stored before a crash of the
process is still there after the restart.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    token   TEXT NOT NULL,
    body    BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_token ON outbox (token, id);
"""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    token: str
    body: bytes
    created: float


class OutboxTable:
    """Mixin of `Store`: the pending reports."""

    _db: sqlite3.Connection

    def outbox_add(self, rows: Iterable[tuple[str, bytes, float]]) -> list[OutboxRow]:
        """Store (token, body, created) rows in one transaction; the stored rows."""
        out: list[OutboxRow] = []
        db = self._db
        db.execute("BEGIN")
        try:
            for token, body, created in rows:
                cur = db.execute(
                    "INSERT INTO outbox (token, body, created) VALUES (?,?,?)",
                    (token, body, created),
                )
                out.append(OutboxRow(int(cur.lastrowid or 0), token, body, created))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return out

    def outbox_delete(self, row_id: int) -> None:
        self._db.execute("DELETE FROM outbox WHERE id=?", (row_id,))

    def outbox_delete_token(self, token: str) -> int:
        """Drop every pending report of a session; how many there were."""
        return self._db.execute("DELETE FROM outbox WHERE token=?", (token,)).rowcount

    def outbox_load(self) -> list[OutboxRow]:
        """Every pending report, oldest first."""
        rows = self._db.execute("SELECT id, token, body, created FROM outbox ORDER BY id")
        return [OutboxRow(int(i), t, bytes(b), float(c)) for i, t, b, c in rows]

    def outbox_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
