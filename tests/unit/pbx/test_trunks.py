"""Trunks (pbx/trunks.py): which trunk a request comes from (its source address), where
calls to a trunk go, and channel counting against `max_channels` — on the class itself,
then end to end through the B2BUA over the in-memory network (pbx_stack)."""

from __future__ import annotations

import pytest
from pbx_stack import CARRIER, SECOND, TrunkSpec, World, pbx_config, until

from ippbx.config import Config, parse_config
from ippbx.pbx.calls import CallRegistry, Leg, LegKind
from ippbx.pbx.trunks import Trunks, TrunkStatus
from ippbx.sip.wire import Peer

NUMBER = "5551234"  # dialled as 9 + NUMBER

TRUNKS = """
[api]
password = "apipass"
[[trunks]]
name = "alpha"
host = "192.0.2.10"
[[trunks]]
name = "beta"
host = "192.0.2.10"
port = 5080
max_channels = 2
[[trunks]]
name = "gamma"
type = "register"
host = "sip.example.net"
username = "u"
password = "p"
[[trunks]]
name = "secure"
host = "tls.example.net"
transport = "tls"
"""


@pytest.fixture
def config() -> Config:
    return parse_config(TRUNKS)


# -- the class -------------------------------------------------------------------------------
def matched(trunks: Trunks, host: str, port: int, from_user: str = "0612345678",
            is_extension: bool = False) -> str | None:
    """The name of the trunk a request from host:port is taken to come from."""
    trunk = trunks.match_source(Peer(host, port), from_user, is_extension)
    return trunk.name if trunk is not None else None


def test_a_source_is_matched_by_address_and_port_then_by_address(config: Config) -> None:
    trunks = Trunks(config)
    assert matched(trunks, "192.0.2.10", 5060) == "alpha"
    assert matched(trunks, "192.0.2.10", 5080) == "beta"
    # another port of a trunk's address: its first trunk, unless the sender claims to be
    # one of our extensions (a phone behind the carrier's NAT address)
    assert matched(trunks, "192.0.2.10", 40000) == "alpha"
    assert matched(trunks, "192.0.2.10", 40000, "1001", is_extension=True) is None
    assert matched(trunks, "192.0.2.10", 5080, "1001", is_extension=True) == "beta"
    # anyone else is no trunk (not even on a trunk's port), whatever it claims
    assert matched(trunks, "198.51.100.7", 5060) is None
    assert matched(trunks, "192.0.2.11", 5080, "") is None


async def test_resolve_matches_sources_by_the_resolved_address(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    addresses = {"sip.example.net": "203.0.113.5", "tls.example.net": "203.0.113.6"}

    async def fake_resolve(host: str, port: int) -> str | None:
        return addresses.get(host, host if host[0].isdigit() else None)

    monkeypatch.setattr("ippbx.pbx.trunks.resolve_host", fake_resolve)
    trunks = Trunks(config)
    assert matched(trunks, "203.0.113.5", 5060) is None  # not resolved yet
    await trunks.resolve()
    assert matched(trunks, "203.0.113.5", 5060) == "gamma"
    assert matched(trunks, "192.0.2.10", 5080) == "beta"  # (an address stays as it is)
    gamma, secure = trunks.get("gamma"), trunks.get("secure")
    assert gamma is not None and secure is not None
    assert trunks.destination(gamma) == Peer("203.0.113.5", 5060, "udp")
    # over TLS by its name, so the carrier's certificate is checked against it
    assert trunks.destination(secure) == Peer("tls.example.net", 5061, "tls")
    addresses.clear()  # a name that no longer resolves keeps the last address
    await trunks.resolve()
    assert trunks.destination(gamma).host == "203.0.113.5"


def test_destination_and_status_before_resolving(config: Config) -> None:
    trunks = Trunks(config)
    assert [t.name for t in trunks.all()] == ["alpha", "beta", "gamma", "secure"]
    assert trunks.get("nope") is None
    beta = trunks.get("beta")
    assert beta is not None and trunks.destination(beta) == Peer("192.0.2.10", 5080, "udp")
    assert trunks.status == {"alpha": TrunkStatus.UNKNOWN, "beta": TrunkStatus.UNKNOWN,
                             "gamma": TrunkStatus.REGISTERING,
                             "secure": TrunkStatus.UNKNOWN}


def test_channels_are_counted_from_the_registry(config: Config) -> None:
    trunks = Trunks(config)
    registry = CallRegistry()
    trunks.track(registry)
    beta, alpha = trunks.get("beta"), trunks.get("alpha")
    assert beta is not None and alpha is not None
    # an inbound call on beta takes one channel; an outbound leg through it another
    inbound = registry.start_call(Leg(LegKind.TRUNK, "0612345678", "5550100", trunk="beta"),
                                  "5550100")
    assert trunks.in_use["beta"] == 1 and trunks.has_capacity(beta)
    ext_call = registry.start_call(Leg(LegKind.EXTENSION, "1001", "95551234",
                                       extension="1001"), "95551234")
    out_leg = Leg(LegKind.TRUNK, "1001", NUMBER, trunk="beta")
    registry.add_callee(ext_call, out_leg)
    assert trunks.in_use["beta"] == 2 and not trunks.has_capacity(beta)  # max_channels = 2
    assert trunks.has_capacity(alpha)  # (0: no limit)
    registry.end_leg(out_leg.id, 200)
    assert trunks.in_use["beta"] == 1 and trunks.has_capacity(beta)
    registry.end_leg(inbound.caller.id, 200)
    registry.end_leg(ext_call.caller.id, 200)
    assert trunks.in_use == {"alpha": 0, "beta": 0, "gamma": 0, "secure": 0}


# -- through the B2BUA -----------------------------------------------------------------------
async def test_a_full_trunk_is_skipped_for_the_next_and_released_after_the_call(
    world: World
) -> None:
    limited = TrunkSpec("carrier", CARRIER.host, extra="max_channels = 1")
    pbx = await world.start_pbx(pbx_config((limited, SECOND)))
    carrier, second = await world.carrier(CARRIER), await world.carrier(SECOND)
    first = await world.phone("1001", register=False)
    other = await world.phone("1003", register=False)

    call_1 = await first.call("9" + NUMBER)
    assert (await call_1.final()).status == 200
    assert pbx.trunks.in_use == {"carrier": 1, "second": 0}
    call_2 = await other.call("9" + NUMBER)  # the carrier's only channel is taken
    assert (await call_2.final()).status == 200
    assert len(carrier.got("INVITE")) == 1 and len(second.got("INVITE")) == 1
    assert pbx.trunks.in_use == {"carrier": 1, "second": 1}
    await first.hangup()
    await other.hangup()
    await pbx.idle()  # (checks every channel is free again)

    call_3 = await first.call("9" + NUMBER)  # the carrier's channel again
    assert (await call_3.final()).status == 200
    assert len(carrier.got("INVITE")) == 2 and len(second.got("INVITE")) == 1
    await carrier.hangup()
    await first.wait_for("BYE")
    await pbx.idle()


async def test_a_full_trunk_with_no_other_gives_503_until_its_call_ends(world: World) -> None:
    limited = TrunkSpec("carrier", CARRIER.host, extra="max_channels = 1")
    pbx = await world.start_pbx(pbx_config((limited,)))
    carrier = await world.carrier(CARRIER)
    first = await world.phone("1001", register=False)
    other = await world.phone("1003", register=False)
    call_1 = await first.call("9" + NUMBER)
    assert (await call_1.final()).status == 200
    refused = await other.call("9" + NUMBER)
    assert (await refused.final()).status == 503
    assert len(carrier.got("INVITE")) == 1
    await first.hangup()
    await pbx.idle()
    again = await other.call("9" + NUMBER)
    assert (await again.final()).status == 200
    await other.hangup()
    await pbx.idle()


async def test_an_inbound_call_takes_a_channel_of_its_trunk(world: World) -> None:
    limited = TrunkSpec("carrier", CARRIER.host, extra="max_channels = 1")
    pbx = await world.start_pbx(pbx_config((limited, SECOND)))
    carrier, second = await world.carrier(CARRIER), await world.carrier(SECOND)
    ext = await world.phone("1002")
    inbound = await carrier.call("5550100", from_user="0612345678")
    assert (await inbound.final()).status == 200
    assert pbx.trunks.in_use == {"carrier": 1, "second": 0}
    phone = await world.phone("1001", register=False)
    outbound = await phone.call("9" + NUMBER)
    assert (await outbound.final()).status == 200
    assert len(second.got("INVITE")) == 1 and len(carrier.got("INVITE")) == 0
    # a second inbound call finds the trunk's one channel taken: 503, nothing rings
    refused = await carrier.call("5550100", from_user="0699999999")
    assert (await refused.final()).status == 503
    assert len(ext.got("INVITE")) == 1
    await phone.hangup()
    await carrier.hangup()
    await ext.wait_for("BYE")
    await until(lambda: not len(pbx.registry), "the calls to end")
    await pbx.idle()


async def test_a_call_from_a_trunk_address_on_another_port_is_that_trunks(
    world: World
) -> None:
    """The carrier sends from another port of its address (a second server, a NAT): the
    call is still recognised as the trunk's, without a challenge."""
    pbx = await world.start_pbx()
    ext = await world.phone("1002")
    moved = await world.carrier(TrunkSpec("carrier", CARRIER.host, port=5999))
    out = await moved.call("5550100", from_user="0612345678")
    assert (await out.final()).status == 200
    call = pbx.only_call()
    assert call.callee is not None
    assert call.caller.trunk == "carrier" and call.callee.extension == "1002"
    await ext.hangup()
    await moved.wait_for("BYE")
    await pbx.idle()
