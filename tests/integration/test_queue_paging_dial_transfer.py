"""Queues and paging groups reached by the API's dial and transfer endpoints, with real
SIP and audio: `queue/dial_outbound` puts the outside party it called in the queue, whose
agent takes it; a blind transfer hands either side of a call to a queue (an agent takes
it) or to a paging group (its member hears the party).

These need the queue and paging applications (`ippbx.pbx.queues`, `ippbx.pbx.paging`):
the module is skipped where they are not there.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from audio_phone import AudioPhone
from pbx_harness import Start, TrunkSpec
from sipp_harness import free_port
from test_applications import TONE_C, rings
from test_media_calls import (
    TONE_A,
    TONE_B,
    hear_each_other,
    hears,
    no_engine_calls,
    start_media_pbx,
)

from ippbx.config import Config

pytest.importorskip("ippbx.pbx.queues")
pytest.importorskip("ippbx.pbx.paging")

QUEUE = {"number": "6800", "name": "support", "agents": ["1003"], "ring_seconds": 10,
         "announce_position": False, "wrapup_seconds": 1}  # (`rings` waits 5 s at most)
PAGING = {"number": "6900", "name": "hall", "members": ["1004"]}


def queue_and_paging(config: Config) -> Config:
    data = config.model_dump()
    data.update(queues=[QUEUE], paging_groups=[PAGING])
    return Config.model_validate(data)


async def test_queue_dial_outbound_puts_the_outside_party_in_the_queue(
        start_pbx: Start, tmp_path: Path) -> None:
    carrier_port = free_port()
    pbx = await start_media_pbx(start_pbx, tmp_path, [TrunkSpec("carrier", carrier_port)],
                                adjust=queue_and_paging)
    carrier = await AudioPhone.carrier(pbx.sip_address, carrier_port, tone=TONE_A)
    agent = await AudioPhone.extension(pbx.sip_address, "1003", tone=TONE_C,
                                       answer_delay=0.5)
    try:
        answer = (await pbx.post("queue/dial_outbound",
                                 {"queueid": "6800", "outto": "95550003333"})).json()
        assert answer["status"] == "Success", answer
        await carrier.wait_established()
        await agent.wait_established()
        await hear_each_other(carrier, TONE_A, agent, TONE_C)
        [leg] = await pbx.outbound()
        assert pbx.app.registry.by_outboundid(leg["outboundid"]).callid == answer["callid"]
        assert (await agent.hangup()).status == 200
        await carrier.wait_ended()
        await no_engine_calls(pbx)
        await pbx.stop()
    finally:
        await carrier.stop()
        await agent.stop()


async def test_either_side_transferred_to_a_queue_or_a_paging_group(
        start_pbx: Start, tmp_path: Path) -> None:
    pbx = await start_media_pbx(start_pbx, tmp_path, adjust=queue_and_paging)
    a = await AudioPhone.extension(pbx.sip_address, "1001", tone=TONE_A)
    b = await AudioPhone.extension(pbx.sip_address, "1002", tone=TONE_B)
    agent = await AudioPhone.extension(pbx.sip_address, "1003", tone=TONE_C,
                                       answer_delay=0.5)
    member = await AudioPhone.extension(pbx.sip_address, "1004")
    try:
        # 1002 hands its caller to the queue (the API): the agent takes it
        assert (await a.call("1002")).status == 200
        [call] = pbx.app.registry.calls()
        answer = (await pbx.post("calltransfer", {"callid": call.callid, "transferor": "1002",
                                                  "transferto": "6800"})).json()
        assert answer == {"status": "Success"}, answer
        await b.wait_ended()
        await agent.wait_established()
        await hear_each_other(a, TONE_A, agent, TONE_C)
        assert (await agent.hangup()).status == 200
        await a.wait_ended()

        # 1001, the caller, hands 1002 to the queue from its phone (REFER)
        assert (await a.call("1002")).status == 200
        await b.wait_established()
        assert (await a.refer("6800")).status == 202
        await a.wait_ended()
        await rings(agent, 2)  # (once its 1 s wrap-up is over)
        await agent.wait_established(timeout=15)
        await hear_each_other(b, TONE_B, agent, TONE_C)
        assert (await b.hangup()).status == 200
        await agent.wait_ended()

        # 1002 hands its caller to the paging group: its member hears 1001
        assert (await a.call("1002")).status == 200
        [call] = pbx.app.registry.calls()
        answer = (await pbx.post("calltransfer", {"callid": call.callid, "transferor": "1002",
                                                  "transferto": "6900"})).json()
        assert answer == {"status": "Success"}, answer
        await b.wait_ended()
        await member.wait_established()
        hears(await member.rtp.record(0.5), TONE_A, "1004")
        assert (await a.hangup()).status == 200
        await member.wait_ended()
        await no_engine_calls(pbx)
        await pbx.stop()
    finally:
        for phone in (a, b, agent, member):
            await phone.stop()
