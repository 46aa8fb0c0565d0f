"""API sessions in SQLite, so tokens and report destinations survive a restart.

Times are wall-clock unix seconds (the session manager itself runs on a monotonic clock
and converts). `last_seen` is written on login, heartbeat and logout at once, and on
other use at most once a minute, so a restart may make a token look up to that much older.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from ippbx.store.batch import WriteQueue

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    token     TEXT PRIMARY KEY,
    dialect   TEXT NOT NULL,
    source_ip TEXT NOT NULL,
    port      TEXT NOT NULL DEFAULT '',
    url       TEXT NOT NULL DEFAULT '',
    urltag    TEXT NOT NULL DEFAULT '0',
    version   TEXT NOT NULL DEFAULT '',
    ipaddr    TEXT NOT NULL DEFAULT '',
    created   REAL NOT NULL,
    last_seen REAL NOT NULL,
    username  TEXT NOT NULL DEFAULT ''
);
"""

_SAVE = "INSERT OR REPLACE INTO sessions VALUES (?,?,?,?,?,?,?,?,?,?,?)"
_TOUCH = "UPDATE sessions SET last_seen=? WHERE token=?"
_DELETE = "DELETE FROM sessions WHERE token=?"


@dataclass(frozen=True, slots=True)
class SessionRow:
    token: str
    dialect: str
    source_ip: str
    port: str
    url: str
    urltag: str
    version: str
    ipaddr: str
    created: float
    last_seen: float
    username: str = ""  # ("": a session from before users had names: the first user)


def migrate(db: sqlite3.Connection) -> None:
    """Add `username` to a sessions table made before it existed."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(sessions)")}
    if columns and "username" not in columns:
        db.execute("ALTER TABLE sessions ADD COLUMN username TEXT NOT NULL DEFAULT ''")


class SessionTable(WriteQueue):
    """Mixin of `Store`: the API sessions (writes queued, see `ippbx.store.batch`)."""

    def save_session(self, row: SessionRow) -> None:
        self._write(_SAVE, (row.token, row.dialect, row.source_ip, row.port, row.url,
                            row.urltag, row.version, row.ipaddr, row.created, row.last_seen,
                            row.username))

    def touch_session(self, token: str, last_seen: float) -> None:
        self._write(_TOUCH, (last_seen, token))

    def delete_session(self, token: str) -> None:
        self._write(_DELETE, (token,))

    def load_sessions(self) -> list[SessionRow]:
        self.flush()
        rows = self._db.execute("SELECT * FROM sessions ORDER BY created")
        return [SessionRow(*r) for r in rows]
