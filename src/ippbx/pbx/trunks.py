"""SIP trunks: where outbound calls go, how inbound calls are recognised, trunk status.

A `peer` trunk sends calls to host:port and accepts calls from that address. A `register`
trunk also keeps a registration with the provider alive (see `TrunkRegistration` in
`trunk_registration.py`) and answers the provider's digest challenges on INVITE. Host
names are resolved once at start (`resolve`), so matching an inbound source is a dict
lookup on the hot path.
"""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum

from ippbx.config import Config, Trunk
from ippbx.pbx import events
from ippbx.pbx.calls import CallStore
from ippbx.sip.transport import resolve_host
from ippbx.sip.wire import Peer


class TrunkStatus(StrEnum):
    """Trunk state as `trunklist/query` shows it."""

    REGISTERED = "Registered"
    REGISTERING = "Registering"
    FAILURE = "Failure"
    UNKNOWN = "Unknown"


class Trunks:
    """The configured trunks, their resolved addresses and their status."""

    def __init__(self, config: Config) -> None:
        self._trunks: dict[str, Trunk] = {t.name: t for t in config.trunks}
        self._ips: dict[str, str] = {t.name: t.host for t in config.trunks}
        self._by_addr: dict[tuple[str, int], Trunk] = {}
        self._by_ip: dict[str, Trunk] = {}
        self.status: dict[str, TrunkStatus] = {
            t.name: TrunkStatus.UNKNOWN if t.type == "peer" else TrunkStatus.REGISTERING
            for t in config.trunks
        }
        self.in_use: dict[str, int] = dict.fromkeys(self._trunks, 0)
        self._index()

    async def resolve(self, names: Collection[str] | None = None) -> None:
        """Resolve trunk host names to IP addresses (all at start; after a
        configuration change, the trunks named)."""
        for trunk in list(self._trunks.values()):
            if names is not None and trunk.name not in names:
                continue
            address = await resolve_host(trunk.host, trunk.port)
            if address is not None and self._trunks.get(trunk.name) is trunk:
                self._ips[trunk.name] = address  # (else keep the name; calls fail over)
        self._index()

    def reconfigure(self, config: Config) -> list[str]:
        """The trunks of a new configuration; returns the names whose address is new
        (to `resolve`). Calls in progress keep their trunk's channel count, even when the
        trunk is gone; a new or changed trunk starts with its status unknown."""
        old = self._trunks
        self._trunks = {t.name: t for t in config.trunks}
        changed = []
        for trunk in config.trunks:
            before = old.get(trunk.name)
            if before is None or (before.host, before.port) != (trunk.host, trunk.port):
                self._ips[trunk.name] = trunk.host
                changed.append(trunk.name)
            if before != trunk:
                self.status[trunk.name] = (TrunkStatus.UNKNOWN if trunk.type == "peer"
                                           else TrunkStatus.REGISTERING)
            self.in_use.setdefault(trunk.name, 0)
        self._index()
        return changed

    def _index(self) -> None:
        self._by_addr = {(self._ips[t.name], t.port): t for t in self._trunks.values()}
        self._by_ip = {}
        for trunk in self._trunks.values():
            self._by_ip.setdefault(self._ips[trunk.name], trunk)

    def get(self, name: str) -> Trunk | None:
        return self._trunks.get(name)

    def all(self) -> list[Trunk]:
        return list(self._trunks.values())

    def destination(self, trunk: Trunk) -> Peer:
        """Where calls to `trunk` go. Over TLS by its configured host name, so the
        carrier's certificate is checked against that name (its address once resolved
        otherwise, saving a lookup per call)."""
        host = trunk.host if trunk.transport == "tls" else self._ips[trunk.name]
        return Peer(host, trunk.port, trunk.transport)

    def match_source(self, source: Peer, from_user: str, is_extension: bool) -> Trunk | None:
        """The trunk a request came from: exact ip:port, else the ip unless the sender
        claims to be one of our extensions (phones and a carrier may share an address)."""
        trunk = self._by_addr.get((source.host, source.port))
        if trunk is not None:
            return trunk
        if is_extension:
            return None
        return self._by_ip.get(source.host)

    def track(self, registry: CallStore) -> None:
        """Count live legs per trunk from the registry's events (for max_channels)."""

        def on_event(event: events.DomainEvent) -> None:
            in_use = self.in_use
            if isinstance(event, events.CallCreated) and event.call.caller.trunk is not None:
                in_use[event.call.caller.trunk] = in_use.get(event.call.caller.trunk, 0) + 1
            elif isinstance(event, events.LegAdded) and event.leg.trunk is not None:
                in_use[event.leg.trunk] = in_use.get(event.leg.trunk, 0) + 1
            elif isinstance(event, events.LegEnded) and event.leg.trunk is not None:
                in_use[event.leg.trunk] = in_use.get(event.leg.trunk, 0) - 1

        registry.subscribe(on_event, events.CallCreated, events.LegAdded, events.LegEnded)

    def has_capacity(self, trunk: Trunk) -> bool:
        return trunk.max_channels == 0 or self.in_use.get(trunk.name, 0) < trunk.max_channels
