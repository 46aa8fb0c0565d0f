"""SQLite persistence for what must survive a restart: registrations, CDRs, the report
outbox, API sessions, the dialogs of answered calls, extension features set from phones,
the voicemail messages and the queues' run-time agents (in `store/cdr.py`, `outbox.py`,
`sessions.py`, `dialogs.py`, `features.py`, `voicemail.py`, `queue_agents.py`, mixed
into `Store`).

One connection in WAL mode (synchronous=NORMAL), used from the event loop thread. Writes
are queued and committed together, one transaction per `FLUSH_DELAY` (5 ms) at most
(`ippbx.store.batch`); every read flushes first, and without a running event loop every
write is committed at once. Durability: what was written more than 5 ms before a crash of
the process (kill -9 included) is still there after the restart; writes of the last 5 ms
before it may be lost. A graceful stop (`close()`, which `App` calls after its components
have stopped, on SIGTERM/SIGINT too) loses nothing. The file is created mode 0600 (SQLite
gives its WAL files the same mode).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from ippbx.store import (
    cdr,
    config,
    dialogs,
    features,
    outbox,
    queue_agents,
    sessions,
    voicemail,
)
from ippbx.store.batch import FLUSH_CAP, FLUSH_DELAY

__all__ = ["FLUSH_CAP", "FLUSH_DELAY", "RegistrationRow", "Store"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS registrations (
    extension  TEXT NOT NULL,
    contact    TEXT NOT NULL,
    expires_at REAL NOT NULL,
    host       TEXT NOT NULL,
    port       INTEGER NOT NULL,
    transport  TEXT NOT NULL,
    call_id    TEXT NOT NULL,
    cseq       INTEGER NOT NULL,
    user_agent TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (extension, contact)
);
"""

_SAVE_REGISTRATION = "INSERT OR REPLACE INTO registrations VALUES (?,?,?,?,?,?,?,?,?)"
_DELETE_EXTENSION = "DELETE FROM registrations WHERE extension=?"
_DELETE_CONTACT = "DELETE FROM registrations WHERE extension=? AND contact=?"


@dataclass(frozen=True, slots=True)
class RegistrationRow:
    extension: str
    contact: str
    expires_at: float
    host: str
    port: int
    transport: str
    call_id: str
    cseq: int
    user_agent: str


def _private(path: Path) -> None:
    """The database (and its WAL files) readable by its owner only: it holds live API
    tokens and every extension's calls. A file made by an earlier version is tightened."""
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if file.exists():
            os.chmod(file, 0o600)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


class Store(cdr.CdrTable, outbox.OutboxTable, sessions.SessionTable, dialogs.DialogTable,
            features.FeatureTable, voicemail.VoicemailTable,
            queue_agents.QueueAgentTable, config.ConfigTable):
    """The SQLite file behind ippbx (":memory:" works for tests that need no restart)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            _private(Path(self.path))
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        outbox.migrate(self._db)
        self._db.executescript(
            _SCHEMA + cdr.SCHEMA + outbox.SCHEMA + sessions.SCHEMA + dialogs.SCHEMA
            + features.SCHEMA + voicemail.SCHEMA + queue_agents.SCHEMA + config.SCHEMA
        )
        cdr.migrate(self._db)
        sessions.migrate(self._db)
        self._open_queue()
        self._open_outbox()

    def close(self) -> None:
        """Commit what is queued, then close the file (later writes raise)."""
        if not self._closed:
            self._close_queue()
        self._db.close()

    # -- registrations ------------------------------------------------------------------
    def save_registration(self, row: RegistrationRow) -> None:
        self._write(_SAVE_REGISTRATION, (row.extension, row.contact, row.expires_at, row.host,
                                         row.port, row.transport, row.call_id, row.cseq,
                                         row.user_agent))

    def delete_registration(self, extension: str, contact: str | None = None) -> None:
        if contact is None:
            self._write(_DELETE_EXTENSION, (extension,))
        else:
            self._write(_DELETE_CONTACT, (extension, contact))

    def load_registrations(self, now: float) -> list[RegistrationRow]:
        """Live registrations; expired ones are deleted on the way."""
        self.flush()
        self._db.execute("DELETE FROM registrations WHERE expires_at <= ?", (now,))
        rows = self._db.execute("SELECT * FROM registrations ORDER BY rowid").fetchall()
        return [RegistrationRow(*r) for r in rows]
