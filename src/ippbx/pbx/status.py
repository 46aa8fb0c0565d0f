"""Live status of extensions and trunks, read-only, as the configuration queries show it.

An extension's state is `ippbx.pbx.extension_state`'s machine (the same one the call
reports follow): its line from the live calls (Ringing, Busy, Hold), else its
registration. `extension_call` is the call that decided the line, for the live-call fields
of `extension/query`.

A trunk's status is `Trunks.status`: register trunks move Registering → Registered or
Failure; peer trunks have no registration and stay `Unknown` (what Asterisk shows for an
unqualified peer).
"""

from __future__ import annotations

from ippbx.pbx.calls import Call, CallStore
from ippbx.pbx.extension_state import ExtensionStates, ExtState
from ippbx.pbx.registrar import Registrar
from ippbx.pbx.trunks import Trunks, TrunkStatus


class PbxStatus:
    """The `PbxView` the API reads: extension and trunk status, an extension's call.

    `registrar` and `trunks` may be None (an API without a running PBX, in tests): then
    idle extensions are unregistered and every trunk `Unknown`.
    """

    def __init__(
        self,
        registry: CallStore,
        registrar: Registrar | None = None,
        trunks: Trunks | None = None,
    ) -> None:
        self.registry = registry
        self.registrar = registrar
        self.trunks = trunks
        self.states = ExtensionStates(
            registry, registrar.is_registered if registrar is not None else None
        )

    def extension_status(self, number: str) -> ExtState:
        return self.states.state(number)

    def extension_call(self, number: str) -> Call | None:
        return self.states.line(number)[1]

    def trunk_status(self, name: str) -> str:
        if self.trunks is None:
            return TrunkStatus.UNKNOWN.value
        return self.trunks.status.get(name, TrunkStatus.UNKNOWN).value
