"""The write queue every table of `Store` writes through: one SQLite transaction every few
milliseconds for all of them, instead of one per row.

A write method calls `_write(sql, params)`, which queues the statement. Inside a running
asyncio loop the first queued write arms a timer: `FLUSH_DELAY` later, `flush()` runs
everything queued in one transaction (BEGIN … COMMIT), in the order it was queued, runs
of the same statement through one `executemany`. `FLUSH_CAP` queued writes flush at once.
Without a running loop (CLI tools, plain sync code) every write is flushed at once, as
before. Every read flushes first, so a reader always sees what was written; `close()`
flushes too. The SQL strings are module constants, so sqlite3's statement cache (keyed by
the SQL text) prepares each statement once.

If a batch fails, it is rolled back and run again statement by statement in a new
transaction: only the statements that fail are lost (logged, without their parameters),
and the store goes on working.

What this costs: writes queued in the last `FLUSH_DELAY` before the process dies (kill -9,
a crash, power loss on top of WAL's synchronous=NORMAL) are lost. `flushed()` lets a
caller wait until what it wrote is committed (the report delivery sends no NewCdr before
its row, and so the call's CDR, is).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Sequence

log = logging.getLogger(__name__)

FLUSH_DELAY = 0.005
"""Seconds from the first queued write to the transaction that commits it."""
FLUSH_CAP = 1000
"""Queued writes that make `flush()` run at once, whatever the delay."""

Params = Sequence[object]


class WriteQueue:
    """Base of `Store` and its table mixins: the queued writes and their flushing."""

    _db: sqlite3.Connection

    def _open_queue(self) -> None:
        self._batch: list[tuple[str, list[Params]]] = []  # (sql, its rows), in order
        self._queued = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._closed = False
        self.transactions = 0  # flushes that had something to write

    def _write(self, sql: str, params: Params) -> None:
        """Queue one statement (flushed at once when no asyncio loop runs here)."""
        batch = self._batch
        if batch and batch[-1][0] == sql:
            batch[-1][1].append(params)
        else:
            if self._closed:
                raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
            batch.append((sql, [params]))
        self._queued += 1
        loop = asyncio._get_running_loop()  # (get_running_loop raises when none: slower)
        if loop is None or self._queued >= FLUSH_CAP:
            self.flush()
        elif loop is not self._timer_loop:  # (first write of the batch, or a new loop)
            self._arm(loop)

    def _unwrite(self, sql: str, params: Params) -> bool:
        """Take back a write still queued (`params` is the object given to `_write`);
        False if it is not queued any more (flushed, or never written)."""
        for queued_sql, rows in reversed(self._batch):
            if queued_sql != sql:
                continue
            for index in range(len(rows) - 1, -1, -1):
                if rows[index] is params:
                    del rows[index]
                    self._queued -= 1
                    return True
        return False

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        self._disarm()
        self._timer = loop.call_later(FLUSH_DELAY, self._on_timer)
        self._timer_loop = loop

    def _disarm(self) -> None:
        timer, old = self._timer, self._timer_loop
        self._timer = self._timer_loop = None
        if timer is not None and old is not None and not old.is_closed():
            timer.cancel()

    def _on_timer(self) -> None:
        self._timer = self._timer_loop = None
        self.flush()

    def flush(self) -> None:
        """Commit every queued write in one transaction (nothing queued: nothing done)."""
        if self._timer is not None:
            self._disarm()
        batch = self._batch
        if not batch:
            return
        count = self._queued
        self._batch = []
        self._queued = 0
        db = self._db
        try:
            db.execute("BEGIN")
            for sql, rows in batch:
                if len(rows) == 1:
                    db.execute(sql, rows[0])
                else:
                    db.executemany(sql, rows)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            self._replay(batch, count, exc)
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            log.error("store: %d queued writes lost (interrupted)", count)
            raise
        finally:
            self.transactions += 1
            self._flushed()

    def _replay(self, batch: list[tuple[str, list[Params]]], count: int,
                exc: sqlite3.Error) -> None:
        """The batch failed: run it again one statement at a time, in one transaction, so
        only the statements that fail are lost."""
        db = self._db
        failed = 0
        first = ""
        try:
            db.execute("BEGIN")
            for sql, rows in batch:
                for params in rows:
                    try:
                        db.execute(sql, params)
                    except sqlite3.Error as err:
                        failed += 1
                        first = first or f"{_verb(sql)}: {err}"
                        if not db.in_transaction:  # (SQLite rolled it all back)
                            raise
            db.execute("COMMIT")
        except sqlite3.Error:
            if db.in_transaction:
                db.execute("ROLLBACK")
            log.exception("store: a batch of %d writes failed (%s); all of it is lost",
                          count, exc)
            return
        if failed:
            log.error("store: %d of %d queued writes failed and were dropped (first: %s)",
                      failed, count, first)
        else:
            log.warning("store: a batch of %d writes failed (%s), then went through", count,
                        exc)

    def _flushed(self) -> None:
        """Hook: the batch is settled (committed, or failed and logged)."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                with contextlib.suppress(RuntimeError):  # (its loop is closed)
                    waiter.set_result(None)

    async def flushed(self) -> None:
        """Return once what is queued now is committed (at once if nothing is queued)."""
        if not self._batch:
            return
        loop = asyncio.get_running_loop()
        if self._timer_loop is not loop:
            self._arm(loop)
        waiter = loop.create_future()
        self._waiters.append(waiter)
        await waiter

    def _close_queue(self) -> None:
        """Flush, then refuse further writes (`close()`)."""
        self.flush()
        self._closed = True


def _verb(sql: str) -> str:
    """What a statement does, for a log line ("INSERT INTO cdr"): never its parameters."""
    return " ".join(sql.split()[:3])
