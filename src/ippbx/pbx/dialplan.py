"""The dial plan: where a dialled number goes. Pure functions over the configuration.

Outbound routes follow the FreePBX model the OpenVox API exposes: the dialled string must
be `prefix` followed by something matching the Asterisk pattern `match`; the prefix is
stripped, `prepend` is added, and the result goes out through the route's trunks in
order. A route may be limited to some extensions. Numbers equal to an extension ring that
extension. Inbound routes map (trunk, DID, caller id) to an extension or a hang-up.

A transfer is routed as if the transferor dialled the target (`route_transfer`): an
extension with its own permissions; a party on a trunk (an inbound caller, or the far end
of an outbound call) may reach extensions, and trunks only when the inbound route that
admitted its call says `allow_transfer_out` (then through routes open to all extensions).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ippbx.config import Config, InboundRoute, OutboundRoute
from ippbx.pbx.patterns import compile_pattern


@dataclass(frozen=True, slots=True)
class ToExtension:
    """Ring extension `number` (`route`: the inbound route that chose it, if any)."""

    number: str
    route: str = ""


@dataclass(frozen=True, slots=True)
class ToTrunks:
    """Send `number` out through `trunks`, tried in order."""

    route: str
    number: str
    trunks: tuple[str, ...]


class Refusal(StrEnum):
    NO_ROUTE = "no route"  # SIP 404
    FORBIDDEN = "forbidden"  # a route matched but this extension may not use it: SIP 403
    HANGUP = "hangup"  # an inbound route says to hang up: SIP 603


@dataclass(frozen=True, slots=True)
class Refused:
    reason: Refusal

    @property
    def sip_status(self) -> int:
        return {Refusal.NO_ROUTE: 404, Refusal.FORBIDDEN: 403, Refusal.HANGUP: 603}[self.reason]


Destination = ToExtension | ToTrunks | Refused


def _field_matches(spec: str, value: str) -> bool:
    """An inbound route field: empty matches anything, `_PATTERN` an Asterisk pattern."""
    if not spec:
        return True
    if spec.startswith("_"):
        return compile_pattern(spec).fullmatch(value) is not None
    return spec == value


class Dialplan:
    """Routing decisions for one configuration."""

    def __init__(self, config: Config) -> None:
        self._extensions = frozenset(e.number for e in config.extensions)
        self._outbound: tuple[OutboundRoute, ...] = tuple(config.outbound_routes)
        # Routes naming a DID are more specific than catch-alls: try them first.
        inbound = list(config.inbound_routes)
        self._inbound: tuple[InboundRoute, ...] = tuple(
            [r for r in inbound if r.did] + [r for r in inbound if not r.did]
        )
        self._transfer_out = {r.name: r.allow_transfer_out for r in inbound}

    def is_extension(self, number: str) -> bool:
        return number in self._extensions

    def route_outbound(self, caller_ext: str, dialled: str) -> ToTrunks | Refused:
        """The first outbound route matching `dialled` that `caller_ext` may use."""
        matched_any = False
        for route in self._outbound:
            if not dialled.startswith(route.prefix):
                continue
            rest = dialled[len(route.prefix) :]
            if compile_pattern(route.match).fullmatch(rest) is None:
                continue
            matched_any = True
            if route.extensions and caller_ext not in route.extensions:
                continue
            return ToTrunks(route.name, route.prepend + rest, tuple(route.trunks))
        return Refused(Refusal.FORBIDDEN if matched_any else Refusal.NO_ROUTE)

    def route_from_extension(self, caller_ext: str, dialled: str) -> Destination:
        """Where a call from extension `caller_ext` to `dialled` goes."""
        if dialled in self._extensions:
            return ToExtension(dialled)
        return self.route_outbound(caller_ext, dialled)

    def route_inbound(self, trunk: str, did: str, caller: str) -> ToExtension | Refused:
        """Where a call arriving on `trunk` for `did` from `caller` goes."""
        for route in self._inbound:
            if route.trunk != trunk:
                continue
            if not _field_matches(route.did, did) or not _field_matches(route.callerid, caller):
                continue
            if route.destination == "hangup":
                return Refused(Refusal.HANGUP)
            return ToExtension(route.destination.partition(":")[2], route.name)
        return Refused(Refusal.NO_ROUTE)

    def route_transfer(self, transferor_ext: str, inbound_route: str,
                       target: str) -> Destination:
        """Where a transfer to `target` goes, with the transferor's permissions: those of
        extension `transferor_ext`, or ("" for a party on a trunk) those the inbound route
        `inbound_route` that admitted the call grants ("" for none)."""
        if transferor_ext:
            return self.route_from_extension(transferor_ext, target)
        if target in self._extensions:
            return ToExtension(target)
        if not self._transfer_out.get(inbound_route, False):
            return Refused(Refusal.FORBIDDEN)
        return self.route_outbound("", target)
