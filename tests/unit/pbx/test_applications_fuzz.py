"""A property test of the applications: IVRs, ring groups, voicemail, the mailbox menu
and feature codes, with callers that key, wait and hang up at random.

Extension 1001 calls one of the PBX's numbers (tests/pbx_stack.py, a fresh PBX for each
example, its media anchored on the modelled engine, the applications wired as the app
wires them): the IVR 6000 (options to 1002, the ring group, 1003's mailbox, the IVR
itself, hang-up), the ring group 6300 (1002 and 1003, ring-all or in turn, failing over
to 1003's mailbox), 1002 (forwarding to 1003's mailbox when unanswered), 1003 (its
mailbox when unanswered), `*97` / `*98` (the mailbox menu), a feature code. Hypothesis
picks whether 1002 and 1003 are registered and how their phones answer (at once, after
a while, busy, never), and what the caller does once answered: keys as SIP INFO
(`application/dtmf-relay`), pauses, and whether it hangs up itself (when, or never: the
application or the party it reached ends the call).

Whatever happens: nothing logged at ERROR or with a traceback; every request that
reached ippbx got a final response; in the end the PBX is idle (no call, bridge, task,
dialog, leg: `Pbx.idle()`), the engine holds no call and the anchor nothing, the phones
have no dialog left. Virtual time: the prompts (a second each in the model), the ring
timeouts and the IVR's waits cost nothing. `FUZZ_EXAMPLES` sets the number of examples
(60 by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import strategies as st
from pbx_stack import EngineModel, Party, Pbx, World, pbx_config, phone_host, until
from sip_net import settled
from virtual_time import assert_quiet, check_examples, run_example, run_world, unanswered

from ippbx.config import Config
from ippbx.pbx.applications import KEYS_KEPT, Applications
from ippbx.pbx.extension_features import ExtensionFeatures
from ippbx.pbx.mailboxes import Mailboxes
from ippbx.pbx.media_anchor import MediaAnchor
from ippbx.store.sqlite import Store

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
BOUND = 120.0  # seconds (virtual) a call may take: menus, ring groups, a message
MAX_MESSAGES = 2000  # an example sends a few dozen: more is a storm
WAIT_END = 60.0  # seconds (virtual) a caller that does not hang up waits for the end
KEYS = "0123456789*#"
TARGETS = ["6000", "6000", "6000", "6300", "6300", "6300", "1002", "1002", "1003", "*97",
           "*98", "*78", "*79", "*211003", "*22"]


def app_config() -> Config:
    data = pbx_config().model_dump()
    data["sip"]["no_answer_seconds"] = 3
    for ext in data["extensions"]:
        if ext["number"] == "1002":
            ext.update(forward_noanswer="voicemail:1003", ring_timeout=2)
        if ext["number"] == "1003":
            ext.update(voicemail=True, vm_pin="12", ring_timeout=2)
    data["ivrs"] = [{"number": "6000", "timeout": 2, "repeat": 2, "default": "extension:1003",
                     "options": {"1": "extension:1002", "2": "ringgroup:6300",
                                 "3": "voicemail:1003", "4": "ivr:6000", "5": "hangup"}}]
    data["ring_groups"] = [{"number": "6300", "members": ["1002", "1003"],
                            "strategy": "ringall", "ring_seconds": 4, "member_seconds": 2,
                            "failover": "voicemail:1003"}]
    data["voicemail"] = {"max_seconds": 10}
    return Config.model_validate(data)


@dataclass(frozen=True)
class Phone:
    """How an extension's phone behaves: registered or not, its answer (None: rings on
    until cancelled) after `delay` s, and when it hangs up a call it answered (None:
    never)."""

    registered: bool
    answer: int | None
    delay: float
    hangs_up: float | None


@dataclass(frozen=True)
class Scenario:
    target: str
    strategy: str
    phones: tuple[Phone, Phone]  # 1002's and 1003's
    # once answered: keys (as INFO) or pauses ("" = a pause), each with the wait after it
    steps: tuple[tuple[str, float], ...]
    caller_hangs_up: bool  # at the end of its steps (else it waits for the BYE)


PHONES = st.builds(Phone, st.sampled_from([True, True, True, False]),
                   st.sampled_from([200, 200, 486, None]),
                   st.sampled_from([0.0, 0.5, 5.0]), st.sampled_from([None, 0.5, 3.0]))
SCENARIOS = st.builds(
    Scenario,
    target=st.sampled_from(TARGETS),
    strategy=st.sampled_from(["ringall", "sequential"]),
    phones=st.tuples(PHONES, PHONES),
    steps=st.lists(st.tuples(st.sampled_from(list(KEYS) + ["", ""]),
                             st.sampled_from([0.0, 0.05, 0.5, 1.5, 4.0])),
                   max_size=10).map(tuple),
    caller_hangs_up=st.booleans(),
)


class Callee(Party):
    """1002's or 1003's phone, which may hang up a call it answered after a while."""

    hangs_up: float | None = None

    async def _new_call(self, sr: object) -> None:
        await super()._new_call(sr)  # type: ignore[arg-type]
        if self.hangs_up is not None and self.dialog is not None:
            await asyncio.sleep(self.hangs_up)
            if self.dialog is not None and self.dialog in self.ua.dialogs:
                await self.hangup()


async def app_pbx(world: World, config: Config,
                  directory: Path) -> tuple[Pbx, EngineModel, Store]:
    """The PBX with its media on the modelled engine and the applications wired."""
    pbx = await world.start_pbx(config)  # (its callees ring 3 s: app_config)
    engine = EngineModel(0.001)
    b2bua = pbx.b2bua
    b2bua.media = MediaAnchor(engine, "moh.wav", (LookupError,))
    store = Store(":memory:")
    features = ExtensionFeatures(config, store)
    b2bua.settings = features
    mailboxes = Mailboxes(directory, store)
    b2bua.apps = Applications(b2bua, config, mailboxes, features, lambda call, take: None)
    return pbx, engine, store


async def left_nothing(pbx: Pbx, engine: EngineModel, store: Store) -> None:
    """The PBX idle, the engine holding no call, the anchor nothing; the store closed."""
    await pbx.idle()
    await until(lambda: not engine.calls, "the engine's delete", BOUND)
    media = pbx.b2bua.media
    assert media is not None and media.held() == 0
    store.close()


async def play(world: World, s: Scenario, directory: Path) -> None:
    config = app_config()
    data = config.model_dump()
    data["ring_groups"][0]["strategy"] = s.strategy
    config = Config.model_validate(data)
    pbx, engine, store = await app_pbx(world, config, directory)

    caller = await world.phone("1001")
    for number, behaviour in zip(("1002", "1003"), s.phones, strict=True):
        phone = Callee(world.net, number, phone_host(number), number=number, pbx=pbx.address)
        phone.answer, phone.delay, phone.hangs_up = (
            behaviour.answer, behaviour.delay, behaviour.hangs_up)
        await phone.ua.start()
        world.parties.append(phone)
        if behaviour.registered:
            assert (await phone.register()).status == 200

    out = await caller.call(s.target)
    final = await asyncio.wait_for(out.invite.final(), BOUND)  # (ringing takes a while)
    if final.status < 300 and out.invite.dialog is not None:
        caller.ua.ack(out.invite.dialog)
        caller.dialog = out.invite.dialog
    sent = []
    if final.status < 300:
        for key, pause in s.steps:
            dialog = caller.dialog
            if dialog is None or dialog not in caller.ua.dialogs:
                break
            if key:
                sent.append(asyncio.ensure_future(caller.ua.request_in_dialog(
                    dialog, "INFO", f"Signal={key}\r\nDuration=100\r\n".encode(),
                    [("Content-Type", "application/dtmf-relay")])))
            await asyncio.sleep(pause)
        if not s.caller_hangs_up:  # the application, or the party it reached, ends it
            with contextlib.suppress(AssertionError):  # (or a talk that goes on…)
                await until(lambda: caller.dialog is None, "the call to end", WAIT_END)
        dialog = caller.dialog  # (…until the caller hangs up)
        if dialog is not None and dialog in caller.ua.dialogs:
            response = await asyncio.wait_for(caller.ua.request_in_dialog(dialog, "BYE"),
                                              BOUND)
            assert response.status in (200, 481), response
            caller.ua.forget_dialog(dialog)
            caller.dialog = None
    for party in world.parties:  # (a callee still in a call hangs up now)
        if party is not caller and party.dialog is not None \
                and party.dialog in party.ua.dialogs:
            await party.hangup()
    for response in await asyncio.wait_for(asyncio.gather(*sent), BOUND):
        assert response.status >= 200

    await settled(pbx.ua, timeout=BOUND)
    assert unanswered(world.net) == []
    assert not [p for p in world.parties if p.dialog is not None]
    await left_nothing(pbx, engine, store)


def run(scenario: Scenario, directory: Path) -> None:
    run_example(play, scenario, directory, MAX_MESSAGES)


def test_random_callers_of_the_applications_leave_nothing_behind(
        caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    caplog.set_level(logging.WARNING)
    check_examples(lambda s: run(s, Path(tempfile.mkdtemp(dir=tmp_path))), SCENARIOS,
                   examples=EXAMPLES, caplog=caplog)


# -- what the property found, kept as plain examples ----------------------------------------
def test_a_ring_group_call_that_lasts_refreshes_its_sessions_calmly(
        caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    """Ring-all, 1002 answers, nobody hangs up for a minute: the forked INVITEs asked
    for no session interval of their own (`b_asked` stayed 0), so the callee's session
    timer had none, and ippbx re-INVITEd it back to back for ever (a storm)."""
    caplog.set_level(logging.WARNING)
    ringing = Phone(True, None, 0.0, None)
    answers = Phone(True, 200, 0.5, None)
    run(Scenario("6300", "ringall", (answers, ringing), (("", 1.0),), False), tmp_path)
    assert_quiet(caplog)


def test_a_caller_that_never_acks_the_menus_answer_is_hung_up(tmp_path: Path) -> None:
    """ippbx answered for the IVR; the caller never ACKs: its dialog is ended (BYE), as
    for a call a party answered, and nothing is left."""
    world = World()

    async def body() -> None:
        pbx, engine, store = await app_pbx(world, app_config(), tmp_path)
        caller = await world.phone("1001")
        out = await caller.call("6000")
        final = await asyncio.wait_for(out.invite.final(), BOUND)
        assert final.status == 200  # (and no ACK from us)
        await caller.wait_for("BYE")
        await left_nothing(pbx, engine, store)

    run_world(world, body)


def test_a_flood_of_keys_is_answered_and_kept_bounded(tmp_path: Path) -> None:
    """A caller sends 300 keys (SIP INFO) while the mailbox menu speaks: each is
    answered, at most KEYS_KEPT wait for the application, the call ends cleanly."""
    world = World()

    async def body() -> None:
        pbx, engine, store = await app_pbx(world, app_config(), tmp_path)
        caller = await world.phone("1001")
        out = await caller.call("*97")
        final = await asyncio.wait_for(out.final(), BOUND)
        assert final.status == 200 and caller.dialog is not None
        dialog = caller.dialog
        answers = await asyncio.gather(*(
            caller.ua.request_in_dialog(dialog, "INFO", b"Signal=5\r\n",
                                        [("Content-Type", "application/dtmf-relay")])
            for _ in range(300)))
        assert {r.status for r in answers} == {200}
        [bridge] = pbx.b2bua.bridges.values()
        assert bridge.digits is not None and bridge.digits.qsize() <= KEYS_KEPT
        await caller.hangup()
        await left_nothing(pbx, engine, store)

    run_world(world, body)
