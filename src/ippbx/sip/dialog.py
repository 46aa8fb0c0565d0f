"""SIP dialogs (RFC 3261 §12, §13.3.1.4), sans-IO.

Theory of operation
-------------------
A dialog is the peer-to-peer relation an INVITE sets up, identified by Call-ID, local tag
and remote tag. It carries what every later request inside it needs: the From/To values
(tags included), our CSeq counter and the highest CSeq seen from the peer, the remote
target (the peer's Contact) and the route set (Record-Route, reversed for the UAC).

- `Dialog.from_uac(invite, response)` / `Dialog.from_uas(invite, response)` build one
  from the INVITE and the 2xx (or a 1xx with a To tag: an *early* dialog, confirmed by
  `receive_response` when the 2xx comes).
- `dialog.create_request(method, body, headers)` builds an in-dialog request (BYE,
  re-INVITE, REFER, OPTIONS, INFO…) with the next CSeq and the Route/Request-URI of
  §12.2.1.1 (loose routing, or strict routing when the first route lacks `lr`).
  `dialog.create_ack(body)` builds the ACK for a 2xx (the INVITE's CSeq number). The
  caller (the UA) adds its Via and Max-Forwards.
- `dialog.receive_request(request)` checks the peer's CSeq (lower than before → 500,
  §12.2.2) and applies target refreshes; `dialog.receive_response(response)` confirms
  an early dialog and applies target refreshes from 2xx responses.
- `DialogStore` finds the dialog of an incoming request or response by dict lookup.
- `Retransmit2xx` is the UAS core's 2xx retransmission (§13.3.1.4) as a sans-IO timer:
  the owner calls `on_timer(now)` at `deadline` and gets "resend", "give_up" (64*T1
  without ACK: the TU should send BYE) or "idle".
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Literal

from mypy_extensions import mypyc_attr

from ippbx.sip.errors import SipParseError
from ippbx.sip.headers import NameAddr
from ippbx.sip.message import Message, Request, Response, Sent
from ippbx.sip.uri import SipUri, UriError

__all__ = [
    "Dialog",
    "DialogError",
    "DialogStore",
    "DialogId",
    "Retransmit2xx",
    "TARGET_REFRESH",
    "EARLY",
    "CONFIRMED",
    "TERMINATED",
]

EARLY = "early"
CONFIRMED = "confirmed"
TERMINATED = "terminated"

TARGET_REFRESH = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})

DialogId = tuple[str, str, str]  # (Call-ID, local tag, remote tag)

# URI parameters that may not appear in a Request-URI (RFC 3261 §19.1.1 table)
_NOT_IN_RURI = ("method", "ttl")


class DialogError(ValueError):
    """A message that cannot create or belong to a dialog, or a misuse of one."""


def _contact_uri(message: Message) -> str | None:
    """The URI of the first Contact, or None if absent or malformed."""
    values = message.get_all("Contact")
    if not values:
        return None
    try:
        first = NameAddr.parse(values[0])
    except SipParseError:
        return None
    return first.uri if first.uri != "*" else None


class Dialog:
    """One dialog's state. Attributes are public; change them only through the methods."""

    __slots__ = (
        "call_id", "local_tag", "remote_tag", "local_addr", "remote_addr", "local_cseq",
        "remote_cseq", "remote_target", "route_set", "secure", "is_uac", "state",
        "local_contact", "invite_cseq", "peer", "last_ack", "_strict",
    )

    def __init__(
        self,
        *,
        call_id: str,
        local_tag: str,
        remote_tag: str,
        local_addr: str,
        remote_addr: str,
        local_cseq: int,
        remote_cseq: int | None,
        remote_target: str,
        route_set: list[str],
        secure: bool,
        is_uac: bool,
        state: str = CONFIRMED,
        local_contact: str | None = None,
        invite_cseq: int = 0,
        peer: object = None,
    ) -> None:
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        self.local_addr = local_addr  # our From (UAC) / To (UAS) value, tag included
        self.remote_addr = remote_addr
        self.local_cseq = local_cseq
        self.remote_cseq = remote_cseq
        self.remote_target = remote_target
        self.route_set = route_set
        self.secure = secure
        self.is_uac = is_uac
        self.state = state
        self.local_contact = local_contact  # the Contact value we advertised
        self.invite_cseq = invite_cseq  # CSeq number of the last INVITE we sent (for ACK)
        self.peer = peer  # opaque: where the UA sends requests of this dialog
        self.last_ack: Sent | None = None  # the UA's ACK for the last 2xx, to resend
        self._strict = False
        self._check_routes()

    # -- creation -------------------------------------------------------------------------
    @classmethod
    def from_uac(
        cls, request: Request, response: Response, *, secure: bool | None = None,
        peer: object = None,
    ) -> Dialog:
        """The caller's dialog from its INVITE and a 2xx (or a tagged 1xx → early)."""
        remote_tag = response.to.tag
        local_tag = request.from_.tag
        if not remote_tag or not local_tag:
            raise DialogError("a dialog needs a From tag and a To tag")
        if not 101 <= response.status < 300:
            raise DialogError(f"a {response.status} response does not create a dialog")
        routes = response.get_all("Record-Route")
        routes.reverse()
        target = _contact_uri(response) or request.uri
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_addr=request.get("From") or "",
            remote_addr=response.get("To") or "",
            local_cseq=request.cseq[0],
            remote_cseq=None,
            remote_target=target,
            route_set=routes,
            secure=request.uri.lower().startswith("sips:") if secure is None else secure,
            is_uac=True,
            state=CONFIRMED if response.status >= 200 else EARLY,
            local_contact=request.get("Contact"),
            invite_cseq=request.cseq[0],
            peer=peer,
        )

    @classmethod
    def from_uas(
        cls, request: Request, response: Response, *, secure: bool | None = None,
        peer: object = None,
    ) -> Dialog:
        """The callee's dialog from the INVITE it received and its 2xx (or tagged 1xx)."""
        local_tag = response.to.tag
        remote_tag = request.from_.tag
        if not remote_tag or not local_tag:
            raise DialogError("a dialog needs a From tag and a To tag")
        if not 101 <= response.status < 300:
            raise DialogError(f"a {response.status} response does not create a dialog")
        target = _contact_uri(request) or request.from_.uri
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_addr=response.get("To") or "",
            remote_addr=request.get("From") or "",
            local_cseq=0,
            remote_cseq=request.cseq[0],
            remote_target=target,
            route_set=request.get_all("Record-Route"),
            secure=request.uri.lower().startswith("sips:") if secure is None else secure,
            is_uac=False,
            state=CONFIRMED if response.status >= 200 else EARLY,
            local_contact=response.get("Contact"),
            peer=peer,
        )

    @property
    def local_uri(self) -> str:
        """Our URI (From for the UAC, To for the UAS), without the tag."""
        return NameAddr.parse(self.local_addr).uri

    @property
    def remote_uri(self) -> str:
        return NameAddr.parse(self.remote_addr).uri

    @property
    def id(self) -> DialogId:
        return (self.call_id, self.local_tag, self.remote_tag)

    def __repr__(self) -> str:
        role = "UAC" if self.is_uac else "UAS"
        return f"<Dialog {role} {self.state} {self.call_id} {self.local_tag}/{self.remote_tag}>"

    # -- requests we send -----------------------------------------------------------------
    def create_request(
        self, method: str, body: bytes = b"", headers: Iterable[tuple[str, str]] = ()
    ) -> Request:
        """A request inside this dialog with the next CSeq (§12.2.1.1). No Via yet."""
        if method in ("ACK", "CANCEL"):
            raise DialogError(f"{method} is not built with create_request")
        if self.state == TERMINATED:
            raise DialogError("the dialog is terminated")
        self.local_cseq += 1
        if method == "INVITE":
            self.invite_cseq = self.local_cseq
        return self._build(method, self.local_cseq, body, headers)

    def create_ack(self, body: bytes = b"", headers: Iterable[tuple[str, str]] = ()) -> Request:
        """The ACK for the 2xx to our last INVITE (same CSeq number, §13.2.2.4). No Via."""
        if not self.invite_cseq:
            raise DialogError("no INVITE was sent in this dialog")
        return self._build("ACK", self.invite_cseq, body, headers)

    def _build(
        self, method: str, cseq: int, body: bytes, extra: Iterable[tuple[str, str]]
    ) -> Request:
        out: list[tuple[str, str]] = []
        uri = self.remote_target
        if self.route_set:
            if self._strict:
                uri = self._strict_ruri()
                out.extend(("Route", r) for r in self.route_set[1:])
                out.append(("Route", f"<{self.remote_target}>"))
            else:
                out.extend(("Route", r) for r in self.route_set)
        out.append(("From", self.local_addr))
        out.append(("To", self.remote_addr))
        out.append(("Call-ID", self.call_id))
        out.append(("CSeq", f"{cseq} {method}"))
        if method in TARGET_REFRESH and self.local_contact:
            out.append(("Contact", self.local_contact))
        out.extend(extra)
        return Request(method, uri, out, body)

    def _check_routes(self) -> None:
        self._strict = False
        if self.route_set:
            try:
                first = SipUri.parse(NameAddr.parse(self.route_set[0]).uri)
            except (SipParseError, UriError):
                return
            self._strict = "lr" not in first.params

    def _strict_ruri(self) -> str:
        uri = SipUri.parse(NameAddr.parse(self.route_set[0]).uri)
        for name in _NOT_IN_RURI:
            uri.params.pop(name, None)
        uri.headers = ""
        return str(uri)

    # -- messages we receive --------------------------------------------------------------
    def receive_request(self, request: Request) -> int | None:
        """Check an in-dialog request (§12.2.2): None if fine, else the status to answer."""
        method = request.method
        if method in ("ACK", "CANCEL"):
            return None
        number = request.cseq[0]
        if self.remote_cseq is not None and number < self.remote_cseq:
            return 500
        self.remote_cseq = number
        if method in TARGET_REFRESH:
            target = _contact_uri(request)
            if target:
                self.remote_target = target
        return None

    def receive_response(self, response: Response) -> None:
        """A response to a request we sent in this dialog (or to the dialog's INVITE)."""
        status = response.status
        method = response.cseq[1]
        if status < 200 or status >= 300:
            return
        if self.state == EARLY and method == "INVITE":
            self.state = CONFIRMED
            routes = response.get_all("Record-Route")
            if self.is_uac:
                routes.reverse()
            self.route_set = routes
            self._check_routes()
        if method in TARGET_REFRESH:
            target = _contact_uri(response)
            if target:
                self.remote_target = target

    def terminate(self) -> None:
        self.state = TERMINATED


@mypyc_attr(allow_interpreted_subclasses=True)  # test subscribers keep early dialogs of their own
class DialogStore:
    """Dialogs by (Call-ID, local tag, remote tag)."""

    __slots__ = ("_dialogs",)

    def __init__(self) -> None:
        self._dialogs: dict[DialogId, Dialog] = {}

    def __len__(self) -> int:
        return len(self._dialogs)

    def __iter__(self) -> Iterator[Dialog]:
        return iter(list(self._dialogs.values()))

    def __contains__(self, dialog: object) -> bool:
        return isinstance(dialog, Dialog) and self._dialogs.get(dialog.id) is dialog

    def add(self, dialog: Dialog) -> None:
        self._dialogs[dialog.id] = dialog

    def remove(self, dialog: Dialog) -> bool:
        """Forget `dialog`; False if it was not stored."""
        if self._dialogs.get(dialog.id) is dialog:
            del self._dialogs[dialog.id]
            return True
        return False

    def get(self, call_id: str, local_tag: str, remote_tag: str) -> Dialog | None:
        return self._dialogs.get((call_id, local_tag, remote_tag))

    def match_request(self, request: Request) -> Dialog | None:
        """The dialog an incoming request belongs to (To tag is ours, From tag theirs)."""
        return self._dialogs.get((request.call_id, request.to.tag or "", request.from_.tag or ""))

    def match_response(self, response: Response) -> Dialog | None:
        """The dialog a response to our request belongs to (From tag ours, To tag theirs)."""
        return self._dialogs.get(
            (response.call_id, response.from_.tag or "", response.to.tag or "")
        )


class Retransmit2xx:
    """Resend a 2xx to an INVITE until its ACK arrives (RFC 3261 §13.3.1.4), sans-IO.

    Resends at T1, 2*T1, 4*T1… capped at T2 after the first send, gives up at 64*T1.
    """

    __slots__ = ("response", "dest", "interval", "deadline", "give_up_at", "t2", "data")

    def __init__(
        self, response: Response, dest: object, now: float, *, t1: float = 0.5,
        t2: float = 4.0, data: object = None,
    ) -> None:
        self.response = response
        self.dest = dest
        self.interval = t1
        self.t2 = t2
        self.give_up_at = now + 64 * t1
        self.deadline: float | None = now + t1
        self.data = data  # for the owner (e.g. the ServerRequest waiting for the ACK)

    @property
    def done(self) -> bool:
        return self.deadline is None

    def on_timer(self, now: float) -> Literal["resend", "give_up", "idle"]:
        deadline = self.deadline
        if deadline is None or now < deadline:
            return "idle"
        if now >= self.give_up_at:
            self.deadline = None
            return "give_up"
        self.interval = min(self.interval * 2, self.t2)
        self.deadline = min(now + self.interval, self.give_up_at)
        return "resend"

    def acknowledge(self) -> None:
        """The ACK came: stop."""
        self.deadline = None
