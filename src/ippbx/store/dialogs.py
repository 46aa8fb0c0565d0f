"""The dialogs of answered calls, kept while they last, so that a PBX that died mid-call
can end them at its next start (`ippbx.pbx.leftover_dialogs`).

One row per SIP dialog: what an in-dialog BYE needs (Call-ID, tags, From/To values,
our CSeq, the remote target, the route set, where the peer was). `DialogJournal` hands
its saves and ends over in batches; they go through the store's write queue
(`ippbx.store.batch`) like every other write.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from ippbx.store.batch import WriteQueue

SCHEMA = """
CREATE TABLE IF NOT EXISTS dialogs (
    call_id       TEXT NOT NULL,
    local_tag     TEXT NOT NULL,
    remote_tag    TEXT NOT NULL,
    local_addr    TEXT NOT NULL,
    remote_addr   TEXT NOT NULL,
    local_cseq    INTEGER NOT NULL,
    remote_target TEXT NOT NULL,
    route_set     TEXT NOT NULL,
    is_uac        INTEGER NOT NULL,
    host          TEXT NOT NULL,
    port          INTEGER NOT NULL,
    transport     TEXT NOT NULL,
    saved         REAL NOT NULL,
    PRIMARY KEY (call_id, local_tag, remote_tag)
);
"""

_SAVE = "INSERT OR REPLACE INTO dialogs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
_END = "DELETE FROM dialogs WHERE call_id=? AND local_tag=? AND remote_tag=?"

DialogKey = tuple[str, str, str]  # (Call-ID, local tag, remote tag)


@dataclass(frozen=True, slots=True)
class DialogRow:
    call_id: str
    local_tag: str
    remote_tag: str
    local_addr: str
    remote_addr: str
    local_cseq: int
    remote_target: str
    route_set: tuple[str, ...]
    is_uac: bool
    host: str
    port: int
    transport: str
    saved: float

    @property
    def key(self) -> DialogKey:
        return (self.call_id, self.local_tag, self.remote_tag)


class DialogTable(WriteQueue):
    """Mixin of `Store`: the live dialogs of answered calls."""

    def dialogs_apply(self, saves: Iterable[DialogRow], ends: Iterable[DialogKey]) -> None:
        """Queue `saves` (insert or replace), then the deletes of `ends`."""
        for r in saves:
            self._write(_SAVE, (r.call_id, r.local_tag, r.remote_tag, r.local_addr,
                                r.remote_addr, r.local_cseq, r.remote_target,
                                json.dumps(list(r.route_set)), int(r.is_uac), r.host, r.port,
                                r.transport, r.saved))
        for key in ends:
            self._write(_END, key)

    def dialogs_load(self) -> list[DialogRow]:
        self.flush()
        rows = self._db.execute("SELECT * FROM dialogs ORDER BY saved").fetchall()
        return [DialogRow(c, lt, rt, la, ra, int(cs), tgt, tuple(json.loads(rs)), bool(uac),
                          h, int(p), t, float(s))
                for c, lt, rt, la, ra, cs, tgt, rs, uac, h, p, t, s in rows]
