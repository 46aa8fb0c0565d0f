"""Call queues (ACD): callers wait in line for an agent; agents are offered calls.

A call the dial plan sends to a queue (`ToQueue`) is answered by ippbx (the caller's
audio anchored on the media engine, `Applications.enter`), joins the end of the line and
hears music on hold (the queue's `moh` prompt, else the engine's hold music), told its
place in line on joining and every `announce_seconds` (`announce_position`). Its call
shows `Wait`, its callee the queue (`inbound/query`: `{"queueid"}`).

Agents are the queue's static `agents` and the extensions signed in as dynamic agents
(API `queue/add_dynamicagent`, feature code `*71`); a dynamic agent must be one of
`dynamic_agents` when that list is set. An agent takes a call only when it is *idle*:
registered, not paused (API `queue/pause_agent`, `*73`), in no call of any kind and not
rung for another one, and past its wrap-up (`wrapup_seconds` after its last queue call).
Changes to membership and pauses are kept in the store (they outlive a restart).

The callers are served in order: a caller is offered to an agent only once every caller
ahead of it is being offered already (with two idle agents, the first two callers ring
at once; the third waits). Who rings is the strategy's choice among the idle agents the
caller has not tried yet: `ringall` every one of them at once (the first to answer takes
it), `linear` the first in order (static agents in the file's order, then dynamic ones
in sign-in order), `roundrobin` the one after the last offered, `leastrecent` the one
whose last queue call ended longest ago, `fewestcalls` the one that took fewest, `random`
any. An agent rings `ring_seconds`; if it does not answer, the caller tries the next;
once every idle agent was tried, it waits `retry_seconds` and starts over. The agent that
answers is bridged to the caller (`B2BUA._answered_connected`: the caller's music stops)
and becomes the call's callee, so the reports and `outbound/query` show it.

The caller leaves the line after `max_wait` seconds (or at once when `leave_when_empty`
and no agent is signed in; with `join_empty` off it does not join then) and goes to the
queue's `failover`. Waiting callers are woken by what can free an agent: a call of an
agent ending, an agent registering, signing in or unpausing, a wrap-up ending, another
caller's offer ending. Only the first caller not being offered is woken; it wakes the
next as it starts ringing, so an event costs one look at the agents, not one per caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

from ippbx.config import Config, Queue
from ippbx.media.prompts import find_prompt
from ippbx.pbx import events
from ippbx.pbx.applications import Applications
from ippbx.pbx.b2bua import B2BUA, Bridge
from ippbx.pbx.calls import LegStatus
from ippbx.pbx.dialplan import Feature, ToFeature, ToPaging, ToQueue

log = logging.getLogger(__name__)

MUSIC_TIMES = 1000  # the hold music, over and over, while a caller waits
# The shortest sleep of a waiting caller: asyncio fires a timer up to its clock's
# resolution early, so a caller that slept until its deadline could wake a hair before
# it and sleep again and again (forever on a clock that only moves while the loop idles).
MIN_SLEEP = 0.001  # seconds


class AgentStatus(IntEnum):
    """An agent's state as `queuestatus/query` shows it (the vendors' codes)."""

    UNKNOWN = 0
    IDLE = 1  # "Not In Use"
    IN_USE = 2
    BUSY = 3
    INVALID = 4
    UNAVAILABLE = 5  # not registered
    RINGING = 6
    IN_USE_RINGING = 7
    ON_HOLD = 8
    PAUSED = 9
    WRAPUP = 10


class QueueError(Exception):
    """An agent change that cannot be made; `reason` is one of the constants."""

    NO_QUEUE = "no such queue"
    NO_EXTENSION = "no such extension"
    NOT_ALLOWED = "not one of the queue's dynamic agents"
    WRONG_PASSWORD = "wrong queue password"
    NOT_AGENT = "not an agent of the queue"
    STATIC = "a static agent of the queue"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AgentStore(Protocol):
    """Where membership changes are kept (`store/queue_agents.py`)."""

    def queue_agent_save(self, queue: str, extension: str, dynamic: bool,
                         paused: bool) -> None: ...

    def queue_agent_delete(self, queue: str, extension: str) -> None: ...

    def queue_agents_load(self) -> list[tuple[str, str, bool, bool]]: ...


@dataclass(slots=True)
class Agent:
    extension: str
    dynamic: bool = False
    paused: bool = False
    calls: int = 0  # queue calls it answered
    last_call: float = 0.0  # when its last queue call ended (monotonic; 0: never)
    wrapup_until: float = 0.0


@dataclass(eq=False, slots=True)
class Caller:
    """A call waiting in a queue."""

    bridge: Bridge
    joined: float  # monotonic
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    offering: bool = False  # agents ring for it now
    tried: set[str] = field(default_factory=set)  # agents offered it since the last retry
    retry_at: float = 0.0  # every idle agent tried: when to start over


@dataclass(eq=False)
class LiveQueue:
    """A queue's run-time state: its agents and the callers in line."""

    config: Queue
    agents: dict[str, Agent] = field(default_factory=dict)
    callers: list[Caller] = field(default_factory=list)
    last_offered: str = ""  # (roundrobin)

    @property
    def number(self) -> str:
        return self.config.number


@dataclass(frozen=True, slots=True)
class WaitingCaller:
    callid: str
    from_number: str
    waited: int  # seconds
    position: int


@dataclass(frozen=True, slots=True)
class QueueState:
    """What `queuestatus/query` shows: each agent's state, the callers in line."""

    number: str
    agents: list[tuple[str, AgentStatus]]
    callers: list[WaitingCaller]


class Queues:
    """Every queue of the configuration, live (`Applications.queues`)."""

    def __init__(self, b2bua: B2BUA, config: Config, store: AgentStore | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self.b2bua = b2bua
        self.registry = b2bua.registry
        self.store = store
        self.clock = clock
        self.rng = rng or random.Random()
        self.queues: dict[str, LiveQueue] = {}
        for q in config.queues:
            live = LiveQueue(q)
            live.agents = {ext: Agent(ext) for ext in q.agents}
            self.queues[q.number] = live
        self._moh = {q.number: q.moh for q in config.queues}
        self._prompts = config.media.prompts
        if store is not None:
            self._load(store)
        self._reserved: dict[str, int] = {}  # extension → offers ringing it now
        self._answered: dict[str, tuple[LiveQueue, Agent]] = {}  # agent leg id → its queue
        self._timers: set[asyncio.TimerHandle] = set()
        self.registry.subscribe(self._on_event, events.LegEnded, events.ExtensionRegistration)

    def reconfigure(self, config: Config) -> None:
        """The queues of a new configuration (after the B2BUA's). A queue that stays
        keeps its callers and agents: static agents follow the new list, dynamic ones
        stay signed in while they may (still an extension, still allowed). A new queue
        starts empty; callers of a removed one keep waiting until their `max_wait`."""
        extensions = self.b2bua.extensions
        queues: dict[str, LiveQueue] = {}
        for q in config.queues:
            live = self.queues.get(q.number) or LiveQueue(q)
            live.config = q
            for ext, agent in list(live.agents.items()):
                keep = ext in q.agents if not agent.dynamic else (
                    ext in extensions and self._may_sign_in(live, ext))
                if not keep:
                    del live.agents[ext]
                    if agent.dynamic and self.store is not None:
                        self.store.queue_agent_delete(q.number, ext)
            for ext in q.agents:
                agent = live.agents.get(ext)
                if agent is None:
                    live.agents[ext] = Agent(ext)
                elif agent.dynamic:  # (now a static agent: no longer signed in)
                    agent.dynamic = False
                    if self.store is not None:
                        self.store.queue_agent_delete(q.number, ext)
            queues[q.number] = live
        self.queues = queues
        self._moh = {q.number: q.moh for q in config.queues}
        for live in queues.values():
            self._kick(live)

    def _load(self, store: AgentStore) -> None:
        extensions = self.b2bua.extensions
        for queue, ext, dynamic, paused in store.queue_agents_load():
            live = self.queues.get(queue)
            if live is None or ext not in extensions:
                continue  # (a queue or extension since removed from the file)
            agent = live.agents.get(ext)
            if agent is None and dynamic and self._may_sign_in(live, ext):
                agent = live.agents[ext] = Agent(ext, dynamic=True)
            if agent is not None:
                agent.paused = paused

    # -- membership (the API, feature codes) ---------------------------------------------
    def _queue(self, number: str) -> LiveQueue:
        live = self.queues.get(number)
        if live is None:
            raise QueueError(QueueError.NO_QUEUE)
        return live

    @staticmethod
    def _may_sign_in(live: LiveQueue, ext: str) -> bool:
        allowed = live.config.dynamic_agents
        return not allowed or ext in allowed

    def _extension(self, ext: str) -> None:
        if ext not in self.b2bua.extensions:
            raise QueueError(QueueError.NO_EXTENSION)

    def _check_password(self, live: LiveQueue, password: str | None) -> None:
        if live.config.password and password is not None \
                and password != live.config.password:
            raise QueueError(QueueError.WRONG_PASSWORD)

    def sign_in(self, queue: str, ext: str, password: str | None = None) -> None:
        """Extension `ext` becomes a dynamic agent of `queue` (a no-op if it is an agent
        already). `password`, when given, must be the queue's."""
        live = self._queue(queue)
        self._extension(ext)
        self._check_password(live, password)
        if ext in live.agents:
            return
        if not self._may_sign_in(live, ext):
            raise QueueError(QueueError.NOT_ALLOWED)
        live.agents[ext] = Agent(ext, dynamic=True)
        self._save(live, live.agents[ext])
        log.info("queue %s: agent %s signed in", queue, ext)
        self._kick(live)

    def sign_out(self, queue: str, ext: str, password: str | None = None) -> None:
        """Dynamic agent `ext` leaves `queue` (static agents stay: pause them)."""
        live = self._queue(queue)
        self._extension(ext)
        self._check_password(live, password)
        agent = live.agents.get(ext)
        if agent is None:
            raise QueueError(QueueError.NOT_AGENT)
        if not agent.dynamic:
            raise QueueError(QueueError.STATIC)
        del live.agents[ext]
        if self.store is not None:
            self.store.queue_agent_delete(queue, ext)
        log.info("queue %s: agent %s signed out", queue, ext)

    def pause(self, queue: str, ext: str, paused: bool) -> None:
        """Agent `ext` of `queue` takes no calls from it (`paused`), or takes them again."""
        live = self._queue(queue)
        self._extension(ext)
        agent = live.agents.get(ext)
        if agent is None:
            raise QueueError(QueueError.NOT_AGENT)
        if agent.paused != paused:
            agent.paused = paused
            self._save(live, agent)
            log.info("queue %s: agent %s %s", queue, ext, "paused" if paused else "unpaused")
        if not paused:
            self._kick(live)

    def _save(self, live: LiveQueue, agent: Agent) -> None:
        if self.store is None:
            return
        if agent.dynamic or agent.paused:
            self.store.queue_agent_save(live.number, agent.extension, agent.dynamic,
                                        agent.paused)
        else:  # (a static agent as the file has it)
            self.store.queue_agent_delete(live.number, agent.extension)

    def feature_code(self, code: ToFeature) -> str:
        """A phone's agent code (`*71`-`*74`, for one queue or, alone, every queue it may
        serve): carried out; the prompt confirming it ("invalid": nothing to do)."""
        ext, feature = code.extension, code.feature
        queues = [self.queues[code.target]] if code.target else list(self.queues.values())
        done = False
        for live in queues:
            try:
                if feature is Feature.AGENT_LOGIN:
                    if ext in live.agents or not self._may_sign_in(live, ext):
                        done = done or ext in live.agents
                        continue
                    self.sign_in(live.number, ext)
                elif feature is Feature.AGENT_LOGOUT:
                    agent = live.agents.get(ext)
                    if agent is None or not agent.dynamic:
                        continue
                    self.sign_out(live.number, ext)
                elif ext in live.agents:
                    self.pause(live.number, ext, feature is Feature.AGENT_PAUSE)
                else:
                    continue
                done = True
            except QueueError:
                continue
        if not done:
            return "invalid"
        return {Feature.AGENT_LOGIN: "agent-login", Feature.AGENT_LOGOUT: "agent-logout",
                Feature.AGENT_PAUSE: "agent-paused"}.get(feature, "agent-unpaused")

    # -- state ---------------------------------------------------------------------------
    def agent_status(self, live: LiveQueue, agent: Agent) -> AgentStatus:
        ext = agent.extension
        if agent.paused:
            return AgentStatus.PAUSED
        if not self.b2bua.registrar.contacts(ext):
            return AgentStatus.UNAVAILABLE
        talking = held = ringing = False
        for call in self.registry.by_extension(ext):
            for leg in (*call.legs(), *(call.branches or ())):
                if leg.extension != ext or not leg.live:
                    continue
                if leg.outgoing and leg.answered is None:
                    ringing = True
                elif leg.status is LegStatus.WAIT:
                    held = True
                else:
                    talking = True
        if (talking or held) and ringing:
            return AgentStatus.IN_USE_RINGING
        if held:
            return AgentStatus.ON_HOLD
        if talking:
            return AgentStatus.IN_USE
        if ringing or self._reserved.get(ext):
            return AgentStatus.RINGING
        if agent.wrapup_until > self.clock():
            return AgentStatus.WRAPUP
        return AgentStatus.IDLE

    def state(self, queue: str) -> QueueState:
        live = self._queue(queue)
        now = self.clock()
        return QueueState(
            queue,
            [(a.extension, self.agent_status(live, a)) for a in live.agents.values()],
            [WaitingCaller(c.bridge.call.callid, c.bridge.call.caller.from_number,
                           int(now - c.joined), i + 1)
             for i, c in enumerate(live.callers)])

    def signed_in(self, live: LiveQueue) -> bool:
        """Someone could take a call: an agent that is registered and not paused."""
        registrar = self.b2bua.registrar
        return any(not a.paused and registrar.contacts(a.extension)
                   for a in live.agents.values())

    # -- a caller in line ----------------------------------------------------------------
    async def run(self, apps: Applications, bridge: Bridge, destination: ToQueue | ToPaging,
                  max_forwards: int, depth: int) -> int | None:
        live = self.queues.get(destination.number)
        if live is None:
            return 404
        q = live.config
        callid = bridge.call.callid
        if not q.join_empty and not self.signed_in(live):
            log.info("call %s: queue %s has no agent; not joining", callid, q.number)
            return await apps.go(bridge, self.b2bua.dialplan.resolve(q.failover),
                                 max_forwards, depth)
        status = await apps.enter(bridge)
        if status is not None:
            return status
        call = bridge.call
        self.registry.note(call, application=f"queue:{q.number}")
        self.registry.set_status(call.caller.id, LegStatus.WAIT)
        caller = Caller(bridge, self.clock())
        live.callers.append(caller)
        log.info("call %s: queue %s, caller %d in line", callid, q.number, len(live.callers))
        music = asyncio.ensure_future(self._entertain(apps, live, caller))
        try:
            status = await self._wait(live, caller, max_forwards)
        finally:
            with contextlib.suppress(ValueError):
                live.callers.remove(caller)
            music.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await music
            self._kick(live)
        media = self.b2bua.media
        if media is not None and not bridge.ended:  # (music or a prompt in flight)
            await media.stop_playing(callid, call.caller.id)
        if status is None or bridge.ended:
            return None
        if bridge.gave_up:  # (hung up by the API: the call's task ends it, BYE)
            return status
        self.registry.note(call, application="")
        log.info("call %s: queue %s: %s; failover to %s", callid, q.number,
                 "waited too long" if status == 408 else "no agent", q.failover)
        return await apps.go(bridge, self.b2bua.dialplan.resolve(q.failover), max_forwards,
                             depth)

    async def _entertain(self, apps: Applications, live: LiveQueue, caller: Caller) -> None:
        """Music on hold for a waiting caller, its place in line now and then."""
        media, bridge = self.b2bua.media, caller.bridge
        if media is None:
            return
        q = live.config
        moh = (find_prompt(q.moh, self._prompts) if q.moh else None) or media.moh
        callid, party = bridge.call.callid, bridge.call.caller.id
        while not (bridge.ended or bridge.gave_up):
            if q.announce_position and caller in live.callers:
                position = live.callers.index(caller) + 1
                await apps.play(bridge, ["queue-position", *_digits(position),
                                         "queue-in-line"], keys=False)
            if bridge.ended or not moh:
                return
            await media.play(callid, party, str(moh), MUSIC_TIMES)
            if not q.announce_position or not q.announce_seconds:
                return
            await bridge.pause(float(q.announce_seconds))
            await media.stop_playing(callid, party)

    async def _wait(self, live: LiveQueue, caller: Caller, max_forwards: int) -> int | None:
        """Offer the caller to agents until one answers (None), `max_wait` passes (408),
        the queue empties with `leave_when_empty` (480) or the caller hangs up (487)."""
        bridge, q = caller.bridge, live.config
        deadline = caller.joined + q.max_wait
        while not (bridge.ended or bridge.gave_up):  # (a hang-up sets gave_up first)
            now = self.clock()
            if now >= deadline:
                return 408
            if q.leave_when_empty and not self.signed_in(live):
                return 480
            agents = self._choose(live, caller, now)
            if not agents:  # until woken, its retry is due, or the deadline
                wake_at = min(deadline, caller.retry_at) if caller.retry_at > now \
                    else deadline
                await self._sleep(caller, wake_at - now)
                continue
            status = await self._offer(live, caller, agents,
                                       min(float(q.ring_seconds), deadline - now),
                                       max_forwards)
            if status is None:
                return None
            caller.tried.update(a.extension for a in agents)
        return 487

    def _idle(self, live: LiveQueue) -> list[Agent]:
        return [a for a in live.agents.values()
                if self.agent_status(live, a) is AgentStatus.IDLE]

    def _choose(self, live: LiveQueue, caller: Caller, now: float) -> list[Agent]:
        """The agents to ring for `caller` now (none: not its turn, or nobody idle)."""
        for ahead in live.callers:
            if ahead is caller:
                break
            if not ahead.offering:
                return []  # (a caller ahead of it gets the next idle agent)
        idle = self._idle(live)
        if not idle:
            return []
        untried = [a for a in idle if a.extension not in caller.tried]
        if not untried:  # every idle agent tried: rest `retry_seconds`, then start over
            if not caller.retry_at:
                caller.retry_at = now + live.config.retry_seconds
            if now < caller.retry_at:
                return []
            caller.tried.clear()
            untried = idle
        caller.retry_at = 0.0
        strategy = live.config.strategy
        if strategy == "ringall":
            return untried
        if strategy == "linear":
            return untried[:1]
        if strategy == "leastrecent":
            return [min(untried, key=lambda a: a.last_call)]
        if strategy == "fewestcalls":
            return [min(untried, key=lambda a: a.calls)]
        if strategy == "random":
            return [self.rng.choice(untried)]
        # roundrobin: the first after the last offered, in order
        order = list(live.agents)
        start = order.index(live.last_offered) + 1 if live.last_offered in live.agents else 0
        ranked = sorted(untried, key=lambda a: (order.index(a.extension) - start) % len(order))
        return ranked[:1]

    async def _offer(self, live: LiveQueue, caller: Caller, agents: list[Agent],
                     timeout: float, max_forwards: int) -> int | None:
        """Ring `agents` for the caller: None once one answered (bridged), else the
        failure's status."""
        b2bua, bridge = self.b2bua, caller.bridge
        caller.offering = True
        live.last_offered = agents[-1].extension
        for agent in agents:
            self._reserved[agent.extension] = self._reserved.get(agent.extension, 0) + 1
        self._kick(live)  # (the next caller in line may take another idle agent)
        try:
            attempts = [attempt for agent in agents
                        for attempt in b2bua._extension_attempts(bridge, agent.extension,
                                                                 with_mobile=False)]
            status = await b2bua._ring(bridge, attempts, max_forwards, timeout)
        finally:
            caller.offering = False
            for agent in agents:
                left = self._reserved.get(agent.extension, 0) - 1
                if left > 0:
                    self._reserved[agent.extension] = left
                else:
                    self._reserved.pop(agent.extension, None)
            self._kick(live)
        callee = bridge.call.callee
        if status is not None or callee is None:
            return status if status is not None else 480
        agent = live.agents.get(callee.extension or "")
        if agent is not None:
            agent.calls += 1
            if callee.live:
                self._answered[callee.id] = (live, agent)
            else:  # (a hang-up crossed the answer: its LegEnded has been and gone)
                self._rest(live, agent)
        self.registry.note(bridge.call, application="")  # (its callee is the agent now)
        log.info("call %s: queue %s: agent %s answered", bridge.call.callid, live.number,
                 callee.extension)
        return None

    async def _sleep(self, caller: Caller, seconds: float) -> None:
        """Until the caller is woken (`_kick`), hangs up, or `seconds` pass (MIN_SLEEP at
        least: the caller's loop must never spin)."""
        caller.wake.clear()
        woken = asyncio.ensure_future(caller.wake.wait())
        gone = caller.bridge.abort_event().waiter()
        try:
            await asyncio.wait({woken, gone}, timeout=max(seconds, MIN_SLEEP),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            caller.bridge.stop_waiting(gone)

    def _kick(self, live: LiveQueue) -> None:
        """Something may have freed an agent: the first caller not ringing one looks."""
        for caller in live.callers:
            if not caller.offering:
                caller.wake.set()
                return

    def _kick_agent(self, extensions: Iterable[str]) -> None:
        for live in self.queues.values():
            if live.callers and any(ext in live.agents for ext in extensions):
                self._kick(live)

    # -- what frees agents ---------------------------------------------------------------
    def _on_event(self, event: events.DomainEvent) -> None:
        if isinstance(event, events.LegEnded):
            answered = self._answered.pop(event.leg.id, None)
            if answered is not None:  # an agent's queue call: it rests, then serves again
                self._rest(*answered)
            if event.leg.extension is not None:
                self._kick_agent((event.leg.extension,))
        elif isinstance(event, events.ExtensionRegistration) and event.registered:
            self._kick_agent((event.extension,))

    def _rest(self, live: LiveQueue, agent: Agent) -> None:
        """The agent's queue call ended: wrap-up time, then it serves again."""
        now = self.clock()
        agent.last_call = now
        wrapup = live.config.wrapup_seconds
        if wrapup:
            agent.wrapup_until = now + wrapup
            self._later(wrapup, live)

    def _later(self, seconds: float, live: LiveQueue) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            self._timers.discard(handle)  # type: ignore[arg-type]
            self._kick(live)

        handle = loop.call_later(seconds + 0.01, fire)
        self._timers.add(handle)

    def stop(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()


def _digits(number: int) -> list[str]:
    return [f"digit-{d}" for d in str(number)]
