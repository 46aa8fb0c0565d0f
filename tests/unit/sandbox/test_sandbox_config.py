"""The sandbox's config (demo config with ports) and the topology the simulators read."""

from __future__ import annotations

import pytest

from ippbx.config import ConfigError, load_config, parse_config
from ippbx.sandbox.config import DEMO_NO_ANSWER_SECONDS, Topology, sandbox_config


def test_defaults_are_the_demo_addresses_with_a_short_ring_timeout() -> None:
    config = sandbox_config()
    demo = load_config(None)
    assert config.sip.listen == "127.0.0.1:5060" and config.api.listen == "127.0.0.1:9011"
    assert config.api.https_address == ("127.0.0.1", 8088) == demo.api.https_address
    assert config.sip.no_answer_seconds == DEMO_NO_ANSWER_SECONDS
    assert config.store.path == "ippbx-demo.sqlite3" != demo.store.path
    assert config.extensions == demo.extensions
    assert config.outbound_routes == demo.outbound_routes
    assert config.inbound_routes == demo.inbound_routes
    assert [(t.name, t.host, t.port) for t in config.trunks] == [("carrier", "127.0.0.1", 5080)]


def test_ports_store_and_timer_overridden() -> None:
    config = sandbox_config(sip_port=0, api_port=4321, https_port=0, tls_port=0,
                            carrier_port=6000, store_path="/tmp/x.sqlite3", no_answer_seconds=3)
    assert config.sip.listen_address == ("127.0.0.1", 0)
    assert config.api.listen_address == ("127.0.0.1", 4321)
    assert config.api.https_address == ("127.0.0.1", 0)
    assert config.sip.tls_address == ("127.0.0.1", 0)
    assert config.trunks[0].port == 6000 and config.store.path == "/tmp/x.sqlite3"
    assert config.sip.no_answer_seconds == 3


def test_topology_of_the_demo() -> None:
    topo = Topology.from_config(sandbox_config(sip_port=0), pbx_port=40000)
    assert (topo.pbx_host, topo.pbx_port, topo.domain) == ("127.0.0.1", 40000, "ippbx.local")
    assert topo.extensions == {f"100{n}": f"secret100{n}" for n in range(1, 6)}
    assert topo.names["1001"] == "Alice"
    assert topo.trunk.name == "carrier" and topo.prefix == "9" and topo.dids == ("5550100",)
    assert Topology.from_config(sandbox_config(sip_port=5062)).pbx_port == 5062


BASE = """
[sip]
listen = "0.0.0.0:5060"
[api]
password = "x"
[[extensions]]
number = "1001"
password = "p"
"""


def test_topology_needs_a_loopback_peer_trunk_with_a_route() -> None:
    remote = parse_config(BASE + """
[[trunks]]
name = "far"
host = "192.0.2.1"
[[outbound_routes]]
name = "out"
match = "X."
trunks = ["far"]
""")
    with pytest.raises(ConfigError, match="loopback"):
        Topology.from_config(remote)
    unrouted = parse_config(BASE + """
[[trunks]]
name = "near"
host = "localhost"
""")
    with pytest.raises(ConfigError, match="no outbound route"):
        Topology.from_config(unrouted)
    routed = parse_config(BASE + """
[[trunks]]
name = "near"
host = "127.0.0.2"
[[outbound_routes]]
name = "out"
prefix = "0"
match = "X."
trunks = ["near"]
""")
    topo = Topology.from_config(routed)
    assert topo.pbx_host == "127.0.0.1" and topo.prefix == "0" and topo.dids == ()
