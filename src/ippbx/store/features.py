"""The extension settings a phone changes at run time with feature codes (do-not-disturb,
forward-always), kept over restarts. A row overrides the configuration file's value;
a NULL column leaves it to the file."""

from __future__ import annotations

from ippbx.store.batch import WriteQueue

SCHEMA = """
CREATE TABLE IF NOT EXISTS extension_features (
    number         TEXT PRIMARY KEY,
    dnd            INTEGER,
    forward_always TEXT
);
"""

_SAVE = "INSERT OR REPLACE INTO extension_features VALUES (?,?,?)"


class FeatureTable(WriteQueue):
    """Mixin of `Store`: run-time DND and forwarding per extension."""

    def features_save(self, number: str, dnd: bool | None, forward_always: str | None) -> None:
        self._write(_SAVE, (number, None if dnd is None else int(dnd), forward_always))

    def features_load(self) -> dict[str, tuple[bool | None, str | None]]:
        self.flush()
        rows = self._db.execute("SELECT number, dnd, forward_always FROM extension_features")
        return {number: (None if dnd is None else bool(dnd), forward)
                for number, dnd, forward in rows.fetchall()}
