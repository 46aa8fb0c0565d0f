"""`inbound/accept` and `inbound/refuse` (Yeastar's Control Inbound Call), both `{inboundid}`.

An inbound call on a route with `control_inbound_call` rings its caller and waits for
one of these (the `Invite` report brings its `inboundid`): accept lets it go on to the
route's destination (it is not answered), refuse has it rejected (603 Decline); the
work is `ippbx.pbx.inbound_control`'s. Errors: 10004 no `inboundid`; 10007 no live call
with that id was held for a decision; 10016 it was, and its decision is made (accepted,
refused, or the window passed: accepted by default). Served on both API paths, as every
endpoint is (OpenVox v0.0.1 documents no such endpoints; they cost its clients nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ippbx.api.errors import ApiError, Errno
from ippbx.api.request import ApiRequest, Endpoint
from ippbx.pbx.inbound_control import InboundControl, InboundControlError

_ERRNOS = {
    InboundControlError.NO_CALL: Errno.CALL_NOT_FOUND,
    InboundControlError.TOO_LATE: Errno.INBOUND_TOO_LATE,
}


def _decide(action: Callable[[InboundControl, str], None]
            ) -> Callable[[ApiRequest], Mapping[str, Any]]:
    """The endpoint doing `action` (InboundControl.accept, .refuse) for `inboundid`."""

    def endpoint(req: ApiRequest) -> Mapping[str, Any]:
        inboundid = req.require("inboundid")
        if req.ctx.inbound is None:
            raise ApiError(Errno.INTERNAL, "no PBX behind this API")
        try:
            action(req.ctx.inbound, inboundid)
        except InboundControlError as exc:
            raise ApiError(_ERRNOS[exc.reason], exc.reason) from None
        return {}

    return endpoint


ENDPOINTS = [
    Endpoint("inbound/accept", _decide(InboundControl.accept)),
    Endpoint("inbound/refuse", _decide(InboundControl.refuse)),
]
