"""No orphan calls after a crash: the dialogs of answered calls are journalled in the store
while they last, and the next start sends BYE on those a previous run left up.

A carrier (or a phone) whose call ippbx was bridging when it died keeps that call up,
and the carrier keeps billing it, until something ends it. `DialogJournal` records each
dialog the B2BUA confirms (`saved`) and forgets it when it ends (`ended`); writes are
batched and handed to the store every `flush_every` seconds (which commits them with its
other queued writes, `ippbx.store.batch`), so the journal costs a few rows per interval
however many calls come and go (a call shorter than the interval is never written at
all). What a crash can lose is the last interval (and the store's `FLUSH_DELAY`): a call
answered just before it may still be orphaned.

`end_leftovers` runs at start: for every journalled dialog it rebuilds the dialog and
sends a BYE (CSeq well above the last one journalled, which re-INVITEs may have passed),
waits for the answers (or `timeout`), and clears the journal. A peer that forgot the call
answers 481; one that is gone does not answer; either way the row goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

from ippbx.sip.dialog import Dialog
from ippbx.sip.ua import UserAgent
from ippbx.sip.wire import Peer
from ippbx.store.dialogs import DialogKey, DialogRow

log = logging.getLogger(__name__)

FLUSH_EVERY = 0.25
"""Seconds between two journal writes."""
CSEQ_MARGIN = 100
"""Added to the journalled CSeq for the BYE: re-INVITEs after the journal write raised it."""


class DialogStore(Protocol):
    """The dialogs table (`ippbx.store.sqlite.Store`)."""

    def dialogs_apply(self, saves: list[DialogRow], ends: list[DialogKey]) -> None: ...

    def dialogs_load(self) -> list[DialogRow]: ...


def _row(dialog: Dialog, now: float) -> DialogRow | None:
    peer = dialog.peer
    if not isinstance(peer, Peer):
        return None
    return DialogRow(
        dialog.call_id, dialog.local_tag, dialog.remote_tag, dialog.local_addr,
        dialog.remote_addr, dialog.local_cseq, dialog.remote_target, tuple(dialog.route_set),
        dialog.is_uac, peer.host, peer.port, peer.transport, now,
    )


def _dialog(row: DialogRow) -> Dialog:
    return Dialog(
        call_id=row.call_id, local_tag=row.local_tag, remote_tag=row.remote_tag,
        local_addr=row.local_addr, remote_addr=row.remote_addr,
        local_cseq=row.local_cseq + CSEQ_MARGIN, remote_cseq=None,
        remote_target=row.remote_target, route_set=list(row.route_set), secure=False,
        is_uac=row.is_uac, peer=Peer(row.host, row.port, row.transport),
    )


class DialogJournal:
    """The confirmed dialogs of live calls, mirrored into the store in batches."""

    def __init__(
        self,
        store: DialogStore,
        *,
        flush_every: float = FLUSH_EVERY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.flush_every = flush_every
        self.clock = clock
        self._saves: dict[DialogKey, DialogRow] = {}
        self._ends: set[DialogKey] = set()
        self._written: set[DialogKey] = set()  # in the store now (or after the next flush)
        self._task: asyncio.Task[None] | None = None

    def saved(self, dialog: Dialog) -> None:
        """`dialog` is confirmed: journal it."""
        row = _row(dialog, self.clock())
        if row is not None:
            self._ends.discard(row.key)
            self._saves[row.key] = row

    def ended(self, dialog: Dialog) -> None:
        """`dialog` is over: take it out of the journal (never written: nothing to do)."""
        key = dialog.id
        if self._saves.pop(key, None) is not None and key not in self._written:
            return
        if key in self._written:
            self._ends.add(key)

    def flush(self) -> None:
        if not self._saves and not self._ends:
            return
        saves, ends = list(self._saves.values()), list(self._ends)
        self._saves.clear()
        self._ends.clear()
        try:
            self.store.dialogs_apply(saves, ends)
        except Exception:
            log.exception("journalling %d dialogs failed", len(saves) + len(ends))
            return
        self._written.difference_update(ends)
        self._written.update(row.key for row in saves)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ippbx-dialog-journal")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_every)
            self.flush()


async def end_leftovers(store: DialogStore, ua: UserAgent, timeout: float = 10.0) -> int:
    """BYE every dialog the journal holds from a previous run; how many there were."""
    rows = store.dialogs_load()
    if not rows:
        return 0
    log.warning("%d call legs left up by the previous run: sending BYE", len(rows))

    async def bye(row: DialogRow) -> int:
        try:
            response = await asyncio.wait_for(
                ua.request_in_dialog(_dialog(row), "BYE"), timeout
            )
        except TimeoutError:
            return 0
        return response.status

    answers = await asyncio.gather(*(bye(row) for row in rows), return_exceptions=True)
    store.dialogs_apply([], [row.key for row in rows])
    ended = sum(1 for a in answers if isinstance(a, int) and 200 <= a < 300)
    log.info("previous run's legs: %d ended, %d already gone or not answering", ended,
             len(rows) - ended)
    return len(rows)
