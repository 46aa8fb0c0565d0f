"""The dial plan: where a dialled number goes. Pure functions over the configuration.

Outbound routes follow the FreePBX model the OpenVox API exposes: the dialled string must
be `prefix` followed by something matching the Asterisk pattern `match`; the prefix is
stripped, `prepend` is added, and the result goes out through the route's trunks in
order. A route may be limited to some extensions. Numbers equal to an extension ring that
extension; numbers of IVRs and ring groups reach them (one number space), and feature
codes reach the mailbox menu (`*97` one's own, `*98` any), toggle do-not-disturb
(`*78` on, `*79` off) and forwarding (`*21NUMBER` always to NUMBER, `*22` off), and
sign a queue agent in and out (`*71`/`*72`, optionally followed by a queue's number) and
pause it (`*73`/`*74`). Numbers of queues, paging groups and conference rooms reach
them too. Inbound
routes map (trunk, DID, caller id) to a destination of the PBX or a hang-up.

A destination string of the configuration (`extension:N`, `ivr:N`, `ringgroup:N`,
`voicemail:N`, `queue:N`, `conference:N`, `number:N`, `hangup`) becomes a decision with `resolve`;
`number:N` is routed as a dial of N by the extension it acts for (its permissions).

A transfer is routed as if the transferor dialled the target (`route_transfer`): the
numbers of extensions, IVRs, ring groups, queues and paging groups are reached by anyone
(they cost nothing); other numbers go out with the transferor's permissions: an
extension's own, while a party on a trunk (an inbound caller, or the far end of an
outbound call) reaches trunks only when the inbound route that admitted its call says
`allow_transfer_out` (then through routes open to all extensions). Feature codes are no
transfer targets.
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


@dataclass(frozen=True, slots=True)
class ToIvr:
    """Answer with IVR `number`'s menu."""

    number: str
    route: str = ""


@dataclass(frozen=True, slots=True)
class ToRingGroup:
    """Ring group `number`'s members."""

    number: str
    route: str = ""


@dataclass(frozen=True, slots=True)
class ToQueue:
    """Wait in queue `number` for an agent."""

    number: str
    route: str = ""


@dataclass(frozen=True, slots=True)
class ToPaging:
    """Page group `number`'s members (auto-answered, they hear the caller)."""

    number: str
    route: str = ""


@dataclass(frozen=True, slots=True)
class ToConference:
    """Join conference room `number` (its PIN asked unless `invited`: called in by
    `conference/add_member` or a supervisor feature)."""

    number: str
    route: str = ""
    invited: bool = False


@dataclass(frozen=True, slots=True)
class ToVoicemail:
    """Take a message for `mailbox` (its greeting, a beep, the recording)."""

    mailbox: str
    route: str = ""


@dataclass(frozen=True, slots=True)
class ToMailbox:
    """The mailbox menu: `mailbox`'s after its PIN ("": ask which mailbox first)."""

    mailbox: str


class Feature(StrEnum):
    DND_ON = "dnd on"
    DND_OFF = "dnd off"
    FORWARD_ON = "forward on"
    FORWARD_OFF = "forward off"
    AGENT_LOGIN = "agent login"
    AGENT_LOGOUT = "agent logout"
    AGENT_PAUSE = "agent pause"
    AGENT_UNPAUSE = "agent unpause"


@dataclass(frozen=True, slots=True)
class ToFeature:
    """A feature code: set `feature` for `extension` (`target`: a forwarding's, or the
    queue an agent code names, "" for every queue it may serve)."""

    feature: Feature
    extension: str
    target: str = ""


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


# where a call goes to be answered by ippbx itself (pbx/applications.py)
ToApplication = (ToIvr | ToVoicemail | ToMailbox | ToFeature | ToQueue | ToPaging
                 | ToConference)
Destination = ToExtension | ToTrunks | ToRingGroup | ToApplication | Refused
Local = ToExtension | ToIvr | ToRingGroup | ToQueue | ToPaging | ToConference
FEATURE_CODES = {"*78": Feature.DND_ON, "*79": Feature.DND_OFF, "*22": Feature.FORWARD_OFF}
FORWARD_CODE = "*21"  # followed by the number to forward to
# queue agents: the code alone (every queue the extension may serve) or followed by a
# queue's number
AGENT_CODES = {"*71": Feature.AGENT_LOGIN, "*72": Feature.AGENT_LOGOUT,
               "*73": Feature.AGENT_PAUSE, "*74": Feature.AGENT_UNPAUSE}


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
        self._ivrs = frozenset(i.number for i in config.ivrs)
        self._groups = frozenset(g.number for g in config.ring_groups)
        self._queues = frozenset(q.number for q in config.queues)
        self._paging = frozenset(p.number for p in config.paging_groups)
        self._conferences = frozenset(c.number for c in config.conferences)
        self._outbound: tuple[OutboundRoute, ...] = tuple(config.outbound_routes)
        # Routes naming a DID are more specific than catch-alls, and a route naming its
        # trunk than one for any trunk: try them first (else in the order given).
        inbound = list(config.inbound_routes)
        self._inbound: tuple[InboundRoute, ...] = tuple(
            sorted(inbound, key=lambda r: (not r.did, not r.trunk)))
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

    def local(self, number: str, route: str = "") -> Local | None:
        """The extension, IVR, ring group, queue, paging group or conference room `number`
        names, if any."""
        if number in self._extensions:
            return ToExtension(number, route)
        if number in self._ivrs:
            return ToIvr(number, route)
        if number in self._groups:
            return ToRingGroup(number, route)
        if number in self._queues:
            return ToQueue(number, route)
        if number in self._paging:
            return ToPaging(number, route)
        if number in self._conferences:
            return ToConference(number, route)
        return None

    def route_from_extension(self, caller_ext: str, dialled: str) -> Destination:
        """Where a call from extension `caller_ext` to `dialled` goes."""
        local = self.local(dialled)
        if local is not None:
            return local
        if dialled.startswith("*") and caller_ext:
            feature = self._feature(caller_ext, dialled)
            if feature is not None:
                return feature
        return self.route_outbound(caller_ext, dialled)

    def _feature(self, ext: str, dialled: str) -> ToApplication | Refused | None:
        if dialled == "*97":
            return ToMailbox(ext)
        if dialled == "*98":
            return ToMailbox("")
        if dialled in FEATURE_CODES:
            return ToFeature(FEATURE_CODES[dialled], ext)
        code, queue = dialled[:3], dialled[3:]
        if code in AGENT_CODES and (not queue or queue in self._queues):
            return ToFeature(AGENT_CODES[code], ext, queue)
        if dialled.startswith(FORWARD_CODE) and len(dialled) > len(FORWARD_CODE):
            number = dialled[len(FORWARD_CODE):]
            if number in self._extensions:
                return ToFeature(Feature.FORWARD_ON, ext, f"extension:{number}")
            routed = self.route_outbound(ext, number)  # (what the phone could dial itself)
            if isinstance(routed, Refused):
                return routed
            return ToFeature(Feature.FORWARD_ON, ext, f"number:{number}")
        return None

    def resolve(self, spec: str, acting_ext: str = "", route: str = "") -> Destination:
        """The decision a configured destination string stands for; `number:N` is
        dialled as extension `acting_ext` would dial N (its permissions)."""
        kind, _, number = spec.partition(":")
        if kind == "hangup":
            return Refused(Refusal.HANGUP)
        if kind == "extension" and number in self._extensions:
            return ToExtension(number, route)
        if kind == "ivr" and number in self._ivrs:
            return ToIvr(number, route)
        if kind == "ringgroup" and number in self._groups:
            return ToRingGroup(number, route)
        if kind == "queue" and number in self._queues:
            return ToQueue(number, route)
        if kind == "conference" and number in self._conferences:
            return ToConference(number, route)
        if kind == "voicemail" and number in self._extensions:
            return ToVoicemail(number, route)
        if kind == "number" and number:
            return self.route_outbound(acting_ext, number)
        return Refused(Refusal.NO_ROUTE)

    def route_inbound(self, trunk: str, did: str, caller: str) -> Destination:
        """Where a call arriving on `trunk` for `did` from `caller` goes."""
        for route in self._inbound:
            if route.trunk and route.trunk != trunk:
                continue
            if not _field_matches(route.did, did) or not _field_matches(route.callerid, caller):
                continue
            return self.resolve(route.destination, route=route.name)
        return Refused(Refusal.NO_ROUTE)

    def route_transfer(self, transferor_ext: str, inbound_route: str,
                       target: str) -> Local | ToTrunks | Refused:
        """Where a transfer to `target` goes: a local number (extension, IVR, ring group,
        queue, paging group) for anyone; else out with the transferor's permissions:
        those of extension `transferor_ext`, or ("" for a party on a trunk) those the
        inbound route `inbound_route` that admitted the call grants ("" for none)."""
        local = self.local(target)
        if local is not None:
            return local
        if transferor_ext:
            decided = self.route_from_extension(transferor_ext, target)
            if isinstance(decided, ToTrunks | Refused):
                return decided
            return Refused(Refusal.NO_ROUTE)  # (a feature code is no transfer target)
        if not self._transfer_out.get(inbound_route, False):
            return Refused(Refusal.FORBIDDEN)
        return self.route_outbound("", target)
