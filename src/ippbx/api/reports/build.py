"""Call reports from the registry's domain events, and their two wire forms.

`ReportBuilder.on_event(event)` turns one domain event into neutral `Report`s; `render`
writes a report as the JSON object one session gets, in the OpenVox flat form or the
Yeastar `call:[…]` form. Theory of operation, per event:

- CallCreated (caller is an extension): ExtensionStatus InUse for the caller.
- LegRinging (a callee leg's first 180/183): ExtensionStatus Ringing (callee extension),
  ALERT, RING.
- LegStatusChanged (callee Progress → Talking): ALERT and RING first if the leg never
  rang (so RING always brings the ids), ExtensionStatus InUse (callee extension),
  ANSWER, ANSWERED.
- LegEnded of an answered call: BYE, the ended leg's party first (two per call).
- CallEnded: CallFailed if it was never answered (reason: the failure's SIP status),
  NewCdr, ExtensionStatus Idle for its extensions left without a live call.
- ExtensionRegistration: ExtensionStatus Registered / Unregistered.

Parties, in the order the vendors list them: ALERT the caller; RING and ANSWER the callee
then the caller; ANSWERED (caller side) the caller then the callee; BYE the leg that ended
then the other; CallFailed the callee (if a callee leg was tried) then the caller. An
extension leg is `ext`, a trunk leg is `outbound` (callee side) or `inbound` (caller
side) with `from`, `to`, `trunk` and its id, exactly as `outbound/query` /
`inbound/query` show them. Every report of a call carries the call's `callid` (its
caller leg id).

Forms: OpenVox (`/api/v0.0.1/` sessions): flat `ext`/`inbound`/`outbound` objects, each
once, `ext.extid` a string for one extension and an array for two; the caller-side
answer is `ANSWER` too; `CallFailed.reason` the SIP code as a number; busy extensions
`InUse`. Yeastar (`/api/v1.1.0/` sessions, or login `version` `1.0.2`): every party one
element of `call`, `ANSWERED` for the caller side, reason `"486 Busy Here"`, `Busy`.
Vendor spellings are kept (`callduraction`, `talkduraction`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from enum import StrEnum
from typing import Any

from ippbx.pbx import cdr, events
from ippbx.pbx.calls import Call, CallRegistry, Leg, LegKind, LegStatus
from ippbx.sip.message import REASONS


class Action(StrEnum):
    """The `action` of a report (ANSWERED is shown as ANSWER in the OpenVox form)."""

    BOOTUP = "BootUp"
    EXTENSION_STATUS = "ExtensionStatus"
    ALERT = "ALERT"
    RING = "RING"
    ANSWER = "ANSWER"
    ANSWERED = "ANSWERED"
    BYE = "BYE"
    TRANSFER = "Tranfer"  # sic: the vendors' spelling
    CALL_FAILED = "CallFailed"
    NEW_CDR = "NewCdr"


class ExtState(StrEnum):
    """ExtensionStatus values (InUse is `Busy` in the Yeastar form)."""

    REGISTERED = "Registered"
    UNREGISTERED = "Unregistered"
    RINGING = "Ringing"
    IN_USE = "InUse"
    IDLE = "Idle"


class Form(StrEnum):
    """The two report shapes."""

    OPENVOX = "openvox"
    YEASTAR = "yeastar"


@dataclass(frozen=True, slots=True)
class Party:
    """One side of a call as reports show it: `ext` (value: the number) or
    `outbound`/`inbound` (value: the trunk leg's object)."""

    kind: str
    value: Any


@dataclass(frozen=True, slots=True)
class Report:
    """A report before it is given a form."""

    action: Action
    callid: str = ""
    parties: tuple[Party, ...] = ()
    reason: int = 0
    extension: str = ""
    state: ExtState | None = None
    record: cdr.CdrRecord | None = None


YEASTAR_REASONS = {
    404: "404 NOT found",
    480: "480 Temporarily unavailable",
    484: "484 Address Incomplete",
    486: "486 Busy Here",
    487: "487 Request Terminated",
    603: "603 Declined",
}


def yeastar_reason(code: int) -> str:
    """`CallFailed.reason` in the Yeastar form: code and phrase (Yeastar's own wording)."""
    return YEASTAR_REASONS.get(code) or f"{code} {REASONS.get(code, 'Unknown')}"


def party(call: Call, leg: Leg) -> Party:
    """How `leg` of `call` appears in a report."""
    if leg.kind is LegKind.EXTENSION:
        return Party("ext", leg.extension or leg.to_number)
    if leg is call.inbound_leg:
        return Party("inbound", {"from": leg.from_number, "to": leg.to_number,
                                 "trunk": leg.trunk or "", "inboundid": leg.id})
    return Party("outbound", {"from": leg.from_number, "to": leg.to_number,
                              "trunk": leg.trunk or "", "outboundid": leg.id})


class ReportBuilder:
    """Domain events → reports; remembers each extension's last reported status."""

    def __init__(self, registry: CallRegistry) -> None:
        self.registry = registry
        self._ext_state: dict[str, ExtState] = {}

    def on_event(self, event: events.DomainEvent) -> list[Report]:
        if isinstance(event, events.CallCreated):
            ext = event.call.caller.extension
            return self._ext(ext, ExtState.IN_USE) if ext else []
        if isinstance(event, events.LegRinging):
            return self._ringing(event.call, event.leg)
        if isinstance(event, events.LegStatusChanged):
            return self._status_changed(event.call, event.leg, event.old)
        if isinstance(event, events.LegEnded):
            return self._leg_ended(event.call, event.leg)
        if isinstance(event, events.CallEnded):
            return self._call_ended(event.call)
        if isinstance(event, events.CallTransferred):
            other = event.call.callee if event.leg is event.call.caller else event.call.caller
            parties = (party(event.call, event.leg),)
            if other is not None:
                parties += (party(event.call, other),)
            return [Report(Action.TRANSFER, event.call.callid, parties)]
        if isinstance(event, events.ExtensionRegistration):
            state = ExtState.REGISTERED if event.registered else ExtState.UNREGISTERED
            return [Report(Action.EXTENSION_STATUS, extension=event.extension, state=state)]
        return []

    # -- per event --------------------------------------------------------------------------
    def _ringing(self, call: Call, leg: Leg) -> list[Report]:
        out: list[Report] = []
        if leg.extension is not None:
            out += self._ext(leg.extension, ExtState.RINGING)
        caller, callee = party(call, call.caller), party(call, leg)
        out.append(Report(Action.ALERT, call.callid, (caller,)))
        out.append(Report(Action.RING, call.callid, (callee, caller)))
        return out

    def _status_changed(self, call: Call, leg: Leg, old: str) -> list[Report]:
        if leg is not call.callee or leg.status is not LegStatus.TALKING \
                or old != LegStatus.PROGRESS.value:
            return []
        out: list[Report] = []
        caller, callee = party(call, call.caller), party(call, leg)
        if leg.ringing is None:  # answered without 180/183: RING still brings the ids
            out.append(Report(Action.ALERT, call.callid, (caller,)))
            out.append(Report(Action.RING, call.callid, (callee, caller)))
        if leg.extension is not None:
            out += self._ext(leg.extension, ExtState.IN_USE)
        out.append(Report(Action.ANSWER, call.callid, (callee, caller)))
        out.append(Report(Action.ANSWERED, call.callid, (caller, callee)))
        return out

    def _leg_ended(self, call: Call, leg: Leg) -> list[Report]:
        if call.answered is None or call.callee is None:
            return []
        if leg is call.caller:
            other = call.callee
        elif leg is call.callee:
            other = call.caller
        else:  # a leg replaced by a transfer after it ended
            return []
        return [Report(Action.BYE, call.callid, (party(call, leg), party(call, other)))]

    def _call_ended(self, call: Call) -> list[Report]:
        out: list[Report] = []
        record = cdr.from_call(call)
        if call.answered is None:
            parties = (party(call, call.caller),)
            if call.callee is not None:
                parties = (party(call, call.callee), *parties)
            out.append(Report(Action.CALL_FAILED, call.callid, parties, reason=record.cause))
        out.append(Report(Action.NEW_CDR, call.callid, record=record))
        for leg in call.legs():
            if leg.extension is not None and not self.registry.by_extension(leg.extension):
                out += self._ext(leg.extension, ExtState.IDLE)
        return out

    def _ext(self, ext: str, state: ExtState) -> list[Report]:
        """An ExtensionStatus report if `state` is news (a busy extension stays InUse)."""
        current = self._ext_state.get(ext, ExtState.IDLE)
        if current is state or (state is ExtState.RINGING and current is ExtState.IN_USE):
            return []
        if state is ExtState.IDLE:
            self._ext_state.pop(ext, None)
        else:
            self._ext_state[ext] = state
        return [Report(Action.EXTENSION_STATUS, extension=ext, state=state)]


# -- forms --------------------------------------------------------------------------------
def _flat(parties: tuple[Party, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    exts: list[str] = []
    for p in parties:
        if p.kind == "ext":
            out.setdefault("ext", None)  # keeps the position of the first extension
            exts.append(p.value)
        else:
            out.setdefault(p.kind, p.value)
    if exts:
        out["ext"] = {"extid": exts[0] if len(exts) == 1 else exts}
    return out


def _call_list(parties: tuple[Party, ...]) -> dict[str, Any]:
    return {"call": [{p.kind: {"extid": p.value} if p.kind == "ext" else p.value}
                     for p in parties]}


def render(report: Report, form: Form, sn: str, tz: tzinfo) -> dict[str, Any]:
    """The JSON object of `report` in `form` (key order as the vendors show it)."""
    yeastar = form is Form.YEASTAR
    action = report.action
    if action is Action.BOOTUP:
        return {"action": action.value, "sn": sn}
    if action is Action.EXTENSION_STATUS:
        state = report.state.value if report.state is not None else ""
        if yeastar and report.state is ExtState.IN_USE:
            state = "Busy"
        return {"action": action.value, "extension": report.extension, "status": state,
                "sn": sn}
    if action is Action.NEW_CDR:
        r = report.record
        assert r is not None
        return {
            "action": action.value, "callid": r.callid,
            "timestart": cdr.local_time(r.start, tz), "callfrom": r.callfrom,
            "callto": r.callto, "callduraction": str(r.duration),
            "talkduraction": str(r.talk), "status": r.status, "type": r.type,
            "srctrunkname": r.src_trunk, "desttrunkname": r.dst_trunk, "sn": sn,
        }
    name = "ANSWER" if action is Action.ANSWERED and not yeastar else action.value
    out: dict[str, Any] = {"action": name}
    if action is Action.CALL_FAILED:
        out["reason"] = yeastar_reason(report.reason) if yeastar else report.reason
    out["callid"] = report.callid
    out.update(_call_list(report.parties) if yeastar else _flat(report.parties))
    out["sn"] = sn
    return out
