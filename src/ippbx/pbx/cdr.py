"""Call detail records: a finished call (`CallEnded`) becomes one `CdrRecord`.

The record is built from the call as the registry leaves it: the caller leg, the last
callee leg (earlier trunk legs that failed over are not kept), what was dialled. Its
fields are what `NewCdr` reports and `cdr/download` show:

- `callfrom` is the first caller's number (the extension for an extension's call, the
  external number for an inbound call), kept when a transfer replaces the caller leg;
  `callto` is what the caller dialled, route prefix included (`916103`), except for
  inbound calls, where it is the extension that took the call (the DID when no extension
  was reached).
- `extensions` lists every extension that took part (caller, callee, transferor, transfer
  target), so the CDR of a transferred call is found by any of them.
- `duration` runs from the call's creation to the end of its last leg, `talk` from the
  answer to that end; both in whole seconds, rounded to the nearest (as Asterisk does).
- `hangup_by` says who ended the call: the `caller`, the `callee`, the `api` (a hang-up
  request), or the `pbx` itself (no ACK, shutdown); a caller's CANCEL counts as `caller`.
- `status` is `ANSWERED`, or from the failure cause (the last callee leg's, else the
  caller's): 486/600 `BUSY`; 480/408/487/603 `NO ANSWER`; anything else `FAILED`.

`CdrRecorder` subscribes to the registry and writes each record to the store at once, in
the event that removes the call from the registry (so nothing can see the call gone
without its CDR), committed before the registry's `end_leg` returns.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, tzinfo
from functools import lru_cache
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ippbx.pbx import events
from ippbx.pbx.calls import Call, CallType, LegKind

log = logging.getLogger(__name__)

ANSWERED = "ANSWERED"
NO_ANSWER = "NO ANSWER"
BUSY = "BUSY"
FAILED = "FAILED"
VOICEMAIL = "VOICEMAIL"  # the caller was put through to a mailbox (and left a message)

_BUSY_CAUSES = frozenset({486, 600})
_NO_ANSWER_CAUSES = frozenset({408, 480, 487, 603})


@dataclass(frozen=True, slots=True)
class CdrRecord:
    """One finished call. Times are unix seconds; ids and numbers are strings."""

    callid: str
    start: float
    answer: float | None
    end: float
    callfrom: str
    callto: str
    duration: int
    talk: int
    status: str
    type: str
    src_trunk: str = ""
    dst_trunk: str = ""
    caller_ext: str = ""
    callee_ext: str = ""
    outboundid: str = ""
    inboundid: str = ""
    cause: int = 0
    hangup_by: str = ""  # "caller", "callee", "api", "pbx" ("" when nobody answered)
    extensions: tuple[str, ...] = ()  # every extension that took part, in order
    recording: str = ""  # the recording's file name ("" when not recorded)


def status_for(answered: bool, cause: int | None) -> str:
    """The CDR `status` of a call: answered, or what its failure cause means."""
    if answered:
        return ANSWERED
    if cause in _BUSY_CAUSES:
        return BUSY
    if cause in _NO_ANSWER_CAUSES:
        return NO_ANSWER
    return FAILED


def failure_cause(call: Call) -> int:
    """The SIP status a failed call ended with (the last callee leg's, else the caller's)."""
    for leg in (call.callee, call.caller):
        if leg is not None and leg.end_cause is not None and leg.end_cause >= 300:
            return leg.end_cause
    return 480 if call.callee is not None else 503


def _seconds(delta: float) -> int:
    return max(0, int(delta + 0.5))


def from_call(call: Call) -> CdrRecord:
    """The CDR of a call whose legs have all ended."""
    caller, callee = call.origin, call.callee
    ends = [leg.ended for leg in call.legs() if leg.ended is not None]
    end = max(ends) if ends else call.created
    answered = call.answered is not None
    call_type = call.type
    callto = call.dialled
    if call_type is CallType.INBOUND and callee is not None and callee.extension:
        callto = callee.extension
    outbound = call.outbound_leg
    inbound = call.inbound_leg
    callee_is_ext = callee is not None and callee.kind is LegKind.EXTENSION
    return CdrRecord(
        callid=call.callid,
        start=call.created,
        answer=call.answered,
        end=end,
        callfrom=caller.from_number,
        callto=callto,
        duration=_seconds(end - call.created),
        talk=_seconds(end - call.answered) if call.answered is not None else 0,
        status=VOICEMAIL if call.application.startswith("voicemail:")
        else status_for(answered, None if answered else failure_cause(call)),
        type=call_type.value,
        src_trunk=(inbound.trunk or "") if inbound is not None else "",
        dst_trunk=(outbound.trunk or "") if outbound is not None else "",
        caller_ext=caller.extension or "",
        callee_ext=(callee.extension or "") if callee is not None and callee_is_ext else "",
        outboundid=outbound.id if outbound is not None else "",
        inboundid=inbound.id if inbound is not None else "",
        cause=200 if answered else failure_cause(call),
        hangup_by=call.hangup_by,
        extensions=tuple(call.extensions),
        recording=call.recording,
    )


_last_ended: tuple[events.CallEnded, CdrRecord] | None = None


def record_of(event: events.CallEnded) -> CdrRecord:
    """The CDR of the call `event` ends, worked out once for all the subscribers that
    want it (the recorder and the reports) rather than once each."""
    global _last_ended
    last = _last_ended
    if last is not None and last[0] is event:
        return last[1]
    record = from_call(event.call)
    _last_ended = (event, record)
    return record


@lru_cache(maxsize=8)
def zone(name: str) -> tzinfo:
    """The named IANA time zone, or UTC when it is unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def local_time(ts: float, tz: tzinfo) -> str:
    """`YYYY-MM-DD HH:MM:SS` in the PBX's time zone (the CDR `timestart` form)."""
    return datetime.fromtimestamp(ts, tz).strftime(TIME_FORMAT)


def parse_local_time(text: str, tz: tzinfo) -> float:
    """Unix seconds of `YYYY-MM-DD HH:MM:SS` in the PBX's zone; ValueError if malformed."""
    return datetime.strptime(text.strip(), TIME_FORMAT).replace(tzinfo=tz).timestamp()


class CdrSink(Protocol):
    """Where records go (the SQLite store)."""

    def add_cdr(self, record: CdrRecord) -> None: ...


class CdrRecorder:
    """Registry subscriber: writes the CDR of every call that ends."""

    def __init__(self, sink: CdrSink) -> None:
        self.sink = sink

    def __call__(self, event: events.DomainEvent) -> None:
        if not isinstance(event, events.CallEnded):
            return
        record = record_of(event)
        try:
            self.sink.add_cdr(record)
        except Exception:
            log.exception("writing the CDR of call %s failed", record.callid)
