"""The running configuration's objects (extensions, trunks, routes, IVRs, groups, queues),
kept in SQLite so that changes made through the API or the CLI outlive a restart.

One row per object: its kind (the config list it belongs to, e.g. `"trunks"`), its key
(number or name), its place in that list (routes are tried in order), its fields as a JSON
object (the TOML's keys and values) and an id that never changes while the object lives
(the API's `id` of trunks and routes). `config_meta` holds the revision, bumped by every
change, and the configuration file the store last agreed with (the digest of that file's
objects and the revision at which they agreed), so a start can tell whether the file or
the store changed since.

A save replaces the objects of the kinds it is given in one transaction: all of it or none,
and only if the store is still at the revision the caller read (else `StaleConfig`: another
process, `ippbx config import` say, changed it meanwhile). It does not go through the
write queue of `ippbx.store.batch`: a configuration change is committed before it is
answered.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ippbx.store.batch import WriteQueue

SCHEMA = """
CREATE TABLE IF NOT EXISTS config_objects (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    kind     TEXT NOT NULL,
    key      TEXT NOT NULL,
    position INTEGER NOT NULL,
    body     TEXT NOT NULL,
    UNIQUE (kind, key)
);
CREATE TABLE IF NOT EXISTS config_meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

Fields = dict[str, Any]


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One configuration object as stored: its id (0: not stored yet), key and fields
    (to save: None for an object stored already and unchanged, which is not written)."""

    id: int
    key: str
    fields: Fields | None


@dataclass(frozen=True, slots=True)
class StoredConfig:
    """Every stored object by kind, in list order, with the meta values."""

    objects: Mapping[str, tuple[StoredObject, ...]]
    revision: int
    file_digest: str  # the objects of the file the store last agreed with …
    file_revision: int  # … and the revision then


class StaleConfig(Exception):
    """The store is not at the revision the change was made against."""


class ConfigTable(WriteQueue):
    """Mixin of `Store`: the configuration objects and their revision."""

    def config_load(self) -> StoredConfig | None:
        """What is stored, or None when nothing ever was (a first start)."""
        self.flush()
        meta = dict(self._db.execute("SELECT name, value FROM config_meta").fetchall())
        if "revision" not in meta:
            return None
        objects: dict[str, list[StoredObject]] = {}
        rows = self._db.execute(
            "SELECT id, kind, key, body FROM config_objects ORDER BY kind, position")
        for row_id, kind, key, body in rows.fetchall():
            objects.setdefault(kind, []).append(StoredObject(row_id, key, json.loads(body)))
        return StoredConfig({kind: tuple(items) for kind, items in objects.items()},
                            int(meta["revision"]), meta.get("file_digest", ""),
                            int(meta.get("file_revision", "-1")))

    def config_save(self, objects: Mapping[str, Sequence[StoredObject]], *,
                    expected_revision: int, file_digest: str | None = None,
                    ) -> tuple[int, dict[str, list[int]]]:
        """Replace the objects of every kind in `objects` (others are kept) in one
        transaction, bump the revision and return it with each kind's ids in list order
        (new objects get theirs here). `expected_revision`: the revision the change was
        made against (0: nothing stored yet); another one raises `StaleConfig` and
        changes nothing. With `file_digest`, the store now agrees with the configuration
        file whose objects have that digest."""
        self.flush()
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT value FROM config_meta WHERE name = 'revision'")
            found = row.fetchone()
            current = int(found[0]) if found else 0
            if current != expected_revision:
                raise StaleConfig(f"the store is at revision {current}, "
                                  f"not {expected_revision}")
            ids = {kind: _save_kind(db, kind, items) for kind, items in objects.items()}
            revision = current + 1
            meta = [("revision", str(revision))]
            if file_digest is not None:
                meta += [("file_digest", file_digest), ("file_revision", str(revision))]
            db.executemany("INSERT OR REPLACE INTO config_meta VALUES (?, ?)", meta)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return revision, ids


def _save_kind(db: sqlite3.Connection, kind: str, items: Sequence[StoredObject]) -> list[int]:
    """Make `kind`'s rows `items`: rows not listed go, changed ones are rewritten, new ones
    are appended (after every row kept: positions only order the rows, gaps are fine)."""
    listed = {item.id for item in items if item.id}
    stored = [row_id for (row_id,) in db.execute(
        "SELECT id FROM config_objects WHERE kind = ?", (kind,))]
    db.executemany("DELETE FROM config_objects WHERE id = ?",
                   [(row_id,) for row_id in stored if row_id not in listed])
    changed = [item for item in items if item.id and item.fields is not None]
    # a changed key may be one another changed row gives up: park them first, so that
    # UNIQUE (kind, key) holds after every statement
    db.executemany("UPDATE config_objects SET key = char(1) || id WHERE id = ?",
                   [(item.id,) for item in changed])
    db.executemany("UPDATE config_objects SET key = ?, body = ? WHERE id = ?",
                   [(item.key, _body(item.fields), item.id) for item in changed])
    (last,) = db.execute("SELECT max(position) FROM config_objects WHERE kind = ?",
                         (kind,)).fetchone()
    position = -1 if last is None else int(last)
    ids = []
    for item in items:
        if item.id:
            ids.append(item.id)
            continue
        position += 1
        cursor = db.execute(
            "INSERT INTO config_objects (kind, key, position, body) VALUES (?,?,?,?)",
            (kind, item.key, position, _body(item.fields or {})))
        ids.append(int(cursor.lastrowid or 0))
    return ids


def _body(fields: Fields | None) -> str:
    return json.dumps(fields or {}, separators=(",", ":"), sort_keys=True)
