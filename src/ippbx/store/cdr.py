"""The CDR table: one row per finished call, queried by time range and extension.

Rows are `ippbx.pbx.cdr.CdrRecord`s. `cdrs()` selects by the call's start time (unix
seconds, both ends included) and, optionally, by the extensions that took part in the call
(`extensions`, stored comma-separated: caller, callee, transferor, transfer target).
`cdr_page()` and `cdr_hourly()` serve the console's call history and chart. A row keeps
the name of its call's recording file (`recording`; "" when not recorded, and for rows
written before the column existed).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from ippbx.pbx.cdr import CdrRecord
from ippbx.store.batch import WriteQueue

SCHEMA = """
CREATE TABLE IF NOT EXISTS cdr (
    id         INTEGER PRIMARY KEY,
    callid     TEXT NOT NULL,
    started    REAL NOT NULL,
    answered   REAL,
    ended      REAL NOT NULL,
    callfrom   TEXT NOT NULL,
    callto     TEXT NOT NULL,
    duration   INTEGER NOT NULL,
    talk       INTEGER NOT NULL,
    status     TEXT NOT NULL,
    type       TEXT NOT NULL,
    src_trunk  TEXT NOT NULL DEFAULT '',
    dst_trunk  TEXT NOT NULL DEFAULT '',
    caller_ext TEXT NOT NULL DEFAULT '',
    callee_ext TEXT NOT NULL DEFAULT '',
    outboundid TEXT NOT NULL DEFAULT '',
    inboundid  TEXT NOT NULL DEFAULT '',
    cause      INTEGER NOT NULL DEFAULT 0,
    hangup_by  TEXT NOT NULL DEFAULT '',
    extensions TEXT NOT NULL DEFAULT '',
    recording  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS cdr_started ON cdr (started);
CREATE INDEX IF NOT EXISTS cdr_callid ON cdr (callid);
"""

_COLUMNS = ("callid, started, answered, ended, callfrom, callto, duration, talk, status, "
            "type, src_trunk, dst_trunk, caller_ext, callee_ext, outboundid, inboundid, cause, "
            "hangup_by, extensions, recording")
_INSERT = f"INSERT INTO cdr ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"


def _record(row: Sequence[Any]) -> CdrRecord:
    """A row selected with `_COLUMNS` as a record."""
    return CdrRecord(*row[:-2], extensions=tuple(filter(None, row[-2].split(","))),
                     recording=row[-1])


def migrate(db: sqlite3.Connection) -> None:
    """Bring a CDR table made by an earlier version up to this schema."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(cdr)")}
    if "hangup_by" not in columns:
        db.execute("ALTER TABLE cdr ADD COLUMN hangup_by TEXT NOT NULL DEFAULT ''")
    if "extensions" not in columns:
        db.execute("ALTER TABLE cdr ADD COLUMN extensions TEXT NOT NULL DEFAULT ''")
        db.execute("UPDATE cdr SET extensions = trim(caller_ext || ',' || callee_ext, ',')")
    if "recording" not in columns:  # (earlier rows: their recording is not known)
        db.execute("ALTER TABLE cdr ADD COLUMN recording TEXT NOT NULL DEFAULT ''")


class CdrTable(WriteQueue):
    """Mixin of `Store`: the CDR rows."""

    def add_cdr(self, r: CdrRecord) -> None:
        """Queue the row (see `ippbx.store.batch`)."""
        self._write(
            _INSERT,
            (r.callid, r.start, r.answer, r.end, r.callfrom, r.callto, r.duration, r.talk,
             r.status, r.type, r.src_trunk, r.dst_trunk, r.caller_ext, r.callee_ext,
             r.outboundid, r.inboundid, r.cause, r.hangup_by,
             ",".join(dict.fromkeys(e for e in (r.caller_ext, r.callee_ext, *r.extensions) if e)),
             r.recording),
        )

    def cdrs(
        self, start: float | None = None, end: float | None = None,
        extensions: Iterable[str] | None = None,
    ) -> list[CdrRecord]:
        """Records started in [start, end], on any of `extensions` (None: all), in order."""
        self.flush()
        sql = f"SELECT {_COLUMNS} FROM cdr WHERE 1"
        args: list[object] = []
        if start is not None:
            sql += " AND started >= ?"
            args.append(start)
        if end is not None:
            sql += " AND started <= ?"
            args.append(end)
        if extensions is not None:
            exts = list(extensions)
            if not exts:
                return []
            took_part = "instr(',' || extensions || ',', ',' || ? || ',') > 0"
            sql += " AND (" + " OR ".join([took_part] * len(exts)) + ")"
            args += exts
        sql += " ORDER BY started, id"
        return [_record(row) for row in self._db.execute(sql, args)]

    def cdr_page(self, text: str = "", offset: int = 0, limit: int = 25,
                 ) -> tuple[int, list[CdrRecord]]:
        """(how many records match, `limit` of them from `offset`, newest first): records
        whose caller, callee, trunks or callid hold `text` (all when it is blank)."""
        self.flush()
        where, args = "", []
        if text.strip():
            like = "%" + text.strip().replace("\\", "\\\\").replace("%", "\\%") \
                .replace("_", "\\_") + "%"
            where = " WHERE " + " OR ".join(
                f"{column} LIKE ? ESCAPE '\\'"
                for column in ("callfrom", "callto", "src_trunk", "dst_trunk", "callid"))
            args = [like] * 5
        total = int(self._db.execute(f"SELECT COUNT(*) FROM cdr{where}", args).fetchone()[0])
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM cdr{where} ORDER BY started DESC, id DESC LIMIT ? OFFSET ?",
            [*args, max(0, limit), max(0, offset)])
        return total, [_record(row) for row in rows]

    def cdr_hourly(self, since: float) -> list[tuple[int, int, int]]:
        """(hour as unix seconds, calls, answered calls) for each hour since `since` in
        which a call started, in order."""
        self.flush()
        return [(int(hour) * 3600, int(calls), int(answered or 0)) for hour, calls, answered
                in self._db.execute(
                    "SELECT CAST(started / 3600 AS INTEGER) AS hour, COUNT(*), "
                    "SUM(answered IS NOT NULL) FROM cdr WHERE started >= ? "
                    "GROUP BY hour ORDER BY hour", (since,))]

    def cdr_count(self) -> int:
        self.flush()
        return int(self._db.execute("SELECT COUNT(*) FROM cdr").fetchone()[0])
