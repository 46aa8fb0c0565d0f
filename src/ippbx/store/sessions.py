"""API sessions in SQLite, so tokens and report destinations survive a restart.

Times are wall-clock unix seconds (the session manager itself runs on a monotonic clock
and converts). `last_seen` is written on login, heartbeat and logout at once, and on
other use at most once a minute, so a restart may make a token look up to that much older.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

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
    last_seen REAL NOT NULL
);
"""


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


class SessionTable:
    """Mixin of `Store`: the API sessions."""

    _db: sqlite3.Connection

    def save_session(self, row: SessionRow) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO sessions VALUES (?,?,?,?,?,?,?,?,?,?)",
            (row.token, row.dialect, row.source_ip, row.port, row.url, row.urltag,
             row.version, row.ipaddr, row.created, row.last_seen),
        )

    def touch_session(self, token: str, last_seen: float) -> None:
        self._db.execute("UPDATE sessions SET last_seen=? WHERE token=?", (last_seen, token))

    def delete_session(self, token: str) -> None:
        self._db.execute("DELETE FROM sessions WHERE token=?", (token,))

    def load_sessions(self) -> list[SessionRow]:
        rows = self._db.execute("SELECT * FROM sessions ORDER BY created")
        return [SessionRow(*r) for r in rows]
