"""Report delivery: the outbox's rows POSTed to each session's destination, in order.

Theory of operation. Every report is a row in the SQLite outbox before `add()` hands it
here. Each session (token) has its own FIFO queue and, while the queue is not empty, one
task draining it: POST the head (HTTP/1.1, `Content-Type: application/json`,
`User-Agent`, `Connection: close`, one new connection per report, as the vendors do); on
a 2xx delete the row, renew the session's token and go on; on anything else (refused,
timeout, non-2xx) wait 1, 2, 4 … `backoff_max` seconds and retry the same head, so one
session's reports keep their order. A head older than `retry_minutes` is dropped (with a
warning) so a dead receiver cannot hold a queue forever. A queue whose session has ended
(logout, expiry) is dropped. Queues never wait on each other, and call handling only
ever appends (a SQLite insert and a deque append), so a slow or dead receiver blocks
nothing but its own queue.

After a restart `load()` puts the stored rows back in their queues (rows of sessions that
did not survive are deleted) before `start()` begins sending. A report whose 2xx was
received but whose row was not yet deleted when the process died is sent again: delivery
is at least once, exactly once when the process is not killed mid-POST.

Destinations (spec §5.2): no `url` → `http://<login source IP or heartbeat ipaddr>:<port>/`;
`urltag` 0 → the relative `url` joined to that with one `/`; `urltag` 1 → `http://` +
`url` (`host:port/path`). A `url` that already starts with `http://` or `https://` is used
as is whatever `urltag` says. No `port` → 8260 (Yeastar's default).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from ippbx.api.sessions import Session, SessionManager
from ippbx.config import ReportsSection
from ippbx.store.outbox import OutboxRow

log = logging.getLogger(__name__)

DEFAULT_PORT = "8260"
STOP_GRACE = 1.0
"""Seconds `stop()` lets a POST in flight finish before cancelling it."""


class OutboxStore(Protocol):
    """The outbox table (`ippbx.store.sqlite.Store`)."""

    def outbox_delete(self, row_id: int) -> None: ...

    def outbox_delete_token(self, token: str) -> int: ...

    def outbox_load(self) -> list[OutboxRow]: ...


def destination(session: Session) -> str:
    """The URL a session's reports are POSTed to."""
    url = session.url.strip()
    if url.lower().startswith(("http://", "https://")):
        return url
    if url and session.urltag.strip() == "1":
        return "http://" + url
    host = session.report_ip
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    base = f"http://{host}:{session.port or DEFAULT_PORT}/"
    return base + url.strip("/") if url else base


@dataclass(eq=False)
class _Queue:
    token: str
    items: deque[OutboxRow] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    attempts: int = 0


class Delivery:
    """Per-session report queues and their sending tasks."""

    def __init__(
        self,
        store: OutboxStore,
        sessions: SessionManager,
        config: ReportsSection,
        *,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.config = config
        self.clock = clock
        self.delivered = 0
        self.dropped = 0
        self._queues: dict[str, _Queue] = {}
        self._client: httpx.AsyncClient | None = None
        self._stopping = False
        self._transport = transport  # tests inject an httpx.MockTransport

    # -- lifecycle --------------------------------------------------------------------------
    def load(self) -> None:
        """Queue the reports left in the outbox by a previous run."""
        rows = self.store.outbox_load()
        gone: set[str] = set()
        keep: list[OutboxRow] = []
        for row in rows:
            if row.token in gone:
                continue
            if self.sessions.session(row.token) is None:
                gone.add(row.token)
                self.dropped += self.store.outbox_delete_token(row.token)
                continue
            keep.append(row)
        self.add(keep)
        if keep:
            log.info("%d stored reports to deliver", len(keep))

    async def start(self) -> None:
        self._stopping = False
        self._client = httpx.AsyncClient(
            timeout=self.config.timeout,
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": self.config.user_agent,
                "Connection": "close",
            },
            follow_redirects=False,
            trust_env=False,
            transport=self._transport,
        )
        for queue in self._queues.values():
            self._kick(queue)

    async def stop(self) -> None:
        """Stop sending; what is not delivered stays in the outbox for the next run."""
        self._stopping = True
        tasks = [q.task for q in self._queues.values() if q.task is not None]
        for queue in self._queues.values():
            queue.wake.set()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- queueing ---------------------------------------------------------------------------
    def add(self, rows: Iterable[OutboxRow]) -> None:
        """Queue stored rows (in id order) and make sure their queues are being drained."""
        touched: dict[str, _Queue] = {}
        for row in rows:
            queue = self._queues.get(row.token)
            if queue is None:
                queue = self._queues[row.token] = _Queue(row.token)
            queue.items.append(row)
            touched[row.token] = queue
        if self._client is not None and not self._stopping:
            for queue in touched.values():
                self._kick(queue)

    def pending(self) -> int:
        """Reports queued and not yet delivered or dropped."""
        return sum(len(q.items) for q in self._queues.values())

    def _kick(self, queue: _Queue) -> None:
        if queue.task is None and queue.items:
            queue.task = asyncio.create_task(self._drain(queue), name="ippbx-report-queue")

    # -- sending ----------------------------------------------------------------------------
    async def _drain(self, queue: _Queue) -> None:
        try:
            while not self._stopping and queue.items:
                session = self.sessions.session(queue.token)
                if session is None:  # logged out or expired: its reports stop
                    self.dropped += len(queue.items)
                    queue.items.clear()
                    self.store.outbox_delete_token(queue.token)
                    break
                row = queue.items[0]
                if await self._post(destination(session), row.body):
                    self._done(queue, row)
                    self.delivered += 1
                    self.sessions.touch(queue.token)
                    continue
                if self.clock() - row.created >= self.config.retry_minutes * 60:
                    log.warning("report %d not delivered within %g minutes, dropped",
                                row.id, self.config.retry_minutes)
                    self._done(queue, row)
                    self.dropped += 1
                    continue
                delay = min(self.config.backoff_max, 2.0 ** queue.attempts)
                queue.attempts += 1
                queue.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(queue.wake.wait(), delay)
        finally:
            queue.task = None
            if not queue.items and not self._stopping:
                self._queues.pop(queue.token, None)

    def _done(self, queue: _Queue, row: OutboxRow) -> None:
        self.store.outbox_delete(row.id)
        if queue.items and queue.items[0] is row:
            queue.items.popleft()
        queue.attempts = 0

    async def _post(self, url: str, body: bytes) -> bool:
        client = self._client
        if client is None:
            return False
        try:
            response = await client.post(url, content=body)
        except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
            log.debug("report to %s failed: %s", url, type(exc).__name__)
            return False
        if 200 <= response.status_code < 300:
            return True
        log.debug("report to %s answered %d", url, response.status_code)
        return False
