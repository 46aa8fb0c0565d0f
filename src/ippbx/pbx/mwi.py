"""Message-waiting indication: phones learn about voicemail through SIP events.

A phone asks for its mailbox's state with a SUBSCRIBE for the `message-summary` event
package (RFC 3842) and hears of it in NOTIFYs within the subscription's dialog (RFC
6665). The body is `application/simple-message-summary`: `Messages-Waiting: yes` when
there are new messages, the account to call for them, and the new/old counts.

What a SUBSCRIBE gets here, in this order:

- another event package (or none): 489 with `Allow-Events: message-summary`; a body
  type the phone says it cannot read (`Accept`): 406;
- no or wrong credentials: the digest challenge of `ExtensionAuth`, as for REGISTER;
- the mailbox is the Request-URI's user, else the To user (the account's own user, or
  none at all, means the caller's own mailbox): 404 if no extension has it, 403 if it
  is another extension's;
- `Expires` (absent: 3600) below the minimum: 423 with `Min-Expires`; above the maximum
  it is shortened. Otherwise 200 with the granted `Expires`, a To tag and our Contact;
  the dialog goes into the UA's dialog store, so the phone's refreshes (SUBSCRIBE with
  our tag) come back here as in-dialog requests. A NOTIFY with the state follows at
  once, and after each refresh.

The subscription ends with a NOTIFY saying `terminated`: on `Expires: 0` (a new
SUBSCRIBE with `Expires: 0` is a one-off fetch: 200, then that NOTIFY with
`reason=timeout`), with `reason=timeout` when it runs out without a refresh, with
`reason=rejected` when an extension opens more than `max_per_mailbox` of them (the
oldest goes). A NOTIFY answered 481, 408 or not at all ends it quietly. Subscriptions
live in memory only: after a restart the phones' refreshes get 481 and they subscribe
anew.

`changed(mailbox)` is called when a mailbox's counts change: each live subscription of
that mailbox gets a NOTIFY; a mailbox nobody subscribed to gets, when `unsolicited` is
on, a NOTIFY outside any dialog at each registered contact of its extension (as phones
accept them from Asterisk's `unsolicited` MWI). Counts are read when a NOTIFY is built,
so a NOTIFY says how things are, not how they were.

Every NOTIFY is sent by a task tracked here, one at a time per subscription (or per
unsolicited contact): changes that come while one is out are folded into the next.
Each waits at most `notify_timeout` seconds for its answer; `stop()` cancels them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Coroutine
from typing import Any

from ippbx.pbx.auth import ExtensionAuth
from ippbx.pbx.capabilities import ALLOW_EVENTS
from ippbx.pbx.registrar import Binding, Registrar
from ippbx.sip.dialog import Dialog, DialogError, DialogId
from ippbx.sip.errors import SipParseError
from ippbx.sip.message import Request, Response
from ippbx.sip.ua import UNREACHABLE, ServerRequest, UserAgent
from ippbx.sip.uri import SipUri
from ippbx.sip.wire import Peer

__all__ = ["EVENT", "CONTENT_TYPE", "MessageWaiting", "summary_body", "event_package",
           "accepts_summary", "requested_mailbox"]

log = logging.getLogger(__name__)

EVENT = "message-summary"  # the package of RFC 3842
CONTENT_TYPE = "application/simple-message-summary"
ACCOUNT_USER = "*97"  # the user of `Message-Account`: the number to dial for voicemail

DEFAULT_EXPIRES = 3600
MAX_EXPIRES = 3600
MIN_EXPIRES = 60
MAX_PER_MAILBOX = 4
NOTIFY_TIMEOUT = 10.0  # seconds a NOTIFY may wait for its answer

# a NOTIFY answered so (or not at all) tells that the phone forgot the subscription or
# is gone: RFC 6665 has the notifier remove it
_GONE = frozenset({408, 481})


# -- pure helpers ---------------------------------------------------------------------------
def summary_body(new: int, old: int, account: str) -> bytes:
    """The `application/simple-message-summary` body (RFC 3842) for a mailbox with
    `new` unheard and `old` heard voice messages, none of them urgent."""
    if new < 0 or old < 0:
        raise ValueError(f"message counts cannot be negative: {new}/{old}")
    lines = [
        f"Messages-Waiting: {'yes' if new else 'no'}",
        f"Message-Account: {account}",
        f"Voice-Message: {new}/{old} (0/0)",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


def event_package(value: str | None) -> str:
    """The package named by an `Event` header ("message-summary;id=3" →
    "message-summary"), lower-cased; "" if there is none."""
    if value is None:
        return ""
    return value.partition(";")[0].strip().lower()


def accepts_summary(accept: list[str]) -> bool:
    """Whether the media types of a request's `Accept` (one per item) admit our body
    type; no `Accept` at all means the package's default, which is ours."""
    if not accept:
        return True
    wanted = {CONTENT_TYPE, "application/*", "*/*"}
    return any(item.partition(";")[0].strip().lower() in wanted for item in accept)


def requested_mailbox(request_user: str, to_user: str, account_user: str) -> str:
    """The mailbox a SUBSCRIBE asks about: the Request-URI's user, else the To user;
    "" (the subscriber's own) when both are empty or name the voicemail account."""
    for user in (request_user, to_user):
        if user and user != account_user:
            return user
    return ""


def _user(uri: Callable[[], SipUri]) -> str:
    """The user part of a URI that may fail to parse ("" then, or if it has none)."""
    try:
        return uri().user or ""
    except SipParseError:
        return ""


class _Subscription:
    """One phone's subscription to one mailbox: its dialog and its NOTIFY sender."""

    __slots__ = ("mailbox", "dialog", "event", "expires_at", "timer", "final", "task",
                 "again")

    def __init__(self, mailbox: str, dialog: Dialog, event: str, expires_at: float) -> None:
        self.mailbox = mailbox
        self.dialog = dialog
        self.event = event  # the Event value to echo (an `id` parameter included)
        self.expires_at = expires_at
        self.timer: asyncio.TimerHandle | None = None
        self.final: str | None = None  # the terminated Subscription-State, once ending
        self.task: asyncio.Task[None] | None = None  # the NOTIFY sender, while one runs
        self.again = False  # state changed while a NOTIFY was out: send another after it

    def __repr__(self) -> str:
        return f"<Subscription {self.mailbox} {self.dialog.call_id}>"


class MessageWaiting:
    """The `message-summary` notifier of every extension's mailbox (module docstring)."""

    def __init__(
        self,
        ua: UserAgent,
        auth: ExtensionAuth,
        registrar: Registrar,
        counts: Callable[[str], tuple[int, int]],
        domain: str,
        unsolicited: bool = True,
        clock: Callable[[], float] = time.time,
        *,
        mailboxes: Collection[str],
        account_user: str = ACCOUNT_USER,
        default_expires: int = DEFAULT_EXPIRES,
        max_expires: int = MAX_EXPIRES,
        min_expires: int = MIN_EXPIRES,
        max_per_mailbox: int = MAX_PER_MAILBOX,
        notify_timeout: float = NOTIFY_TIMEOUT,
    ) -> None:
        self.ua = ua
        self.auth = auth
        self.registrar = registrar
        self.counts = counts  # mailbox → (new, old); replaceable
        self.domain = domain
        self.unsolicited = unsolicited
        self.clock = clock
        self.mailboxes = mailboxes  # the mailboxes that exist (one per extension)
        self.account_user = account_user
        self.account = f"sip:{account_user}@{domain}"
        self.default_expires = default_expires
        self.max_expires = max_expires
        self.min_expires = min_expires
        self.max_per_mailbox = max_per_mailbox
        self.notify_timeout = notify_timeout
        self._by_dialog: dict[DialogId, _Subscription] = {}
        self._by_mailbox: dict[str, list[_Subscription]] = {}  # oldest first
        self._pushing: dict[tuple[str, str], bool] = {}  # unsolicited sends: again?
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False

    # -- state, for tests and status --------------------------------------------------------
    def __len__(self) -> int:
        return len(self._by_dialog)

    def subscriptions(self, mailbox: str) -> int:
        return len(self._by_mailbox.get(mailbox, ()))

    @property
    def active_tasks(self) -> int:
        return len(self._tasks)

    async def stop(self) -> None:
        """Cancel every NOTIFY under way and forget the subscriptions (no NOTIFY is sent:
        a phone learns it on its next refresh, 481, and subscribes again)."""
        self._stopped = True
        for sub in list(self._by_dialog.values()):
            self._forget(sub)
            self.ua.forget_dialog(sub.dialog)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._pushing.clear()

    # -- SUBSCRIBE --------------------------------------------------------------------------
    def on_subscribe(self, sr: ServerRequest) -> None:
        """Answer a SUBSCRIBE, new or in one of our subscription dialogs."""
        request = sr.request
        if self._stopped:
            sr.respond(503)
            return
        event = request.get("Event")
        if event_package(event) != EVENT:
            sr.respond(489, headers=[("Allow-Events", ALLOW_EVENTS)])
            return
        assert event is not None
        if not accepts_summary(request.get_all("Accept")):
            sr.respond(406, headers=[("Accept", CONTENT_TYPE)])
            return
        try:
            raw = request.get("Expires")
            asked = int(raw) if raw is not None else self.default_expires
        except ValueError:
            asked = -1
        if asked < 0:
            sr.respond(400, "Bad Expires")
            return
        if sr.dialog is not None:
            self._refresh(sr, asked)
            return
        ext = self.auth.authenticate(sr, proxy=False)
        if ext is None:
            return  # (challenged or refused)
        mailbox = requested_mailbox(_user(request.sip_uri),
                                    _user(lambda: request.to.sip_uri()), self.account_user)
        mailbox = mailbox or ext
        if mailbox not in self.mailboxes:
            sr.respond(404, "No Such Mailbox")
            return
        if mailbox != ext:
            sr.respond(403, "Not Your Mailbox")
            return
        if 0 < asked < self.min_expires:
            sr.respond(423, headers=[("Min-Expires", str(self.min_expires))])
            return
        granted = min(asked, self.max_expires)
        response = sr.respond(200, headers=self._ok_headers(sr, granted))
        try:
            dialog = Dialog.from_uas(request, response, peer=sr.source)
        except (DialogError, SipParseError):
            log.warning("no dialog for the SUBSCRIBE %r", request)
            return
        sub = _Subscription(mailbox, dialog, event, self.clock() + granted)
        if granted == 0:  # a fetch: the state once, then nothing
            sub.final = "terminated;reason=timeout"
            self._kick(sub)
            return
        self.ua.dialogs.add(dialog)
        self._by_dialog[dialog.id] = sub
        subs = self._by_mailbox.setdefault(mailbox, [])
        subs.append(sub)
        self._arm(sub, granted)
        self._kick(sub)
        while len(subs) > self.max_per_mailbox:
            oldest = subs[0]
            log.info("mailbox %s: more than %d subscriptions, ending the oldest", mailbox,
                     self.max_per_mailbox)
            self._end(oldest, "terminated;reason=rejected")

    def _refresh(self, sr: ServerRequest, asked: int) -> None:
        """A SUBSCRIBE in a dialog: a refresh of the subscription, or its end (0)."""
        assert sr.dialog is not None
        sub = self._by_dialog.get(sr.dialog.id)
        if sub is None:  # (another dialog, or a subscription that just ended)
            sr.respond(481, "Subscription Does Not Exist")
            return
        if 0 < asked < self.min_expires:
            sr.respond(423, headers=[("Min-Expires", str(self.min_expires))])
            return
        granted = min(asked, self.max_expires)
        sr.respond(200, headers=self._ok_headers(sr, granted))
        sub.dialog.peer = sr.source  # (a phone over TCP may be on a new connection)
        if granted == 0:
            self._end(sub, "terminated")
            return
        sub.expires_at = self.clock() + granted
        self._arm(sub, granted)
        self._kick(sub)

    def _ok_headers(self, sr: ServerRequest, granted: int) -> list[tuple[str, str]]:
        contact = self.ua.contact_uri(None, sr.source.transport)
        return [("Expires", str(granted)), ("Contact", f"<{contact}>")]

    # -- changes ----------------------------------------------------------------------------
    def changed(self, mailbox: str) -> None:
        """The counts of `mailbox` changed: tell its subscribers, or (unsolicited) the
        phones registered for its extension when nobody subscribed."""
        if self._stopped:
            return
        subs = self._by_mailbox.get(mailbox)
        if subs:
            for sub in list(subs):
                self._kick(sub)
            return
        if not self.unsolicited or mailbox not in self.mailboxes:
            return
        for binding in self.registrar.contacts(mailbox):
            key = (mailbox, binding.contact)
            if key in self._pushing:
                self._pushing[key] = True  # (one is out: another follows it)
            else:
                self._pushing[key] = False
                self._spawn(self._push(key, binding))

    def registered(self, mailbox: str) -> None:
        """A phone of `mailbox`'s extension registered where none was: if the mailbox
        holds messages, its phones hear so (as on a change), not only at the next one."""
        if not self._stopped and self.counts(mailbox) != (0, 0):
            self.changed(mailbox)

    # -- lifetime of a subscription ---------------------------------------------------------
    def _arm(self, sub: _Subscription, seconds: float) -> None:
        if sub.timer is not None:
            sub.timer.cancel()
        sub.timer = asyncio.get_running_loop().call_later(seconds, self._expired, sub)

    def _expired(self, sub: _Subscription) -> None:
        sub.timer = None
        if self._by_dialog.get(sub.dialog.id) is sub:
            log.debug("%r ran out without a refresh", sub)
            self._end(sub, "terminated;reason=timeout")

    def _end(self, sub: _Subscription, state: str) -> None:
        """Close `sub` with a last NOTIFY saying `state`; its dialog goes after it."""
        self._forget(sub)
        sub.final = state
        self._kick(sub)

    def _forget(self, sub: _Subscription) -> None:
        """Out of the tables and no timer (refreshes now get 481); the dialog stays."""
        if self._by_dialog.get(sub.dialog.id) is sub:
            del self._by_dialog[sub.dialog.id]
        subs = self._by_mailbox.get(sub.mailbox)
        if subs is not None:
            with contextlib.suppress(ValueError):
                subs.remove(sub)
            if not subs:
                del self._by_mailbox[sub.mailbox]
        if sub.timer is not None:
            sub.timer.cancel()
            sub.timer = None

    # -- sending NOTIFYs --------------------------------------------------------------------
    def _kick(self, sub: _Subscription) -> None:
        """Have `sub`'s current state sent: now, or after the NOTIFY that is out."""
        if sub.task is not None and not sub.task.done():
            sub.again = True
            return
        sub.task = self._spawn(self._deliver(sub))

    async def _deliver(self, sub: _Subscription) -> None:
        """Send `sub`'s NOTIFYs one after another while its state keeps changing."""
        try:
            while True:
                sub.again = False
                final = sub.final
                state = final or f"active;expires={self._remaining(sub)}"
                request = sub.dialog.create_request(
                    "NOTIFY", self._body(sub.mailbox), self._notify_headers(sub.event, state))
                response = await self._send(request, self.ua.dialog_destination(sub.dialog))
                if final is not None:
                    self.ua.forget_dialog(sub.dialog)
                    return
                if _gone(response):
                    log.info("%r: NOTIFY answered %s, subscription ended", sub,
                             response.status if response is not None else "nothing")
                    self._forget(sub)
                    self.ua.forget_dialog(sub.dialog)
                    return
                if not sub.again:
                    return
        except (Exception, asyncio.CancelledError):  # (stopped, or a bug: leave neither
            self._forget(sub)  # the subscription nor its dialog behind)
            self.ua.forget_dialog(sub.dialog)
            raise

    def _remaining(self, sub: _Subscription) -> int:
        return max(0, round(sub.expires_at - self.clock()))

    async def _push(self, key: tuple[str, str], binding: Binding) -> None:
        """Unsolicited NOTIFYs to one registered contact, while the mailbox changes."""
        mailbox = key[0]
        try:
            while True:
                self._pushing[key] = False
                response = await self._send(self._unsolicited_request(mailbox, binding),
                                            binding.source)
                if response is not None and response.status >= 300:
                    log.debug("unsolicited NOTIFY to %s answered %d", binding.contact,
                              response.status)
                if not self._pushing.get(key):
                    return
        finally:
            self._pushing.pop(key, None)

    def _unsolicited_request(self, mailbox: str, binding: Binding) -> Request:
        transport = binding.source.transport
        return Request("NOTIFY", binding.contact, [
            ("From", f"<{self.account}>;tag={self.ua.new_tag()}"),
            ("To", f"<sip:{mailbox}@{self.domain}>"),
            ("Call-ID", self.ua.new_call_id()),
            ("CSeq", "1 NOTIFY"),
            ("Contact", f"<{self.ua.contact_uri(None, transport)}>"),
            *self._notify_headers(EVENT, None),
        ], self._body(mailbox))

    @staticmethod
    def _notify_headers(event: str, state: str | None) -> list[tuple[str, str]]:
        headers = [("Event", event)]
        if state is not None:
            headers.append(("Subscription-State", state))
        headers.append(("Content-Type", CONTENT_TYPE))
        return headers

    def _body(self, mailbox: str) -> bytes:
        try:
            new, old = self.counts(mailbox)
        except Exception:  # (a broken count source must not end the subscription)
            log.exception("cannot count the messages of mailbox %s", mailbox)
            new, old = 0, 0
        return summary_body(max(0, new), max(0, old), self.account)

    async def _send(self, request: Request, dest: Peer) -> Response | None:
        """Send one NOTIFY; its final answer, or None after `notify_timeout`."""
        try:
            return await asyncio.wait_for(self.ua.request(request, dest), self.notify_timeout)
        except TimeoutError:
            return None

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("message-waiting task failed", exc_info=task.exception())


def _gone(response: Response | None) -> bool:
    """Does this answer to a NOTIFY (None: none came) end the subscription?"""
    if response is None:
        return True
    return response.status in _GONE or (response.status == 503
                                        and response.reason == UNREACHABLE)
