"""Message waiting (pbx/mwi.py): the message-summary body and the header helpers as pure
functions, then the notifier on the in-memory network (pbx_stack) where timing matters:
changes while a NOTIFY is out fold into one more, a 481 ends the subscription, `stop()`
leaves nothing, unsolicited NOTIFYs go to every contact of the extension."""

from __future__ import annotations

import asyncio

import pytest
from mwi_subscriber import Subscriber, state, summary
from pbx_stack import PBX, World, pbx_config
from sip_net import until

from ippbx.pbx.mwi import accepts_summary, event_package, requested_mailbox, summary_body


def test_summary_body() -> None:
    assert summary_body(0, 0, "sip:*97@ippbx.test") == (
        b"Messages-Waiting: no\r\n"
        b"Message-Account: sip:*97@ippbx.test\r\n"
        b"Voice-Message: 0/0 (0/0)\r\n")
    assert summary_body(2, 7, "sip:*97@pbx").splitlines() == [
        b"Messages-Waiting: yes", b"Message-Account: sip:*97@pbx", b"Voice-Message: 2/7 (0/0)"]
    # old messages only: nothing is waiting
    assert summary_body(0, 3, "sip:*97@pbx").startswith(b"Messages-Waiting: no\r\n")
    with pytest.raises(ValueError):
        summary_body(-1, 0, "sip:*97@pbx")


def test_event_package() -> None:
    assert event_package("message-summary") == "message-summary"
    assert event_package(" Message-Summary ;id=7") == "message-summary"
    assert event_package("presence") == "presence"
    assert event_package(None) == ""


def test_accepts_summary() -> None:
    assert accepts_summary([])  # (no Accept: the package's default body)
    assert accepts_summary(["application/simple-message-summary"])
    assert accepts_summary(["application/pidf+xml", "Application/*;q=0.5"])
    assert accepts_summary(["*/*"])
    assert not accepts_summary(["application/pidf+xml"])


def test_requested_mailbox() -> None:
    assert requested_mailbox("1002", "1002", "*97") == "1002"
    assert requested_mailbox("1003", "1002", "*97") == "1003"  # (the Request-URI first)
    assert requested_mailbox("", "1002", "*97") == "1002"
    assert requested_mailbox("*97", "*97", "*97") == ""  # the voicemail account: one's own
    assert requested_mailbox("", "", "*97") == ""


async def subscribed(world: World, number: str) -> Subscriber:
    """Extension `number`'s phone, registered and subscribed, its first NOTIFY taken."""
    party = await world.phone(number)
    phone = Subscriber(party.ua, PBX, number)
    assert (await phone.subscribe()).status == 200
    assert state(await phone.next_notify()).startswith("active")
    return phone


async def test_changes_fold_while_a_notify_is_out(world: World) -> None:
    pbx = await world.start_pbx()
    phone = await subscribed(world, "1002")
    counter = {"new": 0}
    pbx.mwi.counts = lambda mailbox: (counter["new"], 0)
    for n in range(1, 6):  # five changes at once: one NOTIFY, with the last counts
        counter["new"] = n
        pbx.mwi.changed("1002")
    await until(lambda: not pbx.mwi.active_tasks, "the NOTIFY to be answered")
    assert [summary(n)["Voice-Message"] for n in phone.notifies[1:]] == ["5/0 (0/0)"]

    counter["new"] = 6
    pbx.mwi.changed("1002")
    await asyncio.sleep(0)  # (its NOTIFY is out, not answered yet)
    assert pbx.mwi.active_tasks == 1 and len(phone.notifies) == 2
    counter["new"] = 7
    pbx.mwi.changed("1002")  # another follows it, once it is answered
    await until(lambda: not pbx.mwi.active_tasks, "the NOTIFYs to be answered")
    assert [summary(n)["Voice-Message"] for n in phone.notifies[2:]] == [
        "6/0 (0/0)", "7/0 (0/0)"]
    cseqs = [n.cseq[0] for n in phone.notifies]
    assert cseqs == sorted(cseqs) and len(set(cseqs)) == len(cseqs)
    assert (await phone.refresh(0)).status == 200
    await until(lambda: not len(pbx.mwi), "the unsubscription")
    await world.settled()


async def test_481_ends_the_subscription(world: World) -> None:
    pbx = await world.start_pbx()
    phone = await subscribed(world, "1003")
    phone.answer = 481  # the phone forgot it
    pbx.mwi.changed("1003")
    await phone.next_notify()
    await until(lambda: not len(pbx.mwi) and not len(pbx.ua.dialogs),
                "the subscription to be dropped")
    assert phone.dialog is not None
    phone.ua.forget_dialog(phone.dialog)
    await world.settled()


async def test_stop_forgets_everything(world: World) -> None:
    pbx = await world.start_pbx()
    phone = await subscribed(world, "1004")
    pbx.mwi.changed("1004")  # (a NOTIFY under way)
    await pbx.mwi.stop()
    assert len(pbx.mwi) == 0 and pbx.mwi.active_tasks == 0 and not len(pbx.ua.dialogs)
    refresh = await phone.refresh(600)
    assert refresh.status == 481, refresh  # (the phone would subscribe anew)
    pbx.mwi.changed("1004")
    assert pbx.mwi.active_tasks == 0


async def test_unsolicited_to_every_contact(world: World) -> None:
    config = pbx_config()
    extensions = [e.model_copy(update={"max_contacts": 2}) if e.number == "1002" else e
                  for e in config.extensions]
    pbx = await world.start_pbx(config.model_copy(update={"extensions": extensions}))
    desk = await world.phone("1002")
    soft = await world.party("1002-soft", "10.0.3.1")
    soft.number, soft.password = "1002", "secret1002"
    assert (await soft.register()).status == 200
    phones = [Subscriber(desk.ua, PBX, "1002"), Subscriber(soft.ua, PBX, "1002")]
    pbx.mwi.counts = lambda mailbox: (1, 0)
    pbx.mwi.changed("1002")
    for phone in phones:
        notify = await phone.next_notify()
        assert summary(notify)["Messages-Waiting"] == "yes"
        assert notify.get("Event") == "message-summary"
    await until(lambda: not pbx.mwi.active_tasks, "the NOTIFYs to be answered")
    await world.settled()
