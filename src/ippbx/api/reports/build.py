"""Call reports from the registry's domain events, and their two wire forms.

`ReportBuilder.on_event(event)` turns one domain event into neutral `Report`s; `render`
writes a report as the JSON object one session gets, in the OpenVox flat form or the
Yeastar `call:[…]` form. Theory of operation, per event:

- Any call event: ExtensionStatus for each extension whose state changed
  (`ippbx.pbx.extension_state`, the machine the queries read too): before the call's own
  reports when a call starts, rings or is answered, after them when a leg or the call ends.
- LegRinging (a callee leg's or a transfer target's first 180/183): ALERT, RING (for
  callee legs ringing at once, a ring group's, RING for each and one ALERT).
- LegStatusChanged (that leg Progress → Talking): ALERT and RING first if the leg never
  rang (so RING always brings the ids), then ANSWER, ANSWERED.
- LegEnded of an answered leg while the call is answered: BYE, the ended leg's party first
  (two per call, and two more for the transferor of a transfer).
- CallEnded: CallFailed if it was never answered (reason: the failure's SIP status, a
  dial-plan refusal's 404/403 included), NewCdr.
- CallTransferred (REFER from a phone): Tranfer.
- DtmfPressed (a digit the media engine saw): DTMF, `info` the digit, the party that
  pressed it. PromptEnded (a prompt call's prompts have played): PlayPromptEnd, `prompt`
  their names, the party that heard them.
- InboundHeld (a call on a route with `control_inbound_call` waits for accept/refuse):
  Invite; InboundAdmitted (it is let through, accepted or by default): Incoming; both
  with the one `inbound` party (Yeastar's only form has `call:[{"inbound":…}]`).
- ExtensionRegistration: ExtensionStatus Registered / Unregistered.
- A configuration change (not an event of the registry; `config_change`): ConfigChange,
  Yeastar's, with `type` (extension, trunk, outroute, inroute), `extid` / `trunkname` /
  `name` and `operation` (add, update, del), one per object changed.

ExtensionStatus can be turned off for all extensions (`[reports] extension_status`) or one
(`report_status` of an extension); the state machine still follows them.

Parties, in the order the vendors list them: ALERT the caller; RING and ANSWER the callee
then the caller; ANSWERED (caller side) the caller then the callee; BYE the leg that ended
then the other; CallFailed the callee (if a callee leg was tried) then the caller. For a
transfer target, the party that stays plays the caller. An extension leg is `ext`, a
trunk leg is `outbound` (a leg ippbx placed) or `inbound` (the caller's) with `from`,
`to`, `trunk` and its id, exactly as `outbound/query` / `inbound/query` show them. Every
report of a call carries the call's `callid` (its first caller leg's id).

Forms, chosen by the login `version` alone: `"1.0.2"` → Yeastar: every party one element
of `call`, `ANSWERED` for the caller side, reason `"486 Busy Here"`, busy extensions
`Busy`; anything else → OpenVox: flat `ext`/`inbound`/`outbound` objects, each once,
`ext.extid` a string for one extension and an array for two, the caller-side answer
`ANSWER` too, `CallFailed.reason` the SIP code as a number, busy extensions `InUse`.
Vendor spellings are kept (`Tranfer`, `callduraction`, `talkduraction`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from enum import StrEnum
from typing import Any

from ippbx.api.reports.form import Form
from ippbx.config import Config
from ippbx.pbx import cdr, events
from ippbx.pbx.calls import Call, Leg, LegKind, LegStatus
from ippbx.pbx.extension_state import ExtensionStates, ExtState
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
    DTMF = "DTMF"
    PLAY_PROMPT_END = "PlayPromptEnd"
    INVITE = "Invite"  # an inbound call waits for inbound/accept or inbound/refuse
    INCOMING = "Incoming"  # that call is let through
    CONFIG_CHANGE = "ConfigChange"  # an extension, trunk or route added, changed, deleted


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
    info: str = ""  # DTMF: the digit; PlayPromptEnd: the prompts played
    fields: tuple[tuple[str, str], ...] = ()  # ConfigChange: type, extid|trunkname|name, operation

    @property
    def lane(self) -> str:
        """What this report keeps its order with: its call, or its extension's status
        reports ("" for BootUp)."""
        if self.action is Action.EXTENSION_STATUS:
            return "ext:" + self.extension
        if self.action is Action.CONFIG_CHANGE:
            return "config"
        return self.callid


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
    """Domain events → reports, with the extension-state machine for ExtensionStatus."""

    def __init__(self, config: Config, states: ExtensionStates) -> None:
        self.states = states
        self.extension_status = config.reports.extension_status
        self.silent = frozenset(e.number for e in config.extensions if not e.report_status)

    def reconfigure(self, config: Config) -> None:
        self.silent = frozenset(e.number for e in config.extensions if not e.report_status)

    def on_event(self, event: events.DomainEvent) -> list[Report]:
        status = self._status(event)
        if isinstance(event, events.LegRinging):
            return status + self._ringing(event.call, event.leg)
        if isinstance(event, events.LegStatusChanged):
            return status + self._answered(event.call, event.leg, event.old)
        if isinstance(event, events.LegEnded):
            return self._leg_ended(event.call, event.leg) + status
        if isinstance(event, events.CallEnded):
            return self._call_ended(event) + status
        if isinstance(event, events.CallTransferred):
            other = event.call.callee if event.leg == event.call.caller else event.call.caller
            parties = (party(event.call, event.leg),)
            if other is not None:
                parties += (party(event.call, other),)
            return [Report(Action.TRANSFER, event.call.callid, parties), *status]
        if isinstance(event, events.DtmfPressed):
            return [Report(Action.DTMF, event.call.callid, (party(event.call, event.leg),),
                           info=event.digit), *status]
        if isinstance(event, events.InboundHeld | events.InboundAdmitted):
            action = Action.INVITE if isinstance(event, events.InboundHeld) else Action.INCOMING
            return [*status, Report(action, event.call.callid, (party(event.call, event.leg),))]
        if isinstance(event, events.PromptEnded):
            return [Report(Action.PLAY_PROMPT_END, event.call.callid,
                           (party(event.call, event.leg),), info=event.prompt), *status]
        return status

    def seen(self, event: events.DomainEvent) -> None:
        """`event` happened while nobody listens: build nothing, but the extension states
        still record it as reported, so a session that logs in later hears the next change
        from what the others would have heard."""
        self.states.changes(event)

    def _status(self, event: events.DomainEvent) -> list[Report]:
        changes = self.states.changes(event)  # always: the machine follows every event
        if not self.extension_status:
            return []
        return [Report(Action.EXTENSION_STATUS, extension=ext, state=state)
                for ext, state in changes if ext not in self.silent]

    # -- per event --------------------------------------------------------------------------
    @staticmethod
    def _placed(call: Call, leg: Leg) -> Leg | None:
        """The party that hears ringback while `leg` (a callee leg or a transfer target)
        rings: the other side of the call; None for any other leg."""
        if leg is call.callee or (call.branches and leg in call.branches):
            return call.caller  # (a ring group's members ring at once: each is a callee)
        if leg.replaces and leg is call.caller:
            return call.callee
        return None

    def _ringing(self, call: Call, leg: Leg) -> list[Report]:
        other = self._placed(call, leg)
        if other is None:
            return []
        caller, callee = party(call, other), party(call, leg)
        ring = Report(Action.RING, call.callid, (callee, caller))
        if call.branches and any(b.ringing is not None for b in call.branches if b is not leg):
            return [ring]  # (the caller hears ringback once: one ALERT)
        return [Report(Action.ALERT, call.callid, (caller,)), ring]

    def _answered(self, call: Call, leg: Leg, old: str) -> list[Report]:
        other = self._placed(call, leg)
        if other is None or leg.status is not LegStatus.TALKING \
                or old != LegStatus.PROGRESS.value:
            return []
        out = [] if leg.ringing is not None else self._ringing(call, leg)
        caller, callee = party(call, other), party(call, leg)
        out.append(Report(Action.ANSWER, call.callid, (callee, caller)))
        out.append(Report(Action.ANSWERED, call.callid, (caller, callee)))
        return out

    def _leg_ended(self, call: Call, leg: Leg) -> list[Report]:
        if call.answered is None or leg.answered is None:
            return []  # (a transfer target that never answered has no BYE)
        if leg is call.caller:
            other = call.callee
        elif leg is call.callee:
            other = call.caller
        else:  # a leg replaced by a transfer after it ended
            return []
        if other is None:
            return []
        return [Report(Action.BYE, call.callid, (party(call, leg), party(call, other)))]

    def _call_ended(self, event: events.CallEnded) -> list[Report]:
        out: list[Report] = []
        call = event.call
        record = cdr.record_of(event)
        if call.answered is None:
            parties = (party(call, call.caller),)
            if call.callee is not None:
                parties = (party(call, call.callee), *parties)
            out.append(Report(Action.CALL_FAILED, call.callid, parties, reason=record.cause))
        out.append(Report(Action.NEW_CDR, call.callid, record=record))
        return out


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


# a configuration kind → ConfigChange's `type` and the field naming the object
CONFIG_TYPES = {"extensions": ("extension", "extid"), "trunks": ("trunk", "trunkname"),
                "outbound_routes": ("outroute", "name"),
                "inbound_routes": ("inroute", "name")}
CONFIG_OPERATIONS = {"add": "add", "update": "update", "delete": "del"}


def config_change(kind: str, operation: str, keys: tuple[str, ...]) -> list[Report]:
    """The ConfigChange reports of one change (none for kinds Yeastar does not report)."""
    if kind not in CONFIG_TYPES:
        return []
    type_, field = CONFIG_TYPES[kind]
    return [Report(Action.CONFIG_CHANGE, fields=(("type", type_), (field, key),
                                                 ("operation", CONFIG_OPERATIONS[operation])))
            for key in keys]


def render(report: Report, form: Form, sn: str, tz: tzinfo) -> dict[str, Any]:
    """The JSON object of `report` in `form` (key order as the vendors show it)."""
    yeastar = form is Form.YEASTAR
    action = report.action
    if action is Action.BOOTUP:
        return {"action": action.value, "sn": sn}
    if action is Action.CONFIG_CHANGE:
        return {"action": action.value, **dict(report.fields), "sn": sn}
    if action is Action.EXTENSION_STATUS:
        state = report.state.value if report.state is not None else ""
        if report.state is ExtState.BUSY and not yeastar:
            state = "InUse"
        return {"action": action.value, "extension": report.extension, "status": state,
                "sn": sn}
    if action is Action.NEW_CDR:
        r = report.record
        assert r is not None
        out = {
            "action": action.value, "callid": r.callid,
            "timestart": cdr.local_time(r.start, tz), "callfrom": r.callfrom,
            "callto": r.callto, "callduraction": str(r.duration),
            "talkduraction": str(r.talk), "status": r.status, "type": r.type,
            "srctrunkname": r.src_trunk, "desttrunkname": r.dst_trunk,
        }
        if r.recording:  # (present only when the call was recorded)
            out["recording"] = r.recording
        out["sn"] = sn
        return out
    name = "ANSWER" if action is Action.ANSWERED and not yeastar else action.value
    out: dict[str, Any] = {"action": name}
    if action is Action.CALL_FAILED:
        out["reason"] = yeastar_reason(report.reason) if yeastar else report.reason
    out["callid"] = report.callid
    if action is Action.DTMF:
        out["info"] = report.info
    elif action is Action.PLAY_PROMPT_END:
        out["prompt"] = report.info
    out.update(_call_list(report.parties) if yeastar else _flat(report.parties))
    out["sn"] = sn
    return out
