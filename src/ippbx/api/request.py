"""What an endpoint handler receives (`ApiRequest`), what it can reach (`ApiContext`), and
how an endpoint is declared (`Endpoint`).

Handlers are `def handler(req: ApiRequest) -> Reply`, synchronous (whatever they start,
call control for one, goes on in the event loop after the answer): they read fields with
`req.text()` / `req.require()`, call into `pbx` or the session manager, and return the
success payload (without `status`), a `FileReply`, or an `EncodedList` (the call queries,
from items encoded once per call), or raise `ApiError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ippbx.api.call_views import CallViews
from ippbx.api.codec import EncodedList, Format
from ippbx.api.downloads import DownloadTickets
from ippbx.api.errors import ApiError, Errno
from ippbx.api.sessions import Session, SessionManager
from ippbx.config import Config
from ippbx.pbx.calls import Call, CallStore
from ippbx.pbx.extension_state import ExtState
from ippbx.store.sqlite import Store

if TYPE_CHECKING:
    from ippbx.api.dialects import Dialect
    from ippbx.media.recordings import Recordings
    from ippbx.pbx.conferences import Conferences
    from ippbx.pbx.control import CallControl
    from ippbx.pbx.inbound_control import InboundControl
    from ippbx.pbx.listen import Listening
    from ippbx.pbx.mailboxes import Mailboxes
    from ippbx.pbx.prompt_calls import PromptCalls
    from ippbx.pbx.queues import Queues
    from ippbx.pbx.supervision import Supervision
    from ippbx.running_config import RunningConfig


class PbxView(Protocol):
    """Read-only live PBX state the configuration queries show (`ippbx.pbx.status`)."""

    def extension_status(self, number: str) -> ExtState:
        """The extension's state (`ippbx.pbx.extension_state`)."""
        ...

    def extension_call(self, number: str) -> Call | None:
        """The live call that decided the extension's status, if any."""
        ...

    def trunk_status(self, name: str) -> str:
        """Registered / Registering / Failure / Unknown."""
        ...


@dataclass(slots=True)
class ApiContext:
    """Everything the endpoints may use; built once by the app.

    `pbx` is None when no PBX runs behind the API (tests): the endpoints then read
    statuses from the call registry alone.
    """

    config: Config
    registry: CallStore
    sessions: SessionManager
    wall_clock: Callable[[], float] = time.time
    boot_time: float = field(default_factory=time.time)
    pbx: PbxView | None = None
    store: Store | None = None  # CDRs for cdr/download (None: no store behind the API)
    downloads: DownloadTickets = field(default_factory=DownloadTickets)
    control: CallControl | None = None  # hang up / transfer / dial (None: no PBX behind)
    views: CallViews = field(default_factory=CallViews)  # the call queries' encoded items
    recordings: Recordings | None = None  # recording/download's WAVs (None: no recordings)
    prompts: PromptCalls | None = None  # the playprompt calls (None: no PBX behind)
    listening: Listening | None = None  # extension/listen (None: no PBX behind)
    mailboxes: Mailboxes | None = None  # voicemail/* (None: no PBX behind)
    queues: Queues | None = None  # queue/* (None: no PBX behind)
    conferences: Conferences | None = None  # conference/* live (None: no PBX behind)
    supervision: Supervision | None = None  # extension/listen|whisper|barge on the mixer
    inbound: InboundControl | None = None  # inbound/accept|refuse (None: no PBX behind)
    running: RunningConfig | None = None  # the write endpoints (None: configuration fixed)


@dataclass(slots=True)
class ApiRequest:
    """One decoded API request."""

    ctx: ApiContext
    dialect: Dialect
    fmt: Format
    body: dict[str, Any] | None
    client_ip: str
    token: str | None
    session: Session | None = None

    def text(self, *names: str) -> str | None:
        """The first of `names` present in the body, as text; None when absent or null.

        Numbers arrive as their source text already (see `codec.decode_json`). A list, an
        object or a boolean where text is expected is refused with 10004.
        """
        if not self.body:
            return None
        for name in names:
            if name not in self.body:
                continue
            value = self.body[name]
            if value is None:
                return None
            if isinstance(value, str):
                return value
            raise ApiError(Errno.MISSING_PARAM, f"{name} must be a string or a number")
        return None

    def require(self, name: str) -> str:
        """A field that must be present and non-empty (10004 otherwise)."""
        value = self.text(name)
        if value is None or value == "":
            raise ApiError(Errno.MISSING_PARAM, f"{name} is required")
        return value


@dataclass(frozen=True, slots=True)
class FileReply:
    """What a download endpoint answers instead of an envelope: a file, sent as is."""

    body: bytes
    content_type: str
    filename: str


Reply = Mapping[str, Any] | FileReply | EncodedList
Handler = Callable[[ApiRequest], Reply]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One API endpoint, served under every dialect's prefix."""

    path: str
    handler: Handler
    auth: bool = True
    body_required: bool = False
    methods: frozenset[str] = frozenset({"POST"})
