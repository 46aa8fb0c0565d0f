"""Call control endpoints: hang up, transfer, hold, click-to-call.

OpenVox: `outbound/hangup {outboundid}`, `inbound/hangup {inboundid}`, `extension/hangup
{extid}`, `calltransfer {callid, transferor, transferto}`, `extension/hold|unhold
{extid}`, `extension/mute|unmute {extid}` (anchored media only; otherwise 30001),
`extension/playprompt {extid, prompt, autoanswer}` and `outbound/playprompt {outto, prompt}`
(a call that plays prompts, `pbx/prompt_calls.py`; 10023 for an unknown prompt),
`extension/listen {listener, listenedext}` (silent monitoring, `pbx/listen.py`),
`extension/dial_extension {caller, callee, autoanswer}`, `extension/dial_outbound
{extid, outto, autoanswer}`, `outbound/dial_outbound {caller, outto, fromext?}` (the
callback: ippbx calls the external `caller` first, then connects it to `outto`, an
external number or any local one). Yeastar adds `outbound/transfer_number` and
`inbound/transfer_number {…id, number, fromext}`. A transfer reaches extensions, IVRs,
ring groups, queues, paging groups and outside numbers (those answered by ippbx only with
anchored media: 30001 otherwise). Dial endpoints also return the new call's `callid`
(Yeastar does; OpenVox clients ignore the extra key). `extension/dial_extension`'s
`callee` is an extension or another local number (IVR, ring group, queue, paging group),
never an external one (10006). The work is done by `ippbx.pbx.control`; this module only
finds the call and maps failures to errnos.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ippbx.api.errors import ApiError, Errno
from ippbx.api.request import ApiRequest, Endpoint, Handler
from ippbx.pbx.calls import Call
from ippbx.pbx.control import CallControl, ControlError
from ippbx.pbx.listen import ListenError
from ippbx.pbx.prompt_calls import PromptCalls, PromptError
from ippbx.pbx.supervision import Mode, SupervisionError

_ERRNOS = {
    ControlError.NO_CALL: Errno.CALL_NOT_FOUND,
    ControlError.NO_EXTENSION: Errno.EXTENSION_NOT_FOUND,
    ControlError.NOT_PERMITTED: Errno.NO_OUTBOUND_PERMISSION,
    ControlError.NO_ROUTE: Errno.NUMBER_NOT_FOUND,
    ControlError.NOT_CONNECTED: Errno.CALL_NOT_CONNECTED,
    ControlError.NO_MEDIA: Errno.INTERNAL,
}

_YES = frozenset({"yes", "1", "true", "on"})
_PROMPT_ERRNOS = {
    PromptError.NO_PROMPT: Errno.PROMPT_NOT_FOUND,
    PromptError.NO_EXTENSION: Errno.EXTENSION_NOT_FOUND,
    PromptError.NOT_PERMITTED: Errno.NO_OUTBOUND_PERMISSION,
    PromptError.NO_ROUTE: Errno.NUMBER_NOT_FOUND,
    PromptError.NO_MEDIA: Errno.INTERNAL,
}


def _control(req: ApiRequest) -> CallControl:
    if req.ctx.control is None:
        raise ApiError(Errno.INTERNAL, "no PBX behind this API")
    return req.ctx.control


def _found(call: Call | None) -> Call:
    if call is None:
        raise ApiError(Errno.CALL_NOT_FOUND)
    return call


def _do(action: Any, *args: Any) -> Any:
    try:
        return action(*args)
    except ControlError as exc:
        raise ApiError(_ERRNOS[exc.reason], exc.reason) from None


def outbound_hangup(req: ApiRequest) -> Mapping[str, Any]:
    call = _found(req.ctx.registry.by_outboundid(req.require("outboundid")))
    _do(_control(req).hangup, call.callid)
    return {}


def inbound_hangup(req: ApiRequest) -> Mapping[str, Any]:
    call = _found(req.ctx.registry.by_inboundid(req.require("inboundid")))
    _do(_control(req).hangup, call.callid)
    return {}


def extension_hangup(req: ApiRequest) -> Mapping[str, Any]:
    extid = req.require("extid")
    if _do(_control(req).hangup_extension, extid) == 0:
        raise ApiError(Errno.CALL_NOT_FOUND)
    return {}


def _extension_call(req: ApiRequest) -> tuple[Call, str]:
    extid = req.require("extid")
    calls = req.ctx.registry.by_extension(extid)
    return _found(calls[0] if calls else None), extid


def _switch(action: Callable[[CallControl, str, str, bool], None],
            on: bool) -> Callable[[ApiRequest], Mapping[str, Any]]:
    """The endpoint turning `action` (CallControl.hold, .mute) on or off for the call of
    extension `extid`."""

    def endpoint(req: ApiRequest) -> Mapping[str, Any]:
        call, extid = _extension_call(req)
        _do(action, _control(req), call.callid, extid, on)
        return {}

    return endpoint


def calltransfer(req: ApiRequest) -> Mapping[str, Any]:
    callid = req.require("callid")
    transferor = req.require("transferor")
    target = req.require("transferto")
    call = _found(req.ctx.registry.find(callid))
    _do(_control(req).transfer, call.callid, transferor, target)
    return {}


def outbound_transfer(req: ApiRequest) -> Mapping[str, Any]:
    leg_id = req.require("outboundid")
    target = req.require("number")
    call = _found(req.ctx.registry.by_outboundid(leg_id))
    # the outbound party stays; the extension on the call (or `fromext`) leaves
    transferor = req.text("fromext") or _other_party(call, leg_id)
    _do(_control(req).transfer, call.callid, transferor, target)
    return {"callid": call.callid}


def inbound_transfer(req: ApiRequest) -> Mapping[str, Any]:
    leg_id = req.require("inboundid")
    target = req.require("number")
    call = _found(req.ctx.registry.by_inboundid(leg_id))
    transferor = req.text("fromext") or _other_party(call, leg_id)
    _do(_control(req).transfer, call.callid, transferor, target)
    return {"callid": call.callid}


def _other_party(call: Call, leg_id: str) -> str:
    """The id of the leg that is not `leg_id` (the party that leaves)."""
    for leg in call.legs():
        if leg.id != leg_id and leg.live:
            return leg.id
    raise ApiError(Errno.CALL_NOT_FOUND)


def dial_extension(req: ApiRequest) -> Mapping[str, Any]:
    caller = req.require("caller")
    callee = req.require("callee")
    auto = (req.text("autoanswer") or "no").lower() in _YES
    control = _control(req)
    _do(control.require_extension, caller)
    _do(control.require_local, callee)  # a local number, not an outside one: 10006
    return {"callid": _do(control.dial, caller, callee, auto)}


def dial_outbound(req: ApiRequest) -> Mapping[str, Any]:
    extid = req.require("extid")
    outto = req.require("outto")
    auto = (req.text("autoanswer") or "no").lower() in _YES
    return {"callid": _do(_control(req).dial, extid, outto, auto)}


def callback(req: ApiRequest) -> Mapping[str, Any]:
    """`outbound/dial_outbound`: call `caller` (external), then connect it to `outto`."""
    caller = req.require("caller")
    outto = req.require("outto")
    return {"callid": _do(_control(req).dial_number, caller, outto,
                          req.text("fromext") or "")}


def _prompts(req: ApiRequest) -> PromptCalls:
    if req.ctx.prompts is None:
        raise ApiError(Errno.INTERNAL, "no PBX behind this API")
    return req.ctx.prompts


def _placed(action: Any, *args: Any) -> Mapping[str, Any]:
    try:
        return {"callid": action(*args)}
    except PromptError as exc:
        raise ApiError(_PROMPT_ERRNOS[exc.reason], exc.reason) from None


def extension_playprompt(req: ApiRequest) -> Mapping[str, Any]:
    extid = req.require("extid")
    prompt = req.require("prompt")
    auto = (req.text("autoanswer") or "no").lower() in _YES
    return _placed(_prompts(req).to_extension, extid, prompt, auto)


def outbound_playprompt(req: ApiRequest) -> Mapping[str, Any]:
    return _placed(_prompts(req).to_number, req.require("outto"), req.require("prompt"))


_LISTEN_ERRNOS = {
    ListenError.NO_EXTENSION: Errno.EXTENSION_NOT_FOUND,
    ListenError.NO_CALL: Errno.CALL_NOT_FOUND,
    ListenError.BUSY: Errno.EXTENSION_NOT_IDLE,
    ListenError.NO_MEDIA: Errno.INTERNAL,
}


_SUPERVISION_ERRNOS = {
    SupervisionError.NO_EXTENSION: Errno.EXTENSION_NOT_FOUND,
    SupervisionError.NO_CALL: Errno.CALL_NOT_FOUND,
    SupervisionError.BUSY: Errno.EXTENSION_NOT_IDLE,
    SupervisionError.NO_MIXER: Errno.INTERNAL,
}


def _supervise(mode: Mode, supervisor_field: str, monitored_field: str) -> Handler:
    def handler(req: ApiRequest) -> Mapping[str, Any]:
        supervisor = req.require(supervisor_field)
        monitored = req.require(monitored_field)
        supervision = req.ctx.supervision
        if supervision is None or (mode is Mode.LISTEN and not supervision.available):
            return _listen_one_party(req, supervisor, monitored)
        try:
            return {"callid": supervision.start(mode, supervisor, monitored)}
        except SupervisionError as exc:
            raise ApiError(_SUPERVISION_ERRNOS[exc.reason], exc.reason) from None
        except ControlError as exc:
            raise ApiError(_ERRNOS[exc.reason], exc.reason) from None

    return handler


def _listen_one_party(req: ApiRequest, listener: str, listened: str) -> Mapping[str, Any]:
    """Without the mixer: the listener hears the monitored extension's far end only."""
    if req.ctx.listening is None:
        raise ApiError(Errno.INTERNAL, "no PBX behind this API")
    try:
        return {"callid": req.ctx.listening.start(listener, listened)}
    except ListenError as exc:
        raise ApiError(_LISTEN_ERRNOS[exc.reason], exc.reason) from None


ENDPOINTS = [
    Endpoint("outbound/hangup", outbound_hangup),
    Endpoint("inbound/hangup", inbound_hangup),
    Endpoint("extension/hangup", extension_hangup),
    Endpoint("extension/hold", _switch(CallControl.hold, True)),
    Endpoint("extension/unhold", _switch(CallControl.hold, False)),
    Endpoint("extension/mute", _switch(CallControl.mute, True)),
    Endpoint("extension/unmute", _switch(CallControl.mute, False)),
    Endpoint("calltransfer", calltransfer),
    Endpoint("outbound/transfer_number", outbound_transfer),
    Endpoint("inbound/transfer_number", inbound_transfer),
    Endpoint("extension/dial_extension", dial_extension),
    Endpoint("extension/dial_outbound", dial_outbound),
    Endpoint("outbound/dial_outbound", callback),
    Endpoint("extension/playprompt", extension_playprompt),
    Endpoint("extension/listen", _supervise(Mode.LISTEN, "listener", "listenedext")),
    Endpoint("extension/whisper", _supervise(Mode.WHISPER, "whisperer", "whisperedext")),
    Endpoint("extension/barge", _supervise(Mode.BARGE, "bargein", "bargedext")),
    Endpoint("outbound/playprompt", outbound_playprompt),
]
