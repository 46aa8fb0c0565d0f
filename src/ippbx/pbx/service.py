"""The PBX as one startable component: SIP transport, UA core, registrar, trunks, B2BUA,
the voicemail mailboxes (`mailboxes`, which the API reads too) and the message-waiting
notifier (`mwi`: SUBSCRIBE, and a NOTIFY to the phones whenever a mailbox changes).

`App` adds it to its components; tests start it on free loopback ports. Stopping hangs
up every call (`B2BUA.stop`: BYE, CANCEL, 503, paced; the BYEs' answers awaited while
they come), then closes the sockets and expires nothing: registrations stay in SQLite
so a restarted PBX still reaches its phones. The dialogs of answered calls are
journalled in SQLite too, and a start first sends BYE on those a previous run left up (a
crash, or a BYE a stop could not see answered, leaves no call up at the carrier;
`ippbx.pbx.leftover_dialogs`).

SIP over TLS (`[sip] tls_listen`) uses `[sip] tls_cert`/`tls_key`, else a self-signed
`ippbx-sip.crt`/`.key` made beside the store at the first start; connections to TLS
trunks check the carrier's certificate (`tls_verify`, `tls_ca`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from functools import partial

from ippbx.certs import client_context, listener_context
from ippbx.config import Config, SipSection
from ippbx.pbx.auth import ExtensionAuth
from ippbx.pbx.b2bua import B2BUA
from ippbx.pbx.calls import CallStore
from ippbx.pbx.capabilities import option_tags
from ippbx.pbx.control import CallControl
from ippbx.pbx.extension_features import ExtensionFeatures
from ippbx.pbx.leftover_dialogs import DialogJournal, end_leftovers
from ippbx.pbx.mailboxes import Mailboxes
from ippbx.pbx.mwi import MessageWaiting
from ippbx.pbx.registrar import Registrar
from ippbx.pbx.trunk_registration import TrunkRegistration
from ippbx.pbx.trunks import Trunks
from ippbx.sip.message import Sent
from ippbx.sip.overload import LoadShedder
from ippbx.sip.transport import SipTransport
from ippbx.sip.ua import UserAgent
from ippbx.store.sqlite import Store

log = logging.getLogger(__name__)
KEEPALIVE = Sent(b"\r\n\r\n", 0)  # a NAT keep-alive: a double CRLF (RFC 5626 §4.4.1)

SIP_CERT_STEM = "ippbx-sip"


def sip_tls_server_context(config: Config) -> ssl.SSLContext:
    """The TLS listener's context: `[sip] tls_cert`/`tls_key`, else self-signed."""
    sip = config.sip
    return listener_context(
        sip.tls_cert, sip.tls_key, store_path=config.store.path, stem=SIP_CERT_STEM,
        common_name=config.pbx.name, address=sip.tls_address, label="SIP",
    )


def _needs_tls_client(config: Config) -> bool:
    return config.sip.tls_address is not None or any(
        trunk.transport == "tls" for trunk in config.trunks)


def _tls_client(sip: SipSection) -> ssl.SSLContext:
    return client_context(sip.tls_verify, sip.tls_ca)


class PbxService:
    """Everything SIP: start() binds the listen address and begins taking calls."""

    def __init__(
        self,
        config: Config,
        registry: CallStore,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.registry = registry
        self.store = store
        self.registrar = Registrar(
            config, store, clock=clock, on_change=registry.registration_changed
        )
        self.trunks = Trunks(config)
        self.trunks.track(registry)
        self.auth = ExtensionAuth(config, clock=clock)
        host, port = config.sip.listen_address
        sip = config.sip
        self.transport = SipTransport(
            host, port, self._on_message, idle_timeout=sip.tcp_idle_seconds,
            max_keepalives=sip.tcp_max_keepalives, max_connections=sip.tcp_max_connections,
            max_connections_per_ip=sip.tcp_max_per_ip,
            tls_listen=sip.tls_address,
            tls_server=partial(sip_tls_server_context, config),
            tls_client=_tls_client(sip) if _needs_tls_client(config) else None)
        shedder = (LoadShedder(lag_max=sip.overload_lag_ms / 1000,
                               backlog_max=sip.overload_backlog_kib * 1024)
                   if sip.overload_control else None)
        self.ua = UserAgent(self.transport, user_agent=config.sip.user_agent, shedder=shedder,
                            supported=option_tags(bool(config.calls.session_expires)),
                            udp_max_request=sip.udp_max_request)
        self.transport.on_unreachable = self.ua.unreachable
        self.b2bua = B2BUA(config, self.ua, registry, self.registrar, self.trunks, self.auth)
        self.journal = DialogJournal(store)
        self.b2bua.journal = self.journal
        self.b2bua.attach()
        self.control = CallControl(self.b2bua)
        # do-not-disturb and forwarding as phones set them (feature codes)
        self.features = ExtensionFeatures(config, store)
        self.b2bua.settings = self.features
        self.mailboxes = Mailboxes(config.voicemail.directory, store, clock=clock,
                                   max_messages=config.voicemail.max_messages)
        # message waiting: each mailbox's counts, NOTIFYs when they change
        self.mwi = MessageWaiting(
            self.ua, self.auth, self.registrar, self.mailboxes.counts, config.sip.domain,
            unsolicited=config.voicemail.unsolicited_mwi, clock=clock,
            mailboxes=frozenset(e.number for e in config.extensions))
        self.mailboxes.on_change = self.mwi.changed
        self.registrar.on_change = self._registration_changed
        self.b2bua.on_subscribe = self.mwi.on_subscribe
        self.registrations = [
            TrunkRegistration(trunk, self.trunks, self.ua)
            for trunk in config.trunks if trunk.type == "register"
        ]
        self._sweeper: asyncio.Task[None] | None = None
        self._reconfiguring: set[asyncio.Task[None]] = set()
        self._leftovers: asyncio.Task[int] | None = None

    def reconfigure(self, config: Config) -> None:
        """Apply a new configuration to the running PBX: the next call, REGISTER or
        SUBSCRIBE sees it, calls in progress go on. An extension that is gone or whose
        password changed loses its registrations; a register trunk that is new or changed
        registers (after the old one unregistered), one that is gone unregisters."""
        self.config = config
        moved = self.trunks.reconfigure(config)
        self.auth.reconfigure(config)
        self.registrar.reconfigure(config)
        self.b2bua.reconfigure(config)
        self.features.reconfigure(config)
        self.mwi.mailboxes = frozenset(e.number for e in config.extensions)
        wanted = {t.name: t for t in config.trunks if t.type == "register"}
        keep = [r for r in self.registrations if wanted.get(r.trunk.name) == r.trunk]
        ended = [r for r in self.registrations if r not in keep]
        running = {r.trunk.name for r in keep}
        started = [TrunkRegistration(trunk, self.trunks, self.ua)
                   for name, trunk in wanted.items() if name not in running]
        self.registrations = keep + started
        if self._sweeper is None:  # (not started: start() starts them all)
            return
        task = asyncio.ensure_future(self._retrunk(ended, moved, started))
        self._reconfiguring.add(task)
        task.add_done_callback(self._reconfiguring.discard)

    async def _retrunk(self, ended: list[TrunkRegistration], moved: list[str],
                       started: list[TrunkRegistration]) -> None:
        for registration in ended:
            await registration.stop()
        if moved:
            await self.trunks.resolve(moved)
        for registration in started:
            if registration in self.registrations:  # (not replaced meanwhile)
                registration.start()

    def _registration_changed(self, extension: str, registered: bool) -> None:
        self.registry.registration_changed(extension, registered)
        if registered:  # (its message-waiting light, if the mailbox holds messages)
            self.mwi.registered(extension)

    def _on_message(self, message: object, source: object) -> None:
        self.ua.receive(message, source)  # type: ignore[arg-type]

    async def start(self) -> None:
        await self.trunks.resolve()
        await self.transport.start()
        await self.ua.start()
        # (in the background: a peer that is gone takes a BYE transaction's 32 s)
        self._leftovers = asyncio.ensure_future(end_leftovers(self.store, self.ua))
        await self.journal.start()
        self._sweeper = asyncio.ensure_future(self._sweep())
        for registration in self.registrations:
            registration.start()
        log.info("SIP listening on %s:%d (udp, tcp)", self.transport.local_host,
                 self.transport.local_port)
        if self.transport.tls_port is not None and self.transport.tls_listen is not None:
            log.info("SIP listening on %s:%d (tls)", self.transport.tls_listen[0],
                     self.transport.tls_port)

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._leftovers is not None and not self._leftovers.done():
            self._leftovers.cancel()  # (its rows stay for the next start)
            with contextlib.suppress(asyncio.CancelledError):
                await self._leftovers
        for task in list(self._reconfiguring):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.b2bua.stop()
        await self.mwi.stop()
        await self.journal.stop()
        for registration in self.registrations:
            await registration.stop()
        await self.ua.stop()
        await self.transport.stop()

    async def _sweep(self) -> None:
        """Expire registrations once a few seconds, so status changes are seen in time,
        and keep the NAT mappings of phones registered over UDP open (`[sip]
        nat_keepalive`: a CRLF to each at the address its REGISTER came from)."""
        interval = self.config.sip.nat_keepalive
        step = min(5.0, interval) if interval else 5.0
        loop = asyncio.get_running_loop()
        next_keepalive = loop.time() + interval
        while True:
            await asyncio.sleep(step)
            self.registrar.expire()
            if interval and loop.time() >= next_keepalive:
                next_keepalive = loop.time() + interval
                for binding in self.registrar.bindings():
                    if binding.source.transport == "udp":
                        self.transport.send(KEEPALIVE, binding.source)
