"""Register trunks added, changed and deleted while ippbx runs (`siptrunk/add|update|delete`
over real HTTP), against sipp as the provider's registrar on loopback: a new trunk
registers at once, a deleted one unregisters at once, a moved one unregisters where it
was and registers where it is now (docs/runtime-configuration.md, "Trunks").

Each registrar is `pbx_provider_register_unregister.xml` (REGISTER → 401 → 200, then the
same registration's un-REGISTER → 401 → 200) with its messages logged, so the test reads
what ippbx sent and when. Every wait is bounded. (The tests take `sipp` before `start_pbx`,
so a PBX left running by a failed test is stopped while its registrars still answer.)
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from pbx_harness import PbxHarness, Start
from sipp_harness import LoggedMessage, Sipp, SippFactory, SippResult, free_port

from ippbx.pbx.trunks import TrunkStatus

SCENARIO = "pbx_provider_register_unregister.xml"
USER, PASSWORD = "acct7", "provider-pw7"
TRUNK = "provider"
PROMPTLY = 3.0  # seconds: "at once" for a REGISTER on loopback (no retry timer involved)


# -- helpers ----------------------------------------------------------------------------------
async def ok(pbx: PbxHarness, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = (await pbx.post(endpoint, body)).json()
    assert answer["status"] == "Success", (endpoint, body, answer)
    return answer


async def trunk_list(pbx: PbxHarness) -> dict[str, str]:
    """trunklist/query as name → status (the OpenVox list key is `trunkname`)."""
    listed = (await ok(pbx, "trunklist/query", {}))["trunkname"]
    return {t["trunkname"]: t["status"] for t in listed}


async def trunk_id(pbx: PbxHarness, name: str) -> str:
    [trunk] = (await ok(pbx, "siptrunk/query", {"trunkname": name}))["trunks"]
    return str(trunk["id"])


def registrar(sipp: SippFactory, port: int, host: str = "127.0.0.1") -> Sipp:
    """A provider registrar (one registration and its un-REGISTER) at host:port."""
    return sipp(SCENARIO, host=host, port=port, calls=1, trace_msg=True,
                keys={"user": USER, "password": PASSWORD}, sipp_timeout_s=30)


def add_body(port: int) -> dict[str, str]:
    return {"trunkname": TRUNK, "trunktype": "register", "host": "127.0.0.1",
            "port": str(port), "username": USER, "password": PASSWORD}


async def wait_registered(pbx: PbxHarness, timeout: float = PROMPTLY) -> None:
    async def registered() -> bool:
        return (await trunk_list(pbx)).get(TRUNK) == TrunkStatus.REGISTERED.value

    await pbx.wait_for(registered, timeout, f"trunk {TRUNK} to show Registered")


def received_registers(result: SippResult) -> list[LoggedMessage]:
    return [m for m in result.messages()
            if m.direction == "received" and m.first_line.startswith("REGISTER ")]


def expires_of(message: LoggedMessage) -> int:
    """The expiry a REGISTER asks for its contact: the Contact's expires param, else the
    Expires header."""
    contact = message.header("Contact") or message.header("m") or ""
    found = re.search(r";\s*expires\s*=\s*(\d+)", contact, re.I)
    if found is not None:
        return int(found.group(1))
    header = message.header("Expires")
    assert header is not None, f"REGISTER without Contact expires nor Expires:\n{message.text}"
    return int(header)


def user_of(message: LoggedMessage, name: str) -> str:
    value = message.header(name) or ""
    found = re.search(r"sips?:([^@;>]+)@", value)
    return found.group(1) if found is not None else ""


def check_registration(result: SippResult, *, request_uri: str) -> list[LoggedMessage]:
    """The registrar's four REGISTERs: two (401, then credentials) asking for an expiry,
    two asking for none (the un-REGISTER), all from the trunk's user, one Call-ID."""
    registers = received_registers(result)
    assert len(registers) == 4, [m.first_line for m in registers]
    assert [expires_of(m) > 0 for m in registers] == [True, True, False, False], \
        [m.text for m in registers]
    for message in registers:
        assert message.first_line == f"REGISTER {request_uri} SIP/2.0", message.text
        assert user_of(message, "From") == USER and user_of(message, "To") == USER, \
            message.text
    assert len({m.header("Call-ID") for m in registers}) == 1
    assert 'username="' + USER + '"' in (registers[1].header("Authorization") or "")
    assert 'username="' + USER + '"' in (registers[3].header("Authorization") or "")
    return registers


class Catcher(asyncio.DatagramProtocol):
    """A UDP port that answers nothing and records what reaches it."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.received.append(data)


# -- a. siptrunk/add ----------------------------------------------------------------------------
async def test_added_register_trunk_registers_at_once(
    sipp: SippFactory, start_pbx: Start
) -> None:
    port = free_port()
    provider = await registrar(sipp, port).astart()
    pbx = await start_pbx([])
    assert await trunk_list(pbx) == {}

    asked = time.time()
    await ok(pbx, "siptrunk/add", add_body(port))
    await wait_registered(pbx)
    registered_in = time.time() - asked
    assert registered_in < PROMPTLY
    [trunk] = (await ok(pbx, "siptrunk/query", {"trunkname": TRUNK}))["trunks"]
    assert (trunk["trunktype"], trunk["host"], str(trunk["port"]), trunk["username"]) == (
        "register", "127.0.0.1", str(port), USER)

    await pbx.stop()  # (a registered trunk unregisters when ippbx stops)
    result = (await provider.await_result(10)).assert_ok(calls=1)
    registers = check_registration(result, request_uri=f"sip:127.0.0.1:{port}")
    assert registers[0].time - asked < PROMPTLY, registers[0].time - asked


# -- b. siptrunk/delete -------------------------------------------------------------------------
async def test_deleted_register_trunk_unregisters_at_once(
    sipp: SippFactory, start_pbx: Start
) -> None:
    port = free_port()
    provider = await registrar(sipp, port).astart()
    pbx = await start_pbx([])
    await ok(pbx, "siptrunk/add", add_body(port))
    await wait_registered(pbx)

    asked = time.time()
    await ok(pbx, "siptrunk/delete", {"trunkname": TRUNK})
    result = (await provider.await_result(PROMPTLY + 2)).assert_ok(calls=1)
    registers = check_registration(result, request_uri=f"sip:127.0.0.1:{port}")
    assert registers[2].time - asked < PROMPTLY, registers[2].time - asked
    assert await trunk_list(pbx) == {}
    assert (await ok(pbx, "siptrunk/query", {"trunkname": "all"}))["trunks"] == []
    assert pbx.app.pbx.registrations == []
    await pbx.stop()


# -- c. siptrunk/update -------------------------------------------------------------------------
async def test_trunk_moved_to_another_port_unregisters_there_and_registers_here(
    sipp: SippFactory, start_pbx: Start
) -> None:
    old_port, new_port = free_port(), free_port()
    old = await registrar(sipp, old_port).astart()
    new = await registrar(sipp, new_port).astart()
    pbx = await start_pbx([])
    await ok(pbx, "siptrunk/add", add_body(old_port))
    await wait_registered(pbx)

    asked = time.time()
    await ok(pbx, "siptrunk/update", {"id": await trunk_id(pbx, TRUNK), "port": str(new_port)})
    # the old registrar: its registration removed, at the address it was made to
    old_result = (await old.await_result(PROMPTLY + 2)).assert_ok(calls=1)
    old_registers = check_registration(old_result, request_uri=f"sip:127.0.0.1:{old_port}")
    assert old_registers[2].time - asked < PROMPTLY
    # the new one: registered (after the old one unregistered), shown Registered
    await wait_registered(pbx)
    [trunk] = (await ok(pbx, "siptrunk/query", {"trunkname": TRUNK}))["trunks"]
    assert str(trunk["port"]) == str(new_port)

    await pbx.stop()  # (the new registration is removed on stop)
    new_result = (await new.await_result(10)).assert_ok(calls=1)
    new_registers = check_registration(new_result, request_uri=f"sip:127.0.0.1:{new_port}")
    assert old_registers[3].time <= new_registers[0].time, "registered before unregistering"
    assert new_registers[0].time - asked < PROMPTLY
    # a new registration (its own Call-ID), not the old one carried over
    assert new_registers[0].header("Call-ID") != old_registers[0].header("Call-ID")


async def test_trunk_moved_to_another_host_unregisters_at_the_old_host(
    sipp: SippFactory, start_pbx: Start
) -> None:
    old_port, new_port = free_port(), free_port("127.0.0.2")
    old = await registrar(sipp, old_port).astart()
    new = await registrar(sipp, new_port, host="127.0.0.2").astart()
    # whatever arrives at (new host, old port), where a misdirected un-REGISTER lands
    loop = asyncio.get_running_loop()
    stray, catcher = await loop.create_datagram_endpoint(
        Catcher, local_addr=("127.0.0.2", old_port))
    try:
        pbx = await start_pbx([])
        await ok(pbx, "siptrunk/add", add_body(old_port))
        await wait_registered(pbx)

        await ok(pbx, "siptrunk/update", {"id": await trunk_id(pbx, TRUNK),
                                          "host": "127.0.0.2", "port": str(new_port)})
        await wait_registered(pbx, timeout=PROMPTLY + 3)  # (the new host: registered)
        misdirected = [d.split(b"\r\n", 1)[0].decode() for d in catcher.received]
        assert misdirected == [], f"un-REGISTER sent to 127.0.0.2:{old_port}: {misdirected}"
        old_result = (await old.await_result(PROMPTLY)).assert_ok(calls=1)
        check_registration(old_result, request_uri=f"sip:127.0.0.1:{old_port}")
        await pbx.stop()
        new_result = (await new.await_result(10)).assert_ok(calls=1)
        check_registration(new_result, request_uri=f"sip:127.0.0.2:{new_port}")
    finally:
        stray.close()
