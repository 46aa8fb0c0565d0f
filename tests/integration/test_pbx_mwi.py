"""Message waiting over loopback: a running ippbx and phones made of ippbx's own UA on
real UDP sockets, subscribing to `message-summary` (RFC 3842 over RFC 6665).

- SUBSCRIBE with digest auth → 200 (Expires, To tag, Contact), then the NOTIFY with the
  state at once; a change of the counts → a NOTIFY saying so; an in-dialog refresh →
  200 and a NOTIFY; `Expires: 0` → the terminated NOTIFY and nothing left at the PBX.
- Refusals: another extension's mailbox 403, an unknown one 404, another event 489
  (with Allow-Events), too short an Expires 423 (with Min-Expires).
- A subscription that is not refreshed ends with `terminated;reason=timeout`; a fetch
  (`Expires: 0` outside a dialog) gets one NOTIFY; past `max_per_mailbox` the oldest
  subscription ends (`reason=rejected`).
- Unsolicited NOTIFYs reach a registered phone that never subscribed; a phone that
  never answers leaves no task behind.
- OPTIONS lists SUBSCRIBE in Allow and `message-summary` in Allow-Events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from mwi_subscriber import Subscriber, state, summary
from pbx_harness import PbxHarness, Start

from ippbx.sip.message import Request
from ippbx.sip.transport import SipTransport
from ippbx.sip.ua import UserAgent
from ippbx.sip.wire import Peer

MakePhone = Callable[[PbxHarness, str], Awaitable[Subscriber]]
ACCOUNT = "sip:*97@ippbx.test"


def pbx_peer(pbx: PbxHarness) -> Peer:
    host, _, port = pbx.sip_address.rpartition(":")
    return Peer(host, int(port))


@pytest.fixture
async def phone() -> AsyncIterator[MakePhone]:
    """`await phone(pbx, "1002")`: a started Subscriber for that extension on a fresh
    loopback port (not registered); stopped after the test."""
    made: list[UserAgent] = []

    async def make(pbx: PbxHarness, number: str) -> Subscriber:
        ua = UserAgent(lambda on_message: SipTransport("127.0.0.1", 0, on_message),
                       user_agent=f"mwi-phone/{number}")
        subscriber = Subscriber(ua, pbx_peer(pbx), number)
        await ua.start()
        made.append(ua)
        return subscriber

    yield make
    for ua in made:
        await ua.stop()


async def eventually(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not check():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def check_notify(notify: Request, *, waiting: str, voice: str, sub_state: str) -> None:
    assert notify.get("Event") == "message-summary", notify
    assert notify.get("Content-Type") == "application/simple-message-summary", notify
    assert state(notify).startswith(sub_state), state(notify)
    assert summary(notify) == {"Messages-Waiting": waiting, "Message-Account": ACCOUNT,
                               "Voice-Message": voice}, notify.body


async def test_subscribe_notify_refresh_unsubscribe(start_pbx: Start, phone: MakePhone) -> None:
    pbx = await start_pbx([])
    mwi = pbx.app.pbx.mwi
    p = await phone(pbx, "1002")
    assert (await p.register()).status == 200

    ok = await p.subscribe(expires=3600)
    assert ok.status == 200, ok
    assert ok.get("Expires") == "3600" and ok.to.tag and ok.get("Contact"), ok
    first = await p.next_notify()
    check_notify(first, waiting="no", voice="0/0 (0/0)", sub_state="active;expires=")
    assert 3590 <= int(state(first).rpartition("=")[2]) <= 3600, state(first)
    assert first.call_id == ok.call_id and first.from_.tag == ok.to.tag
    assert mwi.subscriptions("1002") == 1

    # a voicemail arrives
    mwi.counts = lambda mailbox: (1, 0) if mailbox == "1002" else (0, 0)
    mwi.changed("1002")
    news = await p.next_notify()
    check_notify(news, waiting="yes", voice="1/0 (0/0)", sub_state="active")
    assert news.cseq[0] > first.cseq[0]
    mwi.changed("1001")  # (another mailbox: nothing for this phone)

    # refreshed in its dialog: 200 and the state again
    refreshed = await p.refresh(600)
    assert refreshed.status == 200 and refreshed.get("Expires") == "600", refreshed
    again = await p.next_notify()
    check_notify(again, waiting="yes", voice="1/0 (0/0)", sub_state="active;expires=")
    assert 590 <= int(state(again).rpartition("=")[2]) <= 600, state(again)
    too_short = await p.refresh(10)
    assert too_short.status == 423 and too_short.get("Min-Expires") == "60", too_short
    assert p.unread() == 0

    # unsubscribed: 200, a last NOTIFY, and the PBX keeps nothing
    assert (await p.refresh(0)).status == 200
    last = await p.next_notify()
    check_notify(last, waiting="yes", voice="1/0 (0/0)", sub_state="terminated")
    await eventually(lambda: len(mwi) == 0 and len(pbx.app.pbx.ua.dialogs) == 0,
                     "the subscription to be forgotten")
    await pbx.stop()  # (checks no NOTIFY task is left, before and after stopping)


async def test_refusals(start_pbx: Start, phone: MakePhone) -> None:
    pbx = await start_pbx([])
    p = await phone(pbx, "1001")
    other = await p.subscribe("1002")
    assert other.status == 403, other
    unknown = await p.subscribe("1999")
    assert unknown.status == 404, unknown
    presence = await p.subscribe(event="presence")
    assert presence.status == 489, presence
    assert presence.get("Allow-Events") == "message-summary", presence
    brief = await p.subscribe(expires=10)
    assert brief.status == 423 and brief.get("Min-Expires") == "60", brief
    p.password = "wrong"
    assert (await p.subscribe()).status == 403
    assert p.notifies == [] and len(pbx.app.pbx.mwi) == 0
    await pbx.stop()


async def test_voicemail_account_means_own_mailbox(start_pbx: Start, phone: MakePhone) -> None:
    """A SUBSCRIBE to the voicemail account (sip:*97@…) is one to the caller's mailbox;
    without Expires it gets the default hour."""
    pbx = await start_pbx([])
    p = await phone(pbx, "1003")
    ok = await p.subscribe(uri_user="*97", expires=None)
    assert ok.status == 200 and ok.get("Expires") == "3600", ok
    check_notify(await p.next_notify(), waiting="no", voice="0/0 (0/0)", sub_state="active")
    assert pbx.app.pbx.mwi.subscriptions("1003") == 1
    assert (await p.refresh(0)).status == 200
    assert state(await p.next_notify()) == "terminated"
    await pbx.stop()


async def test_expiry_and_fetch(start_pbx: Start, phone: MakePhone) -> None:
    pbx = await start_pbx([])
    mwi = pbx.app.pbx.mwi
    mwi.min_expires = 1  # (so the test need not wait a minute)
    mwi.counts = lambda mailbox: (2, 5)
    p = await phone(pbx, "1004")

    assert (await p.subscribe(expires=1)).status == 200
    check_notify(await p.next_notify(), waiting="yes", voice="2/5 (0/0)",
                 sub_state="active;expires=1")
    timeout = await p.next_notify(3.0)  # not refreshed: over after a second
    check_notify(timeout, waiting="yes", voice="2/5 (0/0)",
                 sub_state="terminated;reason=timeout")
    await eventually(lambda: len(mwi) == 0 and len(pbx.app.pbx.ua.dialogs) == 0,
                     "the expired subscription to be forgotten")

    fetch = await p.subscribe(expires=0)  # a fetch: the state once, no subscription
    assert fetch.status == 200 and fetch.get("Expires") == "0", fetch
    check_notify(await p.next_notify(), waiting="yes", voice="2/5 (0/0)",
                 sub_state="terminated;reason=timeout")
    assert len(mwi) == 0
    await pbx.stop()


async def test_oldest_subscription_goes(start_pbx: Start, phone: MakePhone) -> None:
    pbx = await start_pbx([])
    mwi = pbx.app.pbx.mwi
    mwi.max_per_mailbox = 2
    p = await phone(pbx, "1005")
    dialogs = []
    for _ in range(2):
        assert (await p.subscribe()).status == 200
        assert state(await p.next_notify()).startswith("active")
        dialogs.append(p.dialog)
    assert (await p.subscribe()).status == 200
    got = [await p.next_notify(), await p.next_notify()]  # (in either order)
    rejected = [n for n in got if state(n) == "terminated;reason=rejected"]
    assert len(rejected) == 1 and rejected[0].call_id == dialogs[0].call_id, got
    assert mwi.subscriptions("1005") == 2
    for dialog in (dialogs[1], p.dialog):
        p.dialog = dialog
        assert (await p.refresh(0)).status == 200
        assert state(await p.next_notify()) == "terminated"
    await eventually(lambda: len(mwi) == 0, "no subscription")
    await pbx.stop()


async def test_unsolicited_notify(start_pbx: Start, phone: MakePhone) -> None:
    """A registered phone that never subscribed hears of its voicemail all the same;
    another extension's phone does not."""
    pbx = await start_pbx([])
    mwi = pbx.app.pbx.mwi
    p = await phone(pbx, "1002")
    bystander = await phone(pbx, "1003")
    for each in (p, bystander):
        assert (await each.register()).status == 200
    mwi.counts = lambda mailbox: (3, 1) if mailbox == "1002" else (0, 0)
    mwi.changed("1002")
    notify = await p.next_notify()
    assert notify.to.tag is None and notify.get("Subscription-State") is None, notify
    assert notify.from_.uri == ACCOUNT and notify.to.uri == "sip:1002@ippbx.test"
    assert summary(notify)["Messages-Waiting"] == "yes"
    assert summary(notify)["Voice-Message"] == "3/1 (0/0)"
    mwi.changed("1004")  # (not registered: nobody to tell)
    await eventually(lambda: mwi.active_tasks == 0, "the NOTIFYs to be answered")
    assert bystander.notifies == []

    mwi.unsolicited = False
    mwi.changed("1002")
    await asyncio.sleep(0.2)
    assert p.unread() == 0 and mwi.active_tasks == 0
    await pbx.stop()


async def test_phone_that_never_answers(start_pbx: Start, phone: MakePhone) -> None:
    """A NOTIFY nobody answers is given up after `notify_timeout`: the subscription
    ends, and neither it nor an unsolicited NOTIFY leaves a task behind."""
    pbx = await start_pbx([])
    mwi = pbx.app.pbx.mwi
    mwi.notify_timeout = 0.5
    p = await phone(pbx, "1002")
    assert (await p.register()).status == 200
    assert (await p.subscribe()).status == 200
    await p.next_notify()
    p.answer = None  # silent from now on
    mwi.changed("1002")
    await p.next_notify()
    await eventually(lambda: len(mwi) == 0 and mwi.active_tasks == 0
                     and len(pbx.app.pbx.ua.dialogs) == 0, "the subscription to be dropped")

    silent = await phone(pbx, "1003")
    assert (await silent.register()).status == 200
    silent.answer = None
    mwi.changed("1003")
    await silent.next_notify()
    assert mwi.active_tasks == 1
    await eventually(lambda: mwi.active_tasks == 0, "the unsolicited NOTIFY to give up")
    await pbx.stop()


async def test_options_advertise_subscribe(start_pbx: Start, phone: MakePhone) -> None:
    pbx = await start_pbx([])
    p = await phone(pbx, "1001")
    request = Request("OPTIONS", f"sip:{pbx.sip_address}", [
        ("From", f"<sip:1001@ippbx.test>;tag={p.ua.new_tag()}"),
        ("To", f"<sip:{pbx.sip_address}>"),
        ("Call-ID", p.ua.new_call_id()),
        ("CSeq", "1 OPTIONS"),
    ])
    answer = await asyncio.wait_for(p.ua.request(request, pbx_peer(pbx)), 5)
    assert answer.status == 200, answer
    assert "SUBSCRIBE" in answer.get_all("Allow"), answer
    assert answer.get_all("Allow-Events") == ["message-summary"], answer
    await pbx.stop()
