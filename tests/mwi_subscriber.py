"""A phone's side of message waiting, for tests: ippbx's own `UserAgent` subscribing to
`message-summary` (RFC 3842) at the PBX and keeping the NOTIFYs it gets.

    phone = Subscriber(ua, pbx_peer, "1002")        # takes over ua.on_request
    assert (await phone.register()).status == 200
    assert (await phone.subscribe()).status == 200  # answers the 401 with its password
    notify = await phone.next_notify()
    assert summary(notify)["Messages-Waiting"] == "no"
    await phone.refresh(0)                          # the terminated NOTIFY follows

The first NOTIFY follows the 200 at once and is often handled before the code waiting
for that 200 runs (a subscriber must take a NOTIFY that comes first, RFC 6665, and make
the dialog from it): the UA's dialog store is replaced by one that does so for a
SUBSCRIBE still waiting for its answer. NOTIFYs
are answered `answer` (200; None: never), out-of-dialog (unsolicited) ones too; one that
says `terminated` ends the subscription's dialog here.
"""

from __future__ import annotations

import asyncio

from sip_net import register_request

from ippbx.pbx.auth import next_attempt
from ippbx.sip.dialog import Dialog, DialogStore
from ippbx.sip.digest import answer_challenge
from ippbx.sip.headers import NameAddr
from ippbx.sip.message import Request, Response
from ippbx.sip.ua import ServerRequest, UserAgent
from ippbx.sip.wire import Peer

DOMAIN = "ippbx.test"
EVENT = "message-summary"
WAIT = 5.0  # seconds any one exchange may take


def summary(notify: Request) -> dict[str, str]:
    """The fields of a simple-message-summary body ({"Messages-Waiting": "yes", …})."""
    fields: dict[str, str] = {}
    for line in notify.body.decode().split("\r\n"):
        name, colon, value = line.partition(":")
        if colon:
            fields[name.strip()] = value.strip()
    return fields


def state(notify: Request) -> str:
    return notify.get("Subscription-State") or ""


class EarlyNotifyDialogs(DialogStore):
    """A dialog store that makes the subscriber's dialog from a NOTIFY coming before
    the 200 to its SUBSCRIBE (`pending`: the SUBSCRIBEs out, by Call-ID and From tag)."""

    def __init__(self, peer: Peer) -> None:
        super().__init__()
        self.peer = peer
        self.pending: dict[tuple[str, str], Request] = {}

    def match_request(self, request: Request) -> Dialog | None:
        dialog = super().match_request(request)
        if dialog is not None or request.method != "NOTIFY":
            return dialog
        subscribe = self.pending.get((request.call_id, request.to.tag or ""))
        if subscribe is None or not request.from_.tag:
            return None
        contacts = request.get_all("Contact")
        dialog = Dialog(
            call_id=request.call_id, local_tag=request.to.tag or "",
            remote_tag=request.from_.tag, local_addr=subscribe.get("From") or "",
            remote_addr=request.get("From") or "", local_cseq=subscribe.cseq[0],
            remote_cseq=None,
            remote_target=NameAddr.parse(contacts[0]).uri if contacts else request.from_.uri,
            route_set=request.get_all("Record-Route"), secure=False, is_uac=True,
            local_contact=subscribe.get("Contact"), peer=self.peer)
        self.add(dialog)
        return dialog


class Subscriber:
    """Extension `number`'s phone as far as message waiting goes (module docstring)."""

    def __init__(self, ua: UserAgent, pbx: Peer, number: str, password: str | None = None,
                 domain: str = DOMAIN) -> None:
        self.ua = ua
        self.pbx = pbx
        self.number = number
        self.password = password if password is not None else f"secret{number}"
        self.domain = domain
        self.dialogs = EarlyNotifyDialogs(pbx)
        ua.dialogs = self.dialogs
        ua.on_request = self._on_request
        self.answer: int | None = 200  # the answer to NOTIFYs (None: none at all)
        self.notifies: list[Request] = []  # every NOTIFY, in order
        self._queue: asyncio.Queue[Request] = asyncio.Queue()
        self.dialog: Dialog | None = None  # the current subscription's
        self.ended: set[tuple[str, str, str]] = set()  # dialogs a NOTIFY terminated

    # -- requests we get ------------------------------------------------------------------
    def _on_request(self, sr: ServerRequest) -> None:
        request = sr.request
        if request.method != "NOTIFY":
            sr.respond(405, headers=[("Allow", "NOTIFY")])
            return
        self.notifies.append(request)
        self._queue.put_nowait(request)
        if self.answer is None:
            return
        sr.respond(self.answer)
        if sr.dialog is not None and state(request).startswith("terminated"):
            self.ended.add(sr.dialog.id)
            self.ua.forget_dialog(sr.dialog)
            if sr.dialog is self.dialog:
                self.dialog = None

    async def next_notify(self, timeout: float = WAIT) -> Request:
        """The next NOTIFY not yet taken (waiting for it)."""
        return await asyncio.wait_for(self._queue.get(), timeout)

    def unread(self) -> int:
        return self._queue.qsize()

    # -- requests we send -----------------------------------------------------------------
    async def _authenticated(self, request: Request) -> tuple[Request, Response]:
        """Send `request`, answering one 401 with our password: the last one sent and
        its final response."""
        response = await asyncio.wait_for(self.ua.request(request, self.pbx), WAIT)
        if response.status != 401:
            return request, response
        retry = next_attempt(request)
        retry.set("Authorization", answer_challenge(
            response.get("WWW-Authenticate") or "", request.method, request.uri,
            self.number, self.password))
        self._pending(retry)
        return retry, await asyncio.wait_for(self.ua.request(retry, self.pbx), WAIT)

    def _pending(self, request: Request) -> None:
        if request.method == "SUBSCRIBE":
            self.dialogs.pending[(request.call_id, request.from_.tag or "")] = request

    async def register(self, expires: int = 300) -> Response:
        request = register_request(self.ua, self.number, self.domain, expires)
        return (await self._authenticated(request))[1]

    async def subscribe(self, mailbox: str = "", expires: int | None = 3600,
                        event: str = EVENT, uri_user: str | None = None) -> Response:
        """SUBSCRIBE to `mailbox` (default: ours), its user in the Request-URI (or
        `uri_user`) and the To; on a 2xx the subscription's dialog is `self.dialog`."""
        mailbox = mailbox or self.number
        target = f"sip:{mailbox}@{self.domain}"
        uri = f"sip:{uri_user}@{self.domain}" if uri_user is not None else target
        request = Request("SUBSCRIBE", uri, [
            ("From", f"<sip:{self.number}@{self.domain}>;tag={self.ua.new_tag()}"),
            ("To", f"<{target}>"),
            ("Call-ID", self.ua.new_call_id()),
            ("CSeq", "1 SUBSCRIBE"),
            ("Contact", f"<{self.ua.contact_uri(self.number)}>"),
            ("Event", event),
            ("Accept", "application/simple-message-summary"),
            *([("Expires", str(expires))] if expires is not None else []),
        ])
        self._pending(request)
        try:
            sent, response = await self._authenticated(request)
        finally:
            for key in [k for k in self.dialogs.pending if k[0] == request.call_id]:
                del self.dialogs.pending[key]
        if 200 <= response.status < 300 and response.to.tag:
            key = (sent.call_id, sent.from_.tag or "", response.to.tag)
            dialog = self.dialogs.get(*key)
            if dialog is None and key not in self.ended:  # (not over before its 200)
                dialog = Dialog.from_uac(sent, response, peer=self.pbx)
                self.dialogs.add(dialog)
            if dialog is not None and expires != 0:
                self.dialog = dialog
        return response

    async def refresh(self, expires: int, event: str = EVENT) -> Response:
        """SUBSCRIBE again in the subscription's dialog (0: unsubscribe)."""
        assert self.dialog is not None, "no subscription"
        return await asyncio.wait_for(self.ua.request_in_dialog(
            self.dialog, "SUBSCRIBE", headers=[("Event", event), ("Expires", str(expires))]),
            WAIT)
