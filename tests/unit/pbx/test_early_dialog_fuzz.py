"""A property test of the B2BUA's early dialogs: reliable provisional responses and PRACK
(RFC 3262), UPDATE (RFC 3311) and INFO (RFC 6086) before the answer, and the caller's
BYE in its early dialog (RFC 3261 §15), hammered with random but well-formed SIP.

Extension 1001 calls 9 + a number out through the trunk `carrier` (tests/pbx_stack.py,
a fresh PBX for each example). Hypothesis picks the caller's INVITE (with or without
SDP, with `Supported: 100rel`, `Require: 100rel` or neither, PRACKing each reliable 1xx
at once or not at all), the carrier's provisional answers (180/183, reliable or not,
with or without SDP, in its own early dialog or in another To tag's, as a forking
carrier sends them), its final answer (200 with or without SDP, 486, 503, none: the
no-answer timer ends the call) and what it does with a CANCEL (487, or ignore it), and,
and whether the call's media is anchored on a (modelled) media engine that answers after
a pause; interleaved with those, requests in the early dialogs: from the caller PRACK (naming
our 1xx or not), UPDATE with or without SDP, INFO and BYE, from the carrier UPDATE and
INFO, and the caller's CANCEL. An answered call then gets requests from either side
(re-INVITE with or without SDP, UPDATE with or without SDP, INFO) and is hung up by the
caller, the carrier or both at once.

Whatever happens: no exception and nothing logged at ERROR or with a traceback; every
request that reaches ippbx gets a final response from it (the net's log shows it) and
each request a party sends ends within bounded time; in the end the PBX is idle (no
call, bridge, B2BUA task, dialog, leg or trunk channel: `Pbx.idle()`), its UA holds
nothing (`ua.counts()` all zero), the phone has no dialog left and the carrier no call
up; with anchored media, neither party ever received an SDP but the engine's, and the
engine holds no call.

Each example runs on an event loop whose clock jumps to the next timer whenever nothing
is ready (the in-memory net never needs waiting for), so the SIP timers (T1 = 5 ms,
64*T1 = 0.32 s), the no-answer timer and the B2BUA's CANCEL grace cost no wall-clock
time and nothing depends on the machine's speed. A loop left with nothing to wait for
(every task blocked, no timer set: a hang) fails the example. `FUZZ_EXAMPLES` sets the
number of examples (60 by default).
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass

import pytest
from hypothesis import strategies as st
from pbx_stack import (
    CARRIER,
    ENGINE_HOST,
    PBX,
    SDP_HEADERS,
    EngineModel,
    Outgoing,
    Party,
    Pbx,
    World,
    make_sdp,
    pbx_config,
    phone_host,
    until,
)
from sip_net import T1, FakeNet, settled
from virtual_time import assert_quiet, check_examples, run_world, unanswered

from ippbx.pbx.media_anchor import MediaAnchor
from ippbx.sip.dialog import CONFIRMED, EARLY, TERMINATED, Dialog
from ippbx.sip.message import Request, Response, make_response
from ippbx.sip.reliable import rseq_of
from ippbx.sip.ua import ServerRequest

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
NUMBER = "5551234"  # dialled as 9 + NUMBER
NO_ANSWER = 0.4  # seconds the PBX lets the carrier ring
BOUND = 10.0  # seconds (virtual) anything may take: above the B2BUA's CANCEL grace (2 s)
DTMF = (b"Signal=5\r\nDuration=160\r\n", [("Content-Type", "application/dtmf-relay")])


# -- what hypothesis picks ------------------------------------------------------------------
@dataclass(frozen=True)
class Ring:
    """A 1xx of the carrier (`fork`: with a To tag of another branch than its own)."""

    status: int
    reliable: bool
    sdp: bool
    fork: bool


@dataclass(frozen=True)
class FromCaller:
    """A request of the caller in its early dialog: PRACK (naming our last reliable 1xx),
    PRACK-old / PRACK-cseq (a wrong RAck), UPDATE, UPDATE-sdp, INFO, BYE."""

    method: str


@dataclass(frozen=True)
class FromCarrier:
    """A request of the carrier in its early dialog: UPDATE, UPDATE-sdp, INFO."""

    method: str


@dataclass(frozen=True)
class Cancel:
    """The caller's CANCEL."""


Step = Ring | FromCaller | FromCarrier | Cancel


@dataclass(frozen=True)
class Scenario:
    offer: bool  # the caller's INVITE has SDP
    rel: str  # "", "Supported" or "Require": its 100rel
    pracks: bool  # the caller PRACKs each reliable 1xx as it comes
    steps: tuple[tuple[Step, float], ...]  # each with the pause after it (seconds)
    final: int | None  # the carrier's final answer (None: it rings on)
    final_sdp: bool  # its 200 has SDP
    on_cancel: int | None  # its answer to a CANCEL (None: it ignores it)
    # once answered: requests in the call, (who, method) with the pause after each
    # (INVITE, INVITE-nosdp, UPDATE, UPDATE-sdp, INFO), then who hangs up: "caller",
    # "carrier" or "both" (their BYEs crossing)
    after: tuple[tuple[tuple[str, str], float], ...]
    bye_by: str
    # the call's media anchored on an engine (EngineModel) whose answers take this long
    # (seconds), None: SDP passes end to end
    engine_delay: float | None = None


@st.composite
def a_step(draw: st.DrawFn) -> Step:
    kind = draw(st.sampled_from(["ring", "ring", "ring", "caller", "caller", "carrier",
                                 "cancel"]))
    if kind == "ring":
        return Ring(draw(st.sampled_from([180, 183])), draw(st.booleans()),
                    draw(st.booleans()), draw(st.sampled_from([False, False, True])))
    if kind == "caller":
        return FromCaller(draw(st.sampled_from(
            ["PRACK", "PRACK-old", "PRACK-cseq", "UPDATE", "UPDATE-sdp", "INFO", "BYE"])))
    if kind == "carrier":
        return FromCarrier(draw(st.sampled_from(["UPDATE", "UPDATE-sdp", "INFO"])))
    return Cancel()


GAPS = st.sampled_from([0.0, 0.0, 0.001, 0.005, 0.02])
SCENARIOS = st.builds(
    Scenario,
    offer=st.booleans(),
    rel=st.sampled_from(["", "Supported", "Require"]),
    pracks=st.sampled_from([True, True, True, False]),
    steps=st.lists(st.tuples(a_step(), GAPS), max_size=8).map(tuple),
    final=st.sampled_from([200, 200, 486, 503, None]),
    final_sdp=st.booleans(),
    on_cancel=st.sampled_from([487, 487, 487, None]),
    after=st.lists(st.tuples(st.tuples(
        st.sampled_from(["caller", "carrier"]),
        st.sampled_from(["INVITE", "INVITE-nosdp", "UPDATE", "UPDATE-sdp", "INFO"])), GAPS),
        max_size=3).map(tuple),
    bye_by=st.sampled_from(["caller", "carrier", "both"]),
    engine_delay=st.sampled_from([None, None, 0.0, 0.002, 0.03]),
)


def sdps_to(net: FakeNet, host: str) -> list[bytes]:
    """Every SDP body the net carried to `host`."""
    return [m.body for _, dest, m in net.log
            if dest.host == host and m.body and b"v=0" in m.body]


# -- the parties ----------------------------------------------------------------------------
class Scripted(Party):
    """A Party that answers an UPDATE's offer with its SDP (a Party answers every UPDATE
    200 without one) and notes whether a re-INVITE of its own is out."""

    reinviting = False

    async def _on_request(self, sr: ServerRequest) -> None:
        if sr.request.method != "UPDATE" or not sr.request.body:
            await super()._on_request(sr)
            return
        self.requests.append(sr)
        self.version += 1
        sr.respond(200, body=make_sdp(self.name, self.host, self.version),
                   headers=SDP_HEADERS)

    def early(self) -> Dialog | None:
        """Its early dialog with ippbx, if it has one now."""
        raise NotImplementedError


class Caller(Scripted):
    """Extension 1001's phone, which PRACKs each reliable 1xx if told (with its SDP
    answer to an offer in it)."""

    out: Outgoing  # its call
    rseq = 0  # the RSeq of the last reliable 1xx
    answered = False  # it sent its SDP answer in a PRACK

    def watch(self, scenario: Scenario) -> None:
        """Take the provisional answers to its INVITE (the last one sent)."""
        out = self.out

        def seen(response: Response) -> None:
            rseq = rseq_of(response)
            if rseq is None:
                return
            self.rseq = rseq
            if scenario.pracks:
                body = b""
                if response.body and not scenario.offer and not self.answered:
                    body, self.answered = self.sdp, True
                out.invite.prack(response, body, SDP_HEADERS if body else ())

        out.invite.on_provisional = seen

    def early(self) -> Dialog | None:  # (ippbx answers with one To tag only)
        early = self.out.invite.early
        if not early:
            return None
        [dialog] = early.values()
        return dialog if dialog.state == EARLY else None


class Carrier(Scripted):
    """The trunk's carrier, answering the PBX's INVITE as the example says: its 1xx (some
    with another To tag, as from another branch of a forking carrier), its final
    answer, and `on_cancel` to a CANCEL (None: it ignores it)."""

    def __init__(self, net: FakeNet, on_cancel: int | None) -> None:
        super().__init__(net, CARRIER.name, CARRIER.host, CARRIER.port)
        self.on_cancel = on_cancel
        self.invite: ServerRequest | None = None
        self.fork_tag = self.ua.new_tag()
        self.fork_rseq = 0

    async def _new_call(self, sr: ServerRequest) -> None:
        self.invite = sr
        while not sr.final_sent and not sr.was_cancelled:
            await asyncio.sleep(T1)
        if not sr.final_sent and self.on_cancel is not None:
            sr.respond(self.on_cancel)

    def provisional(self, ring: Ring) -> None:
        sr = self.invite
        assert sr is not None
        if sr.final_sent:
            return
        body = make_sdp(self.name, self.host) if ring.sdp else b""
        headers = SDP_HEADERS if ring.sdp else []
        if not ring.fork:
            sr.respond(ring.status, headers=headers, body=body, reliable=ring.reliable)
            return
        # another branch of a forking carrier: a 1xx with another To tag (PRACKs and
        # requests in its early dialog get 481 here: no UAS of ours holds that dialog)
        response = make_response(sr.request, ring.status, to_tag=self.fork_tag,
                                 headers=[("Contact", f"<{self.ua.contact_uri()}>"),
                                          *headers], body=body)
        if ring.reliable:
            self.fork_rseq += 1
            response.add("Require", "100rel")
            response.add("RSeq", str(self.fork_rseq))
        self.ua.transport.send(response, sr.source)

    def final(self, scenario: Scenario) -> None:
        sr = self.invite
        assert sr is not None
        if sr.final_sent or scenario.final is None:
            return
        if scenario.final < 300 and scenario.final_sdp:
            sr.respond(scenario.final, body=make_sdp(self.name, self.host), headers=SDP_HEADERS)
        else:
            sr.respond(scenario.final)
        if scenario.final < 300:
            self.dialog = sr.dialog

    def early(self) -> Dialog | None:
        sr = self.invite
        if sr is None or sr.final_sent or sr.dialog is None or sr.dialog.state != EARLY:
            return None
        return sr.dialog


# -- one example ----------------------------------------------------------------------------
def send_in_dialog(party: Scripted, dialog: Dialog | None, what: str,
                   ) -> asyncio.Task[Response | None] | None:
    """Send the request `what` names (METHOD or METHOD-variant) in `dialog`, a task for
    its final response (None: no dialog to send it in, or a re-INVITE while the party's
    last one is not answered: §14.1 allows one at a time). A 2xx to a re-INVITE is ACKed,
    with the party's SDP answer to an offer in it."""
    if dialog is None or dialog.state == TERMINATED or what.startswith("INVITE") \
            and party.reinviting:
        return None
    method, _, variant = what.partition("-")
    body, headers = b"", []
    if method == "PRACK":
        assert isinstance(party, Caller)
        cseq = party.out.invite.request.cseq[0]
        rseq = party.rseq or 1
        rack = {"": f"{rseq} {cseq} INVITE", "old": f"{rseq - 1} {cseq} INVITE",
                "cseq": f"{rseq} {cseq + 1} INVITE"}[variant]
        headers = [("RAck", rack)]
    elif what in ("INVITE", "UPDATE-sdp"):  # (an offer)
        party.version += 1
        body, headers = make_sdp(party.name, party.host, party.version), SDP_HEADERS
    elif method == "INFO":
        body, headers = DTMF

    invite = method == "INVITE"
    party.reinviting = party.reinviting or invite

    async def send() -> Response | None:
        try:
            if dialog.state == TERMINATED:  # (since ended: its INVITE's final answer came)
                return None
            response = await party.ua.request_in_dialog(dialog, method, body, headers)
        finally:
            if invite:
                party.reinviting = False
        if invite and response.status < 300:
            late = not body and bool(response.body)  # its 2xx made the offer
            party.ua.ack(dialog, party.sdp if late else b"", SDP_HEADERS if late else ())
        return response

    return asyncio.ensure_future(send())


async def play(world: World, s: Scenario, stop_at: int | None = None) -> None:
    """Play `s`; with `stop_at`, stop the B2BUA instead of going on, before step
    `stop_at` (len(steps): once the carrier gave its final answer, or, answered, once
    the caller ACKed) and check that the stop left nothing behind."""
    pbx = await world.start_pbx(pbx_config(), no_answer_seconds=NO_ANSWER)
    engine = None
    if s.engine_delay is not None:
        engine = EngineModel(s.engine_delay)
        pbx.b2bua.media = MediaAnchor(engine, "moh.wav", (LookupError,))
    carrier = Carrier(world.net, s.on_cancel)
    phone = Caller(world.net, "1001", phone_host("1001"), number="1001")
    for party in (carrier, phone):
        await party.ua.start()
        world.parties.append(party)

    phone.out = await phone.call("9" + NUMBER, body=None if s.offer else b"",
                                 headers=[(s.rel, "100rel")] if s.rel else [])
    phone.watch(s)
    invite = phone.out.invite
    await until(lambda: carrier.invite is not None, "the carrier's INVITE", BOUND)
    sent: list[asyncio.Task[Response | None]] = []
    for index, (step, gap) in enumerate(s.steps):
        if index == stop_at:
            await stopped(world, pbx, phone, carrier, sent)
            return
        if isinstance(step, Ring):
            carrier.provisional(step)
        elif isinstance(step, FromCaller):
            task = send_in_dialog(phone, phone.early(), step.method)
            sent += [task] if task is not None else []
        elif isinstance(step, FromCarrier):
            task = send_in_dialog(carrier, carrier.early(), step.method)
            sent += [task] if task is not None else []
        else:
            invite.cancel()
        await asyncio.sleep(gap)
    carrier.final(s)

    final = await asyncio.wait_for(invite.final(), BOUND)
    if final.status < 300:
        assert s.final is not None and s.final < 300, final  # (only the carrier's 200)
        assert invite.dialog is not None
        late = bool(final.body) and not s.offer  # the 200's offer: the answer in the ACK
        phone.ua.ack(invite.dialog, phone.sdp if late else b"", SDP_HEADERS if late else ())
        phone.dialog = invite.dialog
        assert carrier.invite is not None
        await asyncio.wait_for(carrier.invite.acked(), BOUND)  # (before it says more)
        if stop_at is not None:
            await stopped(world, pbx, phone, carrier, sent)
            return
        for (who, what), gap in s.after:
            party = phone if who == "caller" else carrier
            task = send_in_dialog(party, party.dialog, what)
            sent += [task] if task is not None else []
            await asyncio.sleep(gap)
        byes = [hang_up(party) for party, who in ((phone, "caller"), (carrier, "carrier"))
                if s.bye_by in (who, "both")]
        await asyncio.wait_for(asyncio.gather(*byes), BOUND)
    for response in await asyncio.wait_for(asyncio.gather(*sent), BOUND):
        assert response is None or response.status >= 200

    await pbx.idle()
    await settled(pbx.ua, timeout=BOUND)
    await until(lambda: not len(phone.ua.dialogs), "the phone to have no dialog", BOUND)
    assert not [d for d in carrier.ua.dialogs if d.state == CONFIRMED]
    assert unanswered(world.net) == []
    if engine is not None:
        # anchored: neither party ever saw an SDP but the engine's, and the engine holds
        # no call once the call is over
        for host in (phone_host("1001"), CARRIER.host):
            seen = sdps_to(world.net, host)
            assert all(ENGINE_HOST.encode() in body for body in seen), (host, seen)
        media = pbx.b2bua.media
        assert media is not None
        await until(lambda: not engine.calls, "the engine's delete", BOUND)
        assert media.held() == 0


async def stopped(world: World, pbx: Pbx, phone: Caller, carrier: Carrier,
                  sent: list[asyncio.Task[Response | None]]) -> None:
    """Stop the B2BUA where the call stands: the caller gets a final answer (or, answered,
    a BYE), the carrier a CANCEL or a BYE, every request an answer; nothing is left in
    the PBX, and neither party keeps a call."""
    await asyncio.wait_for(pbx.b2bua.stop(), BOUND)
    assert len(pbx.registry) == 0 and not pbx.b2bua.bridges
    assert pbx.trunks.in_use == {"carrier": 0}
    await asyncio.wait_for(phone.out.invite.final(), BOUND)
    for response in await asyncio.wait_for(asyncio.gather(*sent), BOUND):
        assert response is None or response.status >= 200
    await settled(pbx.ua, timeout=BOUND)
    await until(lambda: not [d for d in phone.ua.dialogs if d.state == CONFIRMED],
                "the caller's call to end", BOUND)
    await until(lambda: not [d for d in carrier.ua.dialogs if d.state == CONFIRMED],
                "the carrier's call to end", BOUND)
    assert unanswered(world.net) == []


async def hang_up(party: Party) -> None:
    """End an answered call from `party`'s side (if its dialog is still up)."""
    dialog = party.dialog
    if dialog is None or dialog not in party.ua.dialogs:
        return
    response = await party.ua.request_in_dialog(dialog, "BYE")
    assert response.status in (200, 481), response  # (481: the other's BYE crossed it)
    party.ua.forget_dialog(dialog)
    party.dialog = None


def run(scenario: Scenario) -> FakeNet:
    """Play `scenario` on a fresh PBX (and a fresh event loop): the net it ran on."""
    world = World()
    run_world(world, lambda: play(world, scenario))
    return world.net


def test_random_early_dialogs_leave_nothing_behind(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    check_examples(run, SCENARIOS, examples=EXAMPLES, caplog=caplog)


def run_and_stop(scenario_and_stop: tuple[Scenario, int]) -> FakeNet:
    scenario, stop_at = scenario_and_stop
    world = World()
    run_world(world, lambda: play(world, scenario, min(stop_at, len(scenario.steps))))
    return world.net


def test_a_stop_at_any_moment_leaves_nothing_behind(caplog: pytest.LogCaptureFixture) -> None:
    """The same calls, stopped (SIGTERM) before a random step, after the final answer,
    or once answered: the stop hangs each one up whatever its state."""
    caplog.set_level(logging.WARNING)
    check_examples(run_and_stop, st.tuples(SCENARIOS, st.integers(0, 8)),
                   examples=EXAMPLES, caplog=caplog)


# -- what the property found, kept as plain examples ----------------------------------------
def test_a_200_crossing_the_cancel_is_hung_up_in_its_early_dialog(
        caplog: pytest.LogCaptureFixture) -> None:
    """The carrier's two reliable 1xx were PRACKed (CSeq 2 and 3 in its early dialog);
    its 200 crosses our CANCEL: the BYE for it goes on counting in that dialog (CSeq 4).
    The UA used to drop the early dialogs when it sent the CANCEL, so the 200 made a
    fresh dialog whose BYE had CSeq 2: the carrier answered 500 and kept the call up."""
    caplog.set_level(logging.WARNING)
    net = run(Scenario(
        offer=False, rel="", pracks=True,
        steps=((Ring(180, True, False, False), 0.0), (Ring(183, True, False, False), 0.001),
               (Cancel(), 0.001)),
        final=200, final_sdp=False, on_cancel=None, after=(), bye_by="caller"))
    to_carrier = [m for _, dest, m in net.log
                  if dest.host == CARRIER.host and isinstance(m, Request)]
    pracks = [m.cseq[0] for m in to_carrier if m.method == "PRACK"]
    [bye] = [m for m in to_carrier if m.method == "BYE"]
    assert pracks == [2, 3] and bye.cseq[0] == 4
    assert [m.status for src, _, m in net.log if src.host == CARRIER.host
            and isinstance(m, Response) and m.cseq[1] == "BYE"] == [200]
    assert_quiet(caplog)


@pytest.mark.parametrize("scenario", [
    # the carrier declines (486: its early dialog ends) as the caller's UPDATE comes
    Scenario(offer=False, rel="", pracks=True,
             steps=((Ring(180, False, False, False), 0.001), (FromCaller("UPDATE"), 0.0)),
             final=486, final_sdp=False, on_cancel=487, after=(), bye_by="caller"),
    # the caller never PRACKs (504: its early dialog ends; the carrier, CANCELled,
    # ignores it and rings on) and the carrier's INFO comes
    Scenario(offer=True, rel="Require", pracks=False,
             steps=((Ring(180, False, False, False), 0.4), (FromCarrier("INFO"), 0.0)),
             final=None, final_sdp=False, on_cancel=None, after=(), bye_by="caller"),
], ids=["callee-declined", "caller-504"])
def test_a_request_for_an_early_dialog_just_ended_gets_481(
        scenario: Scenario, caplog: pytest.LogCaptureFixture) -> None:
    """The B2BUA relayed an UPDATE or INFO into the other side's early dialog after the
    UA had ended it (the call not over yet): `create_request` raised in the relay task
    (logged "call task failed") and the request never got an answer."""
    caplog.set_level(logging.WARNING)
    net = run(scenario)
    method = "UPDATE" if isinstance(scenario.steps[1][0], FromCaller) else "INFO"
    assert [m.status for src, _, m in net.log if src.host == PBX.host
            and isinstance(m, Response) and m.cseq[1] == method] == [481]
    assert_quiet(caplog)


@pytest.mark.parametrize("engine_delay", [0.002])
def test_an_answer_with_the_engine_as_the_call_fails_leaves_nothing(
    caplog: pytest.LogCaptureFixture, engine_delay: float
) -> None:
    """A reliable 180 offered media (anchored), a later 180's SDP went to the engine as
    its answer, and the 486 ended the call before the engine answered: the anchor kept
    the call as "unanchored" for good (the answer failed once the call was deleted)."""
    caplog.set_level(logging.WARNING)
    plain = Ring(180, False, False, False)
    run(Scenario(offer=False, rel="Supported", pracks=True,
                 steps=((plain, 0.0), (plain, 0.005), (Ring(180, True, True, False), 0.005),
                        (Ring(180, False, True, False), 0.0)),
                 final=486, final_sdp=False, on_cancel=487, after=(), bye_by="caller",
                 engine_delay=engine_delay))
    assert_quiet(caplog)
