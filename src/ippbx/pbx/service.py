"""The PBX as one startable component: SIP transport, UA core, registrar, trunks, B2BUA.

`App` adds it to its components; tests start it on free loopback ports. Stopping closes
the sockets, cancels call tasks and expires nothing: registrations stay in SQLite so a
restarted PBX still reaches its phones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from ippbx.config import Config
from ippbx.pbx.auth import ExtensionAuth
from ippbx.pbx.b2bua import B2BUA
from ippbx.pbx.calls import CallRegistry
from ippbx.pbx.control import CallControl
from ippbx.pbx.registrar import Registrar
from ippbx.pbx.trunk_registration import TrunkRegistration
from ippbx.pbx.trunks import Trunks
from ippbx.sip.transport import SipTransport
from ippbx.sip.ua import UserAgent
from ippbx.store.sqlite import Store

log = logging.getLogger(__name__)


class PbxService:
    """Everything SIP: start() binds the listen address and begins taking calls."""

    def __init__(
        self,
        config: Config,
        registry: CallRegistry,
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
        self.transport = SipTransport(host, port, self._on_message)
        self.ua = UserAgent(self.transport, user_agent=config.sip.user_agent)
        self.b2bua = B2BUA(config, self.ua, registry, self.registrar, self.trunks, self.auth)
        self.b2bua.attach()
        self.control = CallControl(self.b2bua)
        self.registrations = [
            TrunkRegistration(trunk, self.trunks, self.ua)
            for trunk in config.trunks if trunk.type == "register"
        ]
        self._sweeper: asyncio.Task[None] | None = None

    def _on_message(self, message: object, source: object) -> None:
        self.ua.receive(message, source)  # type: ignore[arg-type]

    async def start(self) -> None:
        await self.trunks.resolve()
        await self.transport.start()
        await self.ua.start()
        self._sweeper = asyncio.ensure_future(self._sweep())
        for registration in self.registrations:
            registration.start()
        log.info("SIP listening on %s:%d (udp, tcp)", self.transport.local_host,
                 self.transport.local_port)

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.b2bua.stop()
        for registration in self.registrations:
            await registration.stop()
        await self.ua.stop()
        await self.transport.stop()

    async def _sweep(self) -> None:
        """Expire registrations once a few seconds, so status changes are seen in time."""
        while True:
            await asyncio.sleep(5)
            self.registrar.expire()
