"""The composition root: build every part of ippbx from a Config and run them in one loop.

`App.components` is the start order (each has `async start()` / `async stop()`): the
call reports (outbox delivery, BootUp to the sessions kept from the last run), the media
engine (`[media]`: ippbx's own rtpengine, which the B2BUA then anchors every call's
audio on), the PBX (SIP transport, UA, registrar, B2BUA), then the API: plain HTTP (`api`) and, when
`[api] https_listen` is set, HTTPS (`api_tls`) with the same API handler, so one session
manager serves both and a token from either works on the other (the certificate is made
or loaded when `api_tls` starts, see `ippbx.api.tls`). They are stopped in reverse order,
and only those that started; the SQLite store is closed last (which commits its queued
writes: a graceful stop loses none). The CDR recorder is the registry's first
subscriber, so a call's CDR is stored before its reports are built.
`run()` owns the event loop (uvloop) and the SIGINT/SIGTERM handling: the first signal
stops the app cleanly, a second one gets the default behaviour.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import time
from collections.abc import Callable
from functools import partial
from typing import Protocol

import uvloop
from pydantic import ValidationError

from ippbx.api import openapi
from ippbx.api.console.server import Console
from ippbx.api.guard import HttpGuard
from ippbx.api.http_app import Page
from ippbx.api.reports import ReportService
from ippbx.api.request import ApiContext
from ippbx.api.server import ApiServer, build_app
from ippbx.api.sessions import SessionManager
from ippbx.api.tls import api_ssl_context
from ippbx.config import Config, ConfigError, load_config
from ippbx.gc_policy import FullCollector
from ippbx.ids import set_node
from ippbx.metrics import Metrics
from ippbx.native import compiled_modules
from ippbx.pbx import events
from ippbx.pbx.applications import Applications
from ippbx.pbx.calls import CallRegistry
from ippbx.pbx.cdr import CdrRecorder
from ippbx.pbx.conferences import Conferences
from ippbx.pbx.listen import Listening
from ippbx.pbx.media_service import MediaService
from ippbx.pbx.paging import Paging
from ippbx.pbx.prompt_calls import PromptCalls
from ippbx.pbx.queues import Queues
from ippbx.pbx.service import PbxService
from ippbx.pbx.status import PbxStatus
from ippbx.pbx.supervision import Supervision
from ippbx.running_config import Change, RunningConfig
from ippbx.store.sqlite import Store

log = logging.getLogger(__name__)


def raise_nofile_limit() -> int:
    """Lift the soft limit on open descriptors to the hard one; the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


class Component(Protocol):
    """Something the app starts and stops."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class App:
    """One ippbx process: the call registry, API sessions and the API server."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        config_path: str | None = None,
    ) -> None:
        self.config_path = config_path  # (SIGHUP re-reads it in TOML mode)
        self.boot_time = wall_clock()
        set_node(config.calls.node)  # (call and leg ids: "node-<unix>.<seq>")
        self.registry = CallRegistry()
        self.store = Store(config.store.path)
        # the objects (extensions, trunks, routes, …) as the store or the file has them
        self.running = RunningConfig.open(config, self.store)
        config = self.config = self.running.config
        self.registry.subscribe(CdrRecorder(self.store), events.CallEnded)
        self.pbx = PbxService(config, self.registry, self.store, clock=wall_clock)
        self.media = MediaService(config, self.pbx.b2bua)
        self.prompts = PromptCalls(self.pbx.b2bua, config.media.prompts)
        # IVRs, voicemail, the mailbox menu and feature codes answer calls themselves
        self.applications = Applications(self.pbx.b2bua, config, self.pbx.mailboxes,
                                         self.pbx.features, self.media.claim_recording)
        self.pbx.b2bua.apps = self.applications
        # call queues: callers wait for agents (their sign-ins and pauses are stored)
        self.queues = Queues(self.pbx.b2bua, config, self.store)
        self.applications.queues = self.queues
        self.applications.agent_code = self.queues.feature_code
        self.paging = Paging(self.pbx.b2bua, config.paging_groups, config.media.prompts)
        self.applications.paging = self.paging
        # conference rooms, mixed by the media service's janus
        self.conferences = Conferences(self.pbx.b2bua, config.conferences,
                                       config.media.prompts, self.media.mixer,
                                       config.media.recordings)
        self.applications.conferences = self.conferences
        self.conferences.control = self.pbx.control
        # listen / whisper / barge on an agent's call, on the same mixer
        self.supervision = Supervision(self.pbx.b2bua, self.conferences, self.pbx.control)
        self.media.on_mixer_restart = self.conferences.mixer_restarted
        self.listening = Listening(self.pbx.b2bua)
        self.sessions = SessionManager(
            config.api, clock=clock, store=self.store, wall_clock=wall_clock
        )
        self.status = PbxStatus(self.registry, self.pbx.registrar, self.pbx.trunks)
        self.reports = ReportService(
            config, self.registry, self.sessions, self.store, states=self.status.states,
            clock=wall_clock,
        )
        self.api_context = ApiContext(
            config=config,
            registry=self.registry,
            sessions=self.sessions,
            wall_clock=wall_clock,
            boot_time=self.boot_time,
            pbx=self.status,
            store=self.store,
            control=self.pbx.control,
            recordings=self.media.recordings,
            prompts=self.prompts,
            listening=self.listening,
            mailboxes=self.pbx.mailboxes,
            queues=self.queues,
            conferences=self.conferences,
            supervision=self.supervision,
            inbound=self.pbx.b2bua.inbound,
            running=self.running,
        )
        self.running.listeners.append(self._reconfigure)
        # beside the API: Prometheus metrics, the OpenAPI description, the web console
        self.metrics = Metrics.for_app(self)
        self.console = Console(self.api_context, self.pbx.registrar, self.pbx.trunks)
        web = build_app(self.api_context, self._pages(config))
        self.metrics.api_requests = web.requests
        host, port = config.api.listen_address
        raise_nofile_limit()  # (TCP connections are descriptors: SIP, API, reports)
        self.api = ApiServer(web, host, port, guard=self._guard())
        self.api_tls: ApiServer | None = None
        https = config.api.https_address
        if https is not None:
            self.api_tls = ApiServer(web, *https, ssl_context=partial(api_ssl_context, config),
                                     guard=self._guard())
        apis: list[Component] = [self.api] if self.api_tls is None else [self.api, self.api_tls]
        # last to start: everything built so far is frozen out of garbage collection
        self.gc = FullCollector(lambda: len(self.registry) > 0)
        self.components: list[Component] = [self.reports, self.media, self.pbx,
                                            self.metrics, *apis, self.gc]
        self._started: list[Component] = []

    def _pages(self, config: Config) -> list[Page]:
        """What the API port serves beside the API (more specific prefixes first)."""
        pages: list[Page] = [(openapi.PATH, openapi.page)]
        if config.metrics.enabled:
            pages.append(("/metrics", self.metrics.page))
        if config.console.enabled:
            pages += [("/console", self.console.page), ("/", self.console.root)]
        return pages

    def _reconfigure(self, old: Config, new: Config, change: Change) -> None:
        """Apply a configuration change to every running part, then report it."""
        self.config = new
        self.pbx.reconfigure(new)
        self.applications.reconfigure(new)
        self.queues.reconfigure(new)
        self.paging.reconfigure(new.paging_groups)
        self.conferences.reconfigure(new.conferences)
        self.media.reconfigure(new)
        self.reports.reconfigure(new)
        self.api_context.config = new
        self.reports.config_changed(change.kind, change.operation, change.keys)

    def reload(self) -> None:
        """SIGHUP: in TOML mode, read the file again and apply its objects; in store mode,
        take what another process wrote to the store (`ippbx config import`). A bad file
        or store is logged and changes nothing."""
        try:
            if self.running.mode == "toml":
                self.running.reload(load_config(self.config_path))
            elif self.running.refresh() is None:
                log.info("SIGHUP: the stored configuration is unchanged")
        except (ConfigError, ValidationError) as exc:
            log.error("SIGHUP: configuration not reloaded: %s", exc)

    def _guard(self) -> HttpGuard:
        api = self.config.api
        return HttpGuard(api.request_timeout, api.max_connections_per_ip, api.max_connections)

    async def start(self) -> None:
        """Start the components in order; if one fails, stop those already started."""
        for component in self.components:
            try:
                await component.start()
            except BaseException:
                await self.stop()
                raise
            self._started.append(component)
        log.info("ippbx %r (sn %s) started; compiled to C: %s", self.config.pbx.name,
                 self.config.pbx.sn, ", ".join(sorted(compiled_modules())) or "none")

    async def stop(self) -> None:
        """Stop the started components in reverse order (errors are logged, not raised)."""
        self.queues.stop()
        self.console.close()
        while self._started:
            component = self._started.pop()
            try:
                await component.stop()
            except Exception:
                log.exception("stopping %s failed", type(component).__name__)

    def close(self) -> None:
        """Commit the store's queued writes and release it (after stop)."""
        self.store.close()

    async def serve(self) -> None:
        """Start, wait for SIGINT or SIGTERM, stop."""
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        signals = (signal.SIGINT, signal.SIGTERM)

        def on_signal(signum: int) -> None:
            log.info("%s received, stopping", signal.Signals(signum).name)
            for sig in signals:
                loop.remove_signal_handler(sig)
            stopping.set()

        for sig in signals:
            loop.add_signal_handler(sig, on_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        try:
            await self.start()
            await stopping.wait()
        finally:
            try:
                await self.stop()
            finally:
                self.close()  # (commits the store's queued writes, even if stop was cut)
            for sig in (*signals, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        log.info("ippbx stopped")

    def run(self) -> int:
        """Run until a signal, in a fresh uvloop event loop; returns the exit code."""
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(self.serve())
        return 0
