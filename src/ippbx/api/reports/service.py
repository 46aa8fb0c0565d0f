"""The report pipeline as one component: domain events in, stored and delivered reports out.

`ReportService` subscribes to the call registry. For each event it asks the builder for
reports; if any session is live it renders each report once per form in use (orjson: a
tenth of the json module's time for these small objects), adds one outbox row per
(destination, report) (sessions with the same form and URL share a destination, so a
receiver gets each report once; every report but a NewCdr is held in memory first and
written only if it is not delivered within `outbox.HOLD`, see `ippbx.store.outbox`),
and hands the rows to the delivery: `Delivery` in this process, or with `[reports]
own_process` (the default) `CourierLink`, which has a process of its own POST them.
Everything on this path is synchronous and short, so it runs inside the registry's
publish without holding up a call. `start()` queues the reports a previous run left and
sends `BootUp` to the sessions that survived the restart.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import orjson

from ippbx.api.reports.build import (
    Action,
    Form,
    Report,
    ReportBuilder,
    config_change,
    render,
)
from ippbx.api.reports.courier_link import CourierLink
from ippbx.api.reports.delivery import Delivery, OutboxStore
from ippbx.api.sessions import SessionManager
from ippbx.config import Config
from ippbx.pbx import cdr, events
from ippbx.pbx.calls import CallStore
from ippbx.pbx.extension_state import ExtensionStates
from ippbx.store.outbox import OutboxRow

log = logging.getLogger(__name__)

class ReportStore(OutboxStore, Protocol):
    """The outbox table, writable (`ippbx.store.sqlite.Store`)."""

    def outbox_add(
        self, rows: Sequence[tuple[str, str, bytes, float]], *, hold: Sequence[bool] = ()
    ) -> list[OutboxRow]: ...


class ReportService:
    """Builds, stores and delivers the reports of every live API session."""

    def __init__(
        self,
        config: Config,
        registry: CallStore,
        sessions: SessionManager,
        store: ReportStore,
        *,
        states: ExtensionStates | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.clock = clock
        self.sn = config.pbx.sn
        self.tz = cdr.zone(config.pbx.timezone)
        self.builder = ReportBuilder(config, states or ExtensionStates(registry))
        self.delivery: Delivery | CourierLink = (
            CourierLink if config.reports.own_process else Delivery
        )(store, sessions, config.reports, clock=clock)
        registry.subscribe(self.on_event)

    async def start(self) -> None:
        self.delivery.load()
        self.send([Report(Action.BOOTUP)])
        await self.delivery.start()

    async def stop(self) -> None:
        await self.delivery.stop()

    def on_event(self, event: events.DomainEvent) -> None:
        if not self.delivery.routes():
            self.builder.seen(event)  # (nobody to tell: no report is built)
            return
        reports = self.builder.on_event(event)
        if reports:
            self.send(reports)

    def reconfigure(self, config: Config) -> None:
        """A new configuration: which extensions' status is reported."""
        self.builder.reconfigure(config)

    def config_changed(self, kind: str, operation: str, keys: tuple[str, ...]) -> None:
        """ConfigChange reports of one change, to the Yeastar API's sessions (the action
        is Yeastar's; OpenVox clients have never seen it)."""
        reports = config_change(kind, operation, keys)
        if reports:
            self.send(reports, dialect="yeastar")

    def send(self, reports: list[Report], *, dialect: str | None = None) -> None:
        """Store `reports` once for every destination in use (with `dialect`: those with
        a session of that API dialect) and queue them for delivery."""
        routes = self.delivery.routes()
        if dialect is not None:
            routes = {key: live for key, live in routes.items()
                      if any((s := self.sessions.session(token)) is not None
                             and s.dialect == dialect for token in live.tokens)}
        if not routes:
            return
        now = self.clock()
        bodies: dict[Form, list[bytes]] = {}
        rows: list[tuple[str, str, bytes, float]] = []
        # a NewCdr is committed with its CDR (the delivery waits for it); the rest is held
        hold = [r.action is not Action.NEW_CDR for r in reports] * len(routes)
        for route, live in routes.items():
            form = live.form
            encoded = bodies.get(form)
            if encoded is None:
                encoded = bodies[form] = [self.encode(r, form) for r in reports]
            rows += [(route, r.lane, body, now) for r, body in zip(reports, encoded, strict=True)]
        self.delivery.add(self.store.outbox_add(rows, hold=hold))

    def encode(self, report: Report, form: Form) -> bytes:
        """The body of `report` in `form`: compact JSON, UTF-8, non-ASCII as is."""
        obj = render(report, form, self.sn, self.tz)
        try:
            # (copied: orjson's bytes keep a 4 KiB buffer whatever their length, and a
            # report may wait in memory for a receiver that is down)
            return bytes(memoryview(orjson.dumps(obj)))
        except orjson.JSONEncodeError:  # a lone surrogate: a SIP header's non-UTF-8 byte
            return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode(
                "utf-8", "replace")
