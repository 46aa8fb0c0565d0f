"""Domain events the live-call registry publishes; reports, CDR and status views consume them.

Events are small immutable records. They carry snapshots of the call and the leg as they
were at the moment of the change (`Call.snapshot()`; the leg is one of the call
snapshot's legs), not the live objects the store keeps: a subscriber may keep one, it
will not change under it, and it tells the store nothing. To find the live call, ask the
store by id (`CallStore.get(event.call.callid)`); compare calls and legs with `==` (by
id), never `is`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ippbx.pbx.call_model import Call, Leg


@dataclass(frozen=True, slots=True)
class CallCreated:
    call: Call


@dataclass(frozen=True, slots=True)
class LegAdded:
    call: Call
    leg: Leg


@dataclass(frozen=True, slots=True)
class LegRinging:
    """The callee leg got its first 180/183: the callee is alerted, the caller hears ringback."""

    call: Call
    leg: Leg


@dataclass(frozen=True, slots=True)
class LegStatusChanged:
    call: Call
    leg: Leg
    old: str


@dataclass(frozen=True, slots=True)
class LegEnded:
    call: Call
    leg: Leg
    cause: int


@dataclass(frozen=True, slots=True)
class CallEnded:
    call: Call


@dataclass(frozen=True, slots=True)
class CallTransferred:
    """A party of the call transferred it from its phone (REFER): `leg` leaves and the
    other party is connected to `target`."""

    call: Call
    leg: Leg
    target: str


@dataclass(frozen=True, slots=True)
class DtmfPressed:
    """A party of the call sent a DTMF digit (RFC 4733, as the media engine saw it)."""

    call: Call
    leg: Leg
    digit: str


@dataclass(frozen=True, slots=True)
class PromptEnded:
    """The prompts played to `leg` (`prompt`: their names, `+`-joined) have ended."""

    call: Call
    leg: Leg
    prompt: str


@dataclass(frozen=True, slots=True)
class InboundHeld:
    """An inbound call (`leg`: its trunk leg) on a route with `control_inbound_call` is
    held, its caller hearing ringing, until an application accepts or refuses it."""

    call: Call
    leg: Leg


@dataclass(frozen=True, slots=True)
class InboundAdmitted:
    """A held inbound call is let through to its route's destination: an application
    accepted it, or none decided in time."""

    call: Call
    leg: Leg


@dataclass(frozen=True, slots=True)
class ExtensionRegistration:
    """An extension went from unregistered to registered (`registered`) or back."""

    extension: str
    registered: bool


DomainEvent = (
    CallCreated | LegAdded | LegRinging | LegStatusChanged | LegEnded | CallEnded
    | CallTransferred | DtmfPressed | PromptEnded | InboundHeld | InboundAdmitted
    | ExtensionRegistration
)
