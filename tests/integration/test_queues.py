"""Call queues with real SIP and audio: callers wait hearing music, agents take calls.

Phones are `AudioPhone`s (each sends a tone of its own); the PBX runs its own rtpengine.
Three callers into a queue with two agents: the first two are put through by the
strategy, the third hears the hold music until an agent is free again (after its
wrap-up), and `queuestatus/query` follows every state on the way. A paused agent gets
nothing, a dynamic agent signed in by the API gets the next call, a caller that waits
`max_wait` goes to the failover, and the agents' feature codes work from the phone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from audio_phone import AudioPhone
from pbx_harness import PbxHarness, Start
from reports_harness import Receiver
from test_applications import TONE_C, hears_sound, reports, rings, until
from test_media_calls import (
    MOH_TONE,
    TONE_A,
    TONE_B,
    hear_each_other,
    no_engine_calls,
    start_media_pbx,
    starts_hearing,
)

from ippbx.config import Config

TONE_D = 1700.0
TONE_E = 2100.0


def with_queue(**queue: Any) -> Callable[[Config], Config]:
    def adjust(config: Config) -> Config:
        data = config.model_dump()
        data["queues"] = [{"number": "6500", "name": "support", "password": "4321",
                           **queue}]
        return Config.model_validate(data)
    return adjust


async def api(pbx: PbxHarness, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = (await pbx.post(endpoint, body)).json()
    return answer


async def agent_states(pbx: PbxHarness) -> dict[str, str]:
    answer = await api(pbx, "queuestatus/query", {"queueid": "6500"})
    assert answer["status"] == "Success", answer
    status = answer["queue"]["queuestatus"]
    return {m["agent"]: m["agentstatus"] for m in status["members"]}


async def caller_count(pbx: PbxHarness) -> int:
    answer = await api(pbx, "queuestatus/query", {"queueid": "6500"})
    count = answer["queue"]["queuestatus"]["callercount"]
    assert isinstance(count, int)  # (a JSON number, as in the vendor's example)
    return count


async def test_three_callers_two_agents_the_third_waits_with_music(
        start_pbx: Start, tmp_path: Path) -> None:
    pbx = await start_media_pbx(start_pbx, tmp_path, adjust=with_queue(
        strategy="linear", agents=["1002", "1003"], wrapup_seconds=2, ring_seconds=5,
        announce_position=True))
    receiver = await Receiver().start()
    await pbx.login(report_port=receiver.port)
    agent_b = await AudioPhone.extension(pbx.sip_address, "1002", tone=TONE_B)
    agent_c = await AudioPhone.extension(pbx.sip_address, "1003", tone=TONE_C)
    first = await AudioPhone.extension(pbx.sip_address, "1001", tone=TONE_A)
    second = await AudioPhone.extension(pbx.sip_address, "1004", tone=TONE_D)
    third = await AudioPhone.extension(pbx.sip_address, "1005", tone=TONE_E)
    try:
        assert await agent_states(pbx) == {"1002": "1", "1003": "1"}
        # linear: the first caller goes to 1002, the second to 1003
        assert (await first.call("6500")).status == 200  # answered by the queue
        await agent_b.wait_established()
        assert (await second.call("6500")).status == 200
        await agent_c.wait_established()
        await hear_each_other(first, TONE_A, agent_b, TONE_B)
        await hear_each_other(second, TONE_D, agent_c, TONE_C)
        assert await agent_states(pbx) == {"1002": "2", "1003": "2"}
        # the third waits: its place in line, then the hold music
        assert (await third.call("6500")).status == 200
        await hears_sound(third)
        await starts_hearing(third, MOH_TONE, timeout=8)
        assert await caller_count(pbx) == 1
        answer = await api(pbx, "queuestatus/query", {"queueid": "6500"})
        [waiting] = answer["queue"]["queuestatus"]["callers"]
        assert waiting["from"] == "1005" and waiting["position"] == "1", waiting
        # the first caller hangs up: 1002 wraps up (2 s), then takes the third
        assert (await first.hangup()).status == 200
        await agent_b.wait_ended()
        assert (await agent_states(pbx))["1002"] == "10"
        assert len(agent_b.incoming) == 1
        await agent_b.wait_established(timeout=8)
        assert len(agent_b.incoming) == 2
        await hear_each_other(third, TONE_E, agent_b, TONE_B)
        assert await caller_count(pbx) == 0
        assert await agent_states(pbx) == {"1002": "2", "1003": "2"}
        # the reports name the agent who answered as the callee
        # (an internal call's ANSWER names both: the answering party first)
        answers = {tuple(r["ext"]["extid"]) for r in reports(receiver, "ANSWER")}
        assert answers >= {("1002", "1001"), ("1003", "1004"), ("1002", "1005")}, answers
        for phone in (second, third):
            assert (await phone.hangup()).status == 200
        await agent_b.wait_ended()
        await agent_c.wait_ended()
        await until(lambda: len(pbx.app.registry) == 0, "no call left")
        await no_engine_calls(pbx)
        await pbx.stop()
    finally:
        for phone in (agent_b, agent_c, first, second, third):
            await phone.stop()
        await receiver.stop()


async def test_paused_dynamic_and_max_wait_failover(start_pbx: Start, tmp_path: Path) -> None:
    pbx = await start_media_pbx(start_pbx, tmp_path, adjust=with_queue(
        strategy="ringall", agents=["1002"], max_wait=3, failover="extension:1005",
        wrapup_seconds=0, announce_position=False))
    await pbx.login()
    agent_b = await AudioPhone.extension(pbx.sip_address, "1002", tone=TONE_B)
    agent_c = await AudioPhone.extension(pbx.sip_address, "1003", tone=TONE_C)
    caller = await AudioPhone.extension(pbx.sip_address, "1001", tone=TONE_A)
    operator = await AudioPhone.extension(pbx.sip_address, "1005", tone=TONE_E)
    try:
        ok = {"status": "Success"}
        assert await api(pbx, "queue/pause_agent", {"queueid": "6500", "extid": "1002"}) == ok
        assert await api(pbx, "queue/add_dynamicagent",
                         {"queueid": "6500", "extid": "1003", "password": "4321"}) == ok
        [queue] = (await api(pbx, "queue/query", {"queueid": "6500"}))["queues"]
        assert queue["agents"] == "1002" and queue["dynamicagents"] == "1003", queue
        assert queue["ringstrategy"] == "Ring All" and queue["maxwaittime"] == "3", queue
        assert await agent_states(pbx) == {"1002": "9", "1003": "1"}
        # the paused agent gets nothing; the dynamic one takes the call
        assert (await caller.call("6500")).status == 200
        await agent_c.wait_established()
        await hear_each_other(caller, TONE_A, agent_c, TONE_C)
        assert agent_b.incoming == []
        assert (await caller.hangup()).status == 200
        await agent_c.wait_ended()
        # 1003 signs out; 1002 is still paused: the caller waits 3 s, then the failover
        assert await api(pbx, "queue/del_dynamicagent",
                         {"queueid": "6500", "extid": "1003", "password": "4321"}) == ok
        assert await agent_states(pbx) == {"1002": "9"}
        assert (await caller.call("6500")).status == 200
        await starts_hearing(caller, MOH_TONE)
        await operator.wait_established(timeout=8)
        await hear_each_other(caller, TONE_A, operator, TONE_E)
        assert agent_b.incoming == [] and len(agent_c.incoming) == 1
        assert (await caller.hangup()).status == 200
        await operator.wait_ended()
        # errors, in the API's envelope
        failed = [
            ("queue/add_dynamicagent", {"queueid": "6500", "extid": "1004",
                                        "password": "0000"}, "10032"),
            ("queue/add_dynamicagent", {"queueid": "6599", "extid": "1004"}, "10013"),
            ("queue/add_dynamicagent", {"queueid": "6500", "extid": "7777"}, "10006"),
            ("queue/del_dynamicagent", {"queueid": "6500", "extid": "1002",
                                        "password": "4321"}, "10006"),  # (a static agent)
            ("queue/del_dynamicagent", {"queueid": "6500", "extid": "1004"}, "10004"),
            ("queue/pause_agent", {"queueid": "6500", "extid": "1004"}, "10006"),
            ("queuestatus/query", {"queueid": "6599"}, "10013"),
            ("queuestatus/query", {}, "10004"),
            ("queue/query", {"queueid": "6599"}, "10013"),
        ]
        for endpoint, body, errno in failed:
            answer = await api(pbx, endpoint, body)
            assert answer == {"status": "Failed", "errno": errno}, (endpoint, body, answer)
        await until(lambda: len(pbx.app.registry) == 0, "no call left")
        await pbx.stop()
    finally:
        for phone in (agent_b, agent_c, caller, operator):
            await phone.stop()


async def test_agent_feature_codes_and_the_xml_status(start_pbx: Start,
                                                      tmp_path: Path) -> None:
    pbx = await start_media_pbx(start_pbx, tmp_path, adjust=with_queue(
        strategy="roundrobin", agents=["1002"], dynamic_agents=["1004"]))
    await pbx.login()
    agent = await AudioPhone.extension(pbx.sip_address, "1004", tone=TONE_D)
    other = await AudioPhone.extension(pbx.sip_address, "1003", tone=TONE_C)
    try:
        async def feature(phone: AudioPhone, code: str) -> None:
            assert (await phone.call(code)).status == 200
            await hears_sound(phone)  # the confirmation
            await phone.wait_ended(timeout=10)

        await feature(agent, "*716500")
        assert (await agent_states(pbx)).get("1004") == "1"
        await feature(agent, "*73")  # paused in every queue it serves
        assert (await agent_states(pbx)).get("1004") == "9"
        await feature(agent, "*74")
        assert (await agent_states(pbx)).get("1004") == "1"
        await feature(other, "*716500")  # not one of the queue's dynamic agents
        assert "1003" not in await agent_states(pbx)
        # the vendor's XML shape: members as items, then callercount
        xml = (await pbx.post("queuestatus/query", "<xml><queueid>6500</queueid></xml>",
                              type="xml")).text
        assert "<queue><queuenumber>6500</queuenumber><queuestatus>" in \
            xml.replace("\n", "").replace(" ", ""), xml
        assert '<item id="1"><agent>1004</agent><agentstatus>1</agentstatus></item>' in \
            xml.replace("\n", "").replace("  ", ""), xml
        assert "<callercount>0</callercount>" in xml, xml
        await feature(agent, "*72")
        assert "1004" not in await agent_states(pbx)
        await pbx.stop()
    finally:
        await agent.stop()
        await other.stop()


async def test_a_caller_hanging_up_in_line_leaves_nothing(start_pbx: Start,
                                                          tmp_path: Path) -> None:
    pbx = await start_media_pbx(start_pbx, tmp_path, adjust=with_queue(
        agents=["1002"], ring_seconds=30))
    await pbx.login()
    agent = await AudioPhone.extension(pbx.sip_address, "1002", tone=TONE_B,
                                       answer_delay=60)
    caller = await AudioPhone.extension(pbx.sip_address, "1001", tone=TONE_A)
    try:
        assert (await caller.call("6500")).status == 200
        await rings(agent)
        assert (await agent_states(pbx)) == {"1002": "6"}
        assert (await caller.hangup()).status == 200
        await until(lambda: agent.cancelled == 1, "the agent's INVITE cancelled")
        await until(lambda: len(pbx.app.registry) == 0, "no call left")
        assert await caller_count(pbx) == 0
        assert await agent_states(pbx) == {"1002": "1"}
        await no_engine_calls(pbx)
        await asyncio.sleep(0)
        await pbx.stop()
    finally:
        await agent.stop()
        await caller.stop()
