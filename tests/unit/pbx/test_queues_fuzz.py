"""A property test of the call queues: callers join, wait and hang up at random while
agents answer, refuse, ring on, hang up, get paused and sign in.

Queue 6500 (a fresh PBX per example, tests/pbx_stack.py, media on the modelled engine,
the applications and queues wired as the app wires them) has the static agent 1002;
1003 may sign in as a dynamic agent at some point. Callers 1001, 1004 and 1005 call the
queue at random moments and hang up after a while or wait for the end. Hypothesis picks
the strategy, the queue's timings, how each agent's phone behaves (answers at once or
after a while, busy, rings on; hangs up after a while or never) and when 1002 is paused
and unpaused.

Whatever happens: nothing logged at ERROR or with a traceback; every request that
reached ippbx got a final response; no agent rings for two queue calls at once; a paused
agent gets no new offer; in the end the PBX is idle (no call, bridge, task, dialog, leg),
the engine holds no call and the queue nothing (no caller in line, no agent reserved,
no call remembered). Virtual time: waits, ringing and music cost nothing.
`FUZZ_EXAMPLES` sets the number of examples (200 by default). What the property found
is kept as plain examples after it, with two races it can only stumble on: the API
hanging up a waiting caller, and a caller leaving while the engine offers for an agent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import strategies as st
from pbx_stack import EngineModel, Party, Pbx, World, phone_host, until
from sip_net import settled
from test_applications_fuzz import BOUND, MAX_MESSAGES, app_config, app_pbx, left_nothing
from virtual_time import assert_quiet, check_examples, run_example, run_world, unanswered

from ippbx.config import QUEUE_STRATEGIES, Config
from ippbx.pbx.queues import Queues
from ippbx.sip.ua import ServerRequest
from ippbx.store.sqlite import Store

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
CALLERS = ("1001", "1004", "1005")
PAUSE_GRACE = 0.05  # seconds: an offer chosen just before a pause may still go out


@dataclass(frozen=True)
class AgentPhone:
    answer: int | None  # None: rings on until cancelled
    delay: float
    hangs_up: float | None  # seconds into a call it answered (None: never)


@dataclass(frozen=True)
class Scenario:
    strategy: str
    max_wait: int
    ring_seconds: int
    wrapup: int
    phones: tuple[AgentPhone, AgentPhone]  # 1002's, 1003's
    sign_in_at: float | None  # when 1003 signs in (None: never)
    pause: tuple[float, float] | None  # 1002 paused from, until
    # each caller: when it calls, and when it hangs up (None: it waits for the end)
    callers: tuple[tuple[float, float | None], ...]


PHONES = st.builds(AgentPhone, st.sampled_from([200, 200, 200, 486, None]),
                   st.sampled_from([0.0, 0.5, 3.0]), st.sampled_from([None, 1.0, 4.0]))
SCENARIOS = st.builds(
    Scenario,
    strategy=st.sampled_from(QUEUE_STRATEGIES),
    max_wait=st.sampled_from([3, 8, 20]),
    ring_seconds=st.sampled_from([1, 2, 5]),
    wrapup=st.sampled_from([0, 1, 3]),
    phones=st.tuples(PHONES, PHONES),
    sign_in_at=st.sampled_from([None, 0.0, 2.0]),
    pause=st.sampled_from([None, (0.0, 3.0), (1.0, 30.0)]),
    callers=st.lists(st.tuples(st.sampled_from([0.0, 0.1, 1.0, 2.5]),
                               st.sampled_from([None, 0.5, 2.0, 6.0])),
                     min_size=1, max_size=3).map(tuple),
)


class Agent(Party):
    """An agent's phone: answers as told, hangs up after a while, and notes how many
    INVITEs ring it at once and when each came."""

    hangs_up: float | None = None

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.ringing = 0
        self.most_ringing = 0
        self.invited_at: list[float] = []

    async def _new_call(self, sr: ServerRequest) -> None:
        self.invited_at.append(asyncio.get_running_loop().time())
        if self.dialog is not None:  # in a call: busy (no call waiting)
            sr.respond(486)
            return
        self.ringing += 1
        self.most_ringing = max(self.most_ringing, self.ringing)
        try:
            await super()._new_call(sr)
        finally:
            self.ringing -= 1
        if self.hangs_up is not None and self.dialog is not None:
            await asyncio.sleep(self.hangs_up)
            if self.dialog is not None and self.dialog in self.ua.dialogs:
                await self.hangup()


def queue_config(s: Scenario) -> Config:
    data = app_config().model_dump()
    data["queues"] = [{"number": "6500", "strategy": s.strategy, "agents": ["1002"],
                       "dynamic_agents": ["1003"], "max_wait": s.max_wait,
                       "ring_seconds": s.ring_seconds, "wrapup_seconds": s.wrapup,
                       "retry_seconds": 1, "announce_seconds": 2}]
    return Config.model_validate(data)


async def a_caller(world: World, number: str, at: float, hangs_up: float | None) -> None:
    await asyncio.sleep(at)
    caller = await world.phone(number)
    out = await caller.call("6500")
    final = await asyncio.wait_for(out.invite.final(), BOUND)
    if final.status >= 300 or out.invite.dialog is None:
        return
    caller.ua.ack(out.invite.dialog)
    caller.dialog = out.invite.dialog
    if hangs_up is not None:
        await asyncio.sleep(hangs_up)
    else:  # it waits: for the agent's hang-up, the failover's, or at most BOUND
        for _ in range(int(BOUND / 0.25)):  # (a look every 0.25 s: virtual time is cheap,
            if caller.dialog is None:      # loop turns are not)
                break
            await asyncio.sleep(0.25)
    dialog = caller.dialog
    if dialog is not None and dialog in caller.ua.dialogs:
        response = await asyncio.wait_for(caller.ua.request_in_dialog(dialog, "BYE"), BOUND)
        assert response.status in (200, 481), response
        caller.ua.forget_dialog(dialog)
        caller.dialog = None


async def queue_pbx(world: World, config: Config, directory: Path
                    ) -> tuple[Pbx, EngineModel, Store, Queues]:
    """The applications' PBX with the queues wired in as the app wires them."""
    pbx, engine, store = await app_pbx(world, config, directory)
    queues = Queues(pbx.b2bua, config, store, clock=asyncio.get_running_loop().time)
    apps = pbx.b2bua.apps
    assert apps is not None
    apps.queues = queues  # type: ignore[attr-defined]
    apps.agent_code = queues.feature_code  # type: ignore[attr-defined]
    return pbx, engine, store, queues


async def play(world: World, s: Scenario, directory: Path) -> None:
    config = queue_config(s)
    pbx, engine, store, queues = await queue_pbx(world, config, directory)
    loop = asyncio.get_running_loop()
    agents: list[Agent] = []
    for number, behaviour in zip(("1002", "1003"), s.phones, strict=True):
        agent = Agent(world.net, number, phone_host(number), number=number, pbx=pbx.address)
        agent.answer, agent.delay, agent.hangs_up = (
            behaviour.answer, behaviour.delay, behaviour.hangs_up)
        await agent.ua.start()
        world.parties.append(agent)
        assert (await agent.register()).status == 200
        agents.append(agent)
    paused: list[tuple[float, float]] = []

    async def operator() -> None:  # the API's changes, at their moments
        steps: list[tuple[float, str]] = []
        if s.sign_in_at is not None:
            steps.append((s.sign_in_at, "sign in"))
        if s.pause is not None:
            steps += [(s.pause[0], "pause"), (s.pause[1], "unpause")]
        start = loop.time()
        for at, what in sorted(steps):
            await asyncio.sleep(max(0.0, start + at - loop.time()))
            if what == "sign in":
                queues.sign_in("6500", "1003")
            elif what == "pause":
                queues.pause("6500", "1002", True)
                paused.append((loop.time(), float("inf")))
            else:
                queues.pause("6500", "1002", False)
                paused[-1] = (paused[-1][0], loop.time())

    await asyncio.gather(operator(), *(
        a_caller(world, number, at, hangs_up)
        for number, (at, hangs_up) in zip(CALLERS, s.callers, strict=False)))
    for agent in agents:  # (an agent still in a call hangs up now)
        if agent.dialog is not None and agent.dialog in agent.ua.dialogs:
            await agent.hangup()
    await settled(pbx.ua, timeout=BOUND)
    assert unanswered(world.net) == []
    for agent in agents:
        assert agent.most_ringing <= 1, f"{agent.name} rang for two calls at once"
    for start, end in paused:
        late = [t for t in agents[0].invited_at if start + PAUSE_GRACE < t < end]
        assert not late, f"1002 offered calls while paused ({start}-{end}): {late}"
    live = queues.queues["6500"]
    assert live.callers == []
    assert not queues._reserved, queues._reserved
    assert not queues._answered, queues._answered
    queues.stop()
    await left_nothing(pbx, engine, store)


def run(scenario: Scenario, directory: Path) -> None:
    run_example(play, scenario, directory, MAX_MESSAGES)


def test_random_callers_and_agents_of_a_queue_leave_nothing_behind(
        caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    caplog.set_level(logging.WARNING)
    check_examples(lambda s: run(s, Path(tempfile.mkdtemp(dir=tmp_path))), SCENARIOS,
                   examples=EXAMPLES, caplog=caplog)


# -- what the property found, kept as plain examples ----------------------------------------
FOUND = {
    # a caller woke a hair before its deadline (timers fire up to the clock's resolution
    # early) and slept again and again: the loop spun, time never reached the deadline
    "deadline a hair away": Scenario(
        "fewestcalls", 8, 5, 1, (AgentPhone(None, 0.5, 4.0), AgentPhone(486, 0.5, None)),
        None, (1.0, 30.0), ((0.0, 6.0), (0.0, None), (2.5, 6.0))),
    # the same with a retry time, for a caller behind one that was not being offered
    "retry a hair away": Scenario(
        "fewestcalls", 20, 1, 1, (AgentPhone(486, 0.0, None), AgentPhone(486, 0.0, None)),
        2.0, (1.0, 30.0), ((0.0, 2.0), (1.0, 0.5), (1.0, 2.0))),
    # the caller hung up as 1003 answered: the agent's leg had ended before the queue
    # saw the answer, so it was remembered as in a call for good
    "hang-up crossing the answer": Scenario(
        "roundrobin", 20, 5, 0, (AgentPhone(200, 0.0, 1.0), AgentPhone(200, 0.0, 1.0)),
        2.0, (1.0, 30.0), ((2.5, 0.5), (1.0, 2.0), (2.5, 2.0))),
}


@pytest.mark.parametrize("scenario", FOUND.values(), ids=FOUND.keys())
def test_what_the_queue_property_found(scenario: Scenario, caplog: pytest.LogCaptureFixture,
                                       tmp_path: Path) -> None:
    caplog.set_level(logging.WARNING)
    run(scenario, tmp_path)
    assert_quiet(caplog)


def test_a_waiting_caller_hung_up_by_the_api_leaves_the_queue(tmp_path: Path) -> None:
    """The API hangs up a caller waiting in line (no agent signed in): the caller gets a
    BYE, the queue forgets it (it spun in line before: hung up, not yet ended)."""
    world = World()
    scenario = Scenario("ringall", 300, 5, 0, (AgentPhone(200, 0.0, None),) * 2, None, None,
                        ())

    async def body() -> None:
        pbx, engine, store, queues = await queue_pbx(world, queue_config(scenario), tmp_path)
        caller = await world.phone("1001")
        out = await caller.call("6500")
        final = await asyncio.wait_for(out.invite.final(), BOUND)
        assert final.status == 200 and out.invite.dialog is not None
        caller.ua.ack(out.invite.dialog)
        live = queues.queues["6500"]
        await until(lambda: len(live.callers) == 1, "the caller to be in line")
        [call] = pbx.registry.calls()
        pbx.control.hangup(call.callid)
        await caller.wait_for("BYE")
        await until(lambda: not live.callers, "the queue to forget the caller")
        await settled(pbx.ua, timeout=BOUND)
        queues.stop()
        await left_nothing(pbx, engine, store)

    run_world(world, body)


@pytest.mark.parametrize("numbers", [("1002",), ("1002", "1003")], ids=["one", "forked"])
def test_a_caller_leaving_while_the_engine_offers_for_the_agent(
        numbers: tuple[str, ...], caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    """The caller hangs up while rtpengine is still making the offer for an agent's leg
    (one agent: a plain dial; two: forked INVITEs): no agent leg is added to the ended
    call (it crashed with UnknownCall), nothing is left, nothing logged."""
    caplog.set_level(logging.WARNING)
    world = World()
    scenario = Scenario("ringall", 300, 5, 0, (AgentPhone(None, 0.0, None),) * 2, None, None,
                        ())

    async def body() -> None:
        pbx, engine, store, queues = await queue_pbx(world, queue_config(scenario), tmp_path)
        agents = [Agent(world.net, n, phone_host(n), number=n, pbx=pbx.address)
                  for n in numbers]
        for agent in agents:
            await agent.ua.start()
            world.parties.append(agent)
            assert (await agent.register()).status == 200
        if "1003" in numbers:
            queues.sign_in("6500", "1003")
        offering = asyncio.Event()
        plain_offer = engine.offer

        async def slow_offer_for_agents(call_id: str, from_tag: str, sdp: bytes, *,
                                        to_tag: str | None = None) -> bytes:
            if to_tag is not None:  # (the caller's own offer names no callee)
                offering.set()
                await asyncio.sleep(1.0)
            return await plain_offer(call_id, from_tag, sdp, to_tag=to_tag)

        engine.offer = slow_offer_for_agents  # type: ignore[method-assign]
        caller = await world.phone("1001")
        out = await caller.call("6500")
        final = await asyncio.wait_for(out.invite.final(), BOUND)
        assert final.status == 200 and out.invite.dialog is not None
        caller.ua.ack(out.invite.dialog)
        await asyncio.wait_for(offering.wait(), BOUND)
        response = await caller.ua.request_in_dialog(out.invite.dialog, "BYE")
        assert response.status == 200
        caller.ua.forget_dialog(out.invite.dialog)
        live = queues.queues["6500"]
        await until(lambda: not live.callers, "the queue to forget the caller", BOUND)
        await settled(pbx.ua, timeout=BOUND)
        for agent in agents:  # (the offer came back after the caller left)
            assert agent.got("INVITE") == []
        queues.stop()
        await left_nothing(pbx, engine, store)

    run_world(world, body)
    assert_quiet(caplog)
