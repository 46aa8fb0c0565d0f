"""Live status of extensions and trunks, read-only, as the configuration queries show it.

An extension's status comes from its calls first, then from the registrar:

| what the registry holds for the extension           | status        |
|-----------------------------------------------------|---------------|
| a call with any leg `Wait` (held, either side)       | `Hold`        |
| its own leg is a callee leg still in `Progress`      | `Ringing`     |
| any other live leg (dialling out, talking)           | `Busy`        |
| no live call, at least one unexpired binding         | `Registered`  |
| no live call, no binding                             | `Unavailable` |

With several calls at once the strongest wins: Busy, then Hold, then Ringing (a phone
talking on one line and ringing on another is busy). `extension_call` is the call that
decided it, for the live-call fields of `extension/query`.

A trunk's status is `Trunks.status`: register trunks move Registering → Registered or
Failure; peer trunks have no registration and stay `Unknown` (what Asterisk shows for an
unqualified peer).
"""

from __future__ import annotations

from enum import StrEnum

from ippbx.pbx.calls import Call, CallRegistry, LegStatus
from ippbx.pbx.registrar import Registrar
from ippbx.pbx.trunks import Trunks, TrunkStatus


class ExtensionState(StrEnum):
    """Extension state as `extensionlist/query` and `extension/query` show it."""

    UNAVAILABLE = "Unavailable"
    REGISTERED = "Registered"
    RINGING = "Ringing"
    BUSY = "Busy"
    HOLD = "Hold"


_RANK = {ExtensionState.RINGING: 1, ExtensionState.HOLD: 2, ExtensionState.BUSY: 3}


def call_status(call: Call, number: str) -> ExtensionState | None:
    """What `call` makes extension `number`: Ringing, Busy, Hold; None if not on it."""
    own = [leg for leg in call.legs() if leg.live and leg.extension == number]
    if not own:
        return None
    if any(leg.live and leg.status is LegStatus.WAIT for leg in call.legs()):
        return ExtensionState.HOLD
    if all(leg is call.callee and leg.status is LegStatus.PROGRESS for leg in own):
        return ExtensionState.RINGING
    return ExtensionState.BUSY


class PbxStatus:
    """The `PbxView` the API reads: extension and trunk status, an extension's call.

    `registrar` and `trunks` may be None (an API without a running PBX, in tests): then
    idle extensions are `Unavailable` and every trunk `Unknown`.
    """

    def __init__(
        self,
        registry: CallRegistry,
        registrar: Registrar | None = None,
        trunks: Trunks | None = None,
    ) -> None:
        self.registry = registry
        self.registrar = registrar
        self.trunks = trunks

    def _live(self, number: str) -> tuple[ExtensionState, Call] | None:
        best: tuple[ExtensionState, Call] | None = None
        for call in self.registry.by_extension(number):
            status = call_status(call, number)
            if status is not None and (best is None or _RANK[status] > _RANK[best[0]]):
                best = (status, call)
        return best

    def extension_status(self, number: str) -> str:
        live = self._live(number)
        if live is not None:
            return live[0].value
        if self.registrar is not None and self.registrar.is_registered(number):
            return ExtensionState.REGISTERED.value
        return ExtensionState.UNAVAILABLE.value

    def extension_call(self, number: str) -> Call | None:
        live = self._live(number)
        return live[1] if live is not None else None

    def trunk_status(self, name: str) -> str:
        if self.trunks is None:
            return TrunkStatus.UNKNOWN.value
        return self.trunks.status.get(name, TrunkStatus.UNKNOWN).value
