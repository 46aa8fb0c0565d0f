"""Simulated endpoints without sockets: a phone and the carrier on an in-memory network.

The phone dials the carrier directly (no PBX, no digest challenge), so each carrier
behaviour (answer, busy, never answer, hang up first) and each caller habit (talk time,
giving up while ringing, stopping) can be checked on its own, with short timings.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable

import pytest
from sip_net import FakeNet, FakeTransport, Msg

from ippbx.sandbox.carrier import Carrier, CarrierBehaviour
from ippbx.sandbox.endpoint import AnswerPlan, CallOutcome, answer_direction, make_sdp
from ippbx.sandbox.phones import Phone, PhoneBehaviour
from ippbx.sip.message import Response
from ippbx.sip.wire import Peer

QUICK = CarrierBehaviour(busy_rate=0, no_answer_rate=0, ring=(0.01, 0.02),
                         post_dial=(0.01, 0.02), hangup_rate=0, hold=(0.05, 0.06))


CARRIER = Peer("127.0.0.1", 5080)


@pytest.fixture
async def net() -> FakeNet:
    return FakeNet()


@pytest.fixture
async def make(net: FakeNet) -> AsyncIterator[Callable[..., object]]:
    started: list[Phone | Carrier] = []

    async def make_pair(behaviour: CarrierBehaviour = QUICK) -> tuple[Phone, Carrier]:
        carrier = Carrier(seed=1, behaviour=behaviour, transport=lambda cb: FakeTransport(
            net, CARRIER.host, CARRIER.port, cb))
        phone = Phone("1001", "secret1001", CARRIER, "ippbx.test", seed=1,
                      behaviour=PhoneBehaviour(ring=(0.01, 0.02), decline_rate=0,
                                               ignore_rate=0, hangup_rate=0),
                      transport=lambda cb: FakeTransport(net, "127.0.0.1", 40001, cb))
        for endpoint in (carrier, phone):
            await endpoint.start()
            started.append(endpoint)
        carrier.connect(Peer("127.0.0.1", 40001))  # the carrier calls the phone directly
        return phone, carrier

    yield make_pair
    for endpoint in started:
        await endpoint.stop()


def sent(net: FakeNet, first_line: str) -> list[Msg]:
    return net.sent(lambda m: m.start_line().startswith(first_line))


async def idle(*endpoints: Phone | Carrier) -> None:
    for _ in range(200):
        if not any(e.ua.counts()["dialogs"] or e.calls_in_progress for e in endpoints):
            return
        await asyncio.sleep(0.01)
    raise AssertionError([e.ua.counts() for e in endpoints])


async def test_answered_caller_hangs_up(make: Callable[..., object], net: FakeNet) -> None:
    phone, carrier = await make()  # type: ignore[misc]
    outcome = await phone.call("5551234", talk=0.05)
    assert outcome == CallOutcome(200, True, "caller") and outcome.category == "answered"
    invite = sent(net, "INVITE sip:5551234@ippbx.test")[0]
    assert invite.get("Content-Type") == "application/sdp" and b"m=audio" in invite.body
    assert (invite.get("User-Agent") or "").startswith("ippbx-sandbox-phone")
    assert [m.start_line() for m in net.sent(lambda m: isinstance(m, Response))
            if isinstance(m, Response) and m.status > 100][:2] == [
        "SIP/2.0 180 Ringing", "SIP/2.0 200 OK"]
    assert sent(net, "ACK ") and sent(net, "BYE ")
    assert carrier.received == 1
    await idle(phone, carrier)


async def test_callee_hangs_up_first(make: Callable[..., object]) -> None:
    behaviour = CarrierBehaviour(busy_rate=0, no_answer_rate=0, ring=(0.01, 0.02),
                                 hangup_rate=1.0, hold=(0.02, 0.03))
    phone, carrier = await make(behaviour)  # type: ignore[misc]
    assert await phone.call("5551234", talk=5) == CallOutcome(200, True, "callee")
    await idle(phone, carrier)


async def test_busy(make: Callable[..., object], net: FakeNet) -> None:
    phone, carrier = await make(CarrierBehaviour(busy_rate=1.0, no_answer_rate=0,
                                                 post_dial=(0.01, 0.02)))  # type: ignore[misc]
    outcome = await phone.call("5551234", talk=5)
    assert outcome.status == 486 and outcome.category == "busy"
    assert not sent(net, "SIP/2.0 180")  # busy without ringing
    await idle(phone, carrier)


async def test_caller_gives_up_on_a_call_never_answered(
    make: Callable[..., object], net: FakeNet
) -> None:
    phone, carrier = await make(CarrierBehaviour(busy_rate=0, no_answer_rate=1.0))  # type: ignore[misc]
    outcome = await phone.call("5551234", talk=5, patience=0.1)
    assert outcome.status == 487 and outcome.category == "abandoned"
    assert sent(net, "CANCEL ") and sent(net, "SIP/2.0 487")
    await idle(phone, carrier)


async def test_stopping_hangs_up_calls_in_progress(make: Callable[..., object],
                                                   net: FakeNet) -> None:
    phone, carrier = await make()  # type: ignore[misc]
    call = asyncio.ensure_future(phone.call("5551234", talk=60))
    for _ in range(100):
        if sent(net, "ACK "):
            break
        await asyncio.sleep(0.01)
    phone.stopping.set()
    carrier.stopping.set()
    assert await asyncio.wait_for(call, 2) == CallOutcome(200, True, "caller")
    await idle(phone, carrier)


async def test_carrier_calls_the_phone_which_answers_reinvites(
    make: Callable[..., object], net: FakeNet
) -> None:
    phone, carrier = await make()  # type: ignore[misc]
    call = asyncio.ensure_future(carrier.call("0612345678", "5550100", talk=0.3))
    for _ in range(100):
        if phone.ua.dialogs and sent(net, "ACK "):
            break
        await asyncio.sleep(0.01)
    dialog = next(iter(carrier.ua.dialogs))
    hold = make_sdp(9, "127.0.0.1", 4000, "sendonly")
    answer = await carrier.ua.request_in_dialog(
        dialog, "INVITE", hold, [("Content-Type", "application/sdp")])
    carrier.ua.ack(dialog)
    assert answer.status == 200 and b"a=recvonly" in answer.body
    assert await asyncio.wait_for(call, 2) == CallOutcome(200, True, "caller")
    invite = sent(net, "INVITE sip:5550100@127.0.0.1:40001")[0]
    assert invite.from_.uri == "sip:0612345678@127.0.0.1:5080"
    await idle(phone, carrier)


def test_sdp_and_directions() -> None:
    sdp = make_sdp(3, "127.0.0.1", 20002)
    lines = sdp.decode().split("\r\n")
    assert lines[0] == "v=0" and lines[-1] == "" and "m=audio 20002 RTP/AVP 0 8 101" in lines
    assert "c=IN IP4 127.0.0.1" in lines and "a=sendrecv" in lines
    assert answer_direction(make_sdp(1, "h", 2, "sendonly")) == "recvonly"
    assert answer_direction(make_sdp(1, "h", 2, "recvonly")) == "sendonly"
    assert answer_direction(make_sdp(1, "h", 2, "inactive")) == "inactive"
    assert answer_direction(b"v=0\r\n") == "sendrecv"


@pytest.mark.parametrize(("status", "answered", "category"), [
    (200, True, "answered"), (486, False, "busy"), (600, False, "busy"),
    (487, False, "abandoned"), (480, False, "no answer"), (408, False, "no answer"),
    (603, False, "no answer"), (404, False, "failed"), (503, False, "failed"),
])
def test_outcome_categories(status: int, answered: bool, category: str) -> None:
    assert CallOutcome(status, answered).category == category


def test_behaviour_draws() -> None:
    rng = random.Random(5)
    plans = [CarrierBehaviour().draw(rng) for _ in range(3000)]
    busy = sum(p.final == 486 for p in plans) / len(plans)
    never = sum(p.final == 0 for p in plans) / len(plans)
    assert busy == pytest.approx(0.15, abs=0.03) and never == pytest.approx(0.10, abs=0.03)
    answered = [p for p in plans if p.final == 200]
    assert all(1.0 <= p.ring <= 4.0 and p.alert for p in answered)
    assert sum(p.hold is not None for p in answered) / len(answered) == pytest.approx(
        0.3, abs=0.04)
    assert PhoneBehaviour().draw(random.Random(1), auto_answer=True).ring == 0.0
    assert PhoneBehaviour(decline_rate=1.0).draw(random.Random(1)) == AnswerPlan(
        ring=pytest.approx(1.3, abs=1.2), final=486)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        CarrierBehaviour(busy_rate=0.7, no_answer_rate=0.5)
    with pytest.raises(ValueError):
        CarrierBehaviour(hangup_rate=2)
