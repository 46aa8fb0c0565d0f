"""sip/oversize.py: which requests are too large for UDP, the Via rewrite, UDP-only peers."""

from __future__ import annotations

from ippbx.sip.message import Request
from ippbx.sip.oversize import (
    UDP_MAX_REQUEST,
    UdpOnly,
    rewrite_top_via,
    tcp_instead,
    too_big_for_udp,
)
from ippbx.sip.wire import Peer

UDP = Peer("192.0.2.7", 5062, "udp")


def request(method: str = "INVITE", body: bytes = b"", *, second_via: bool = False) -> Request:
    headers = [("Via", "SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKabc;rport")]
    if second_via:
        headers.append(("Via", "SIP/2.0/UDP 203.0.113.9:5070;branch=z9hG4bKdef"))
    headers += [
        ("From", "<sip:1001@198.51.100.1>;tag=f1"),
        ("To", "<sip:5551234@192.0.2.7>"),
        ("Call-ID", "c1@198.51.100.1"),
        ("CSeq", f"1 {method}"),
        ("Content-Type", "application/sdp"),
    ]
    return Request(method, "sip:5551234@192.0.2.7:5062", headers, body)


def sized(size: int, method: str = "INVITE") -> Request:
    """A request of exactly `size` bytes on the wire."""
    padded = request(method)
    length = size - len(padded.to_bytes())
    while len(request(method, b"a" * length).to_bytes()) > size:  # (Content-Length grows)
        length -= 1
    padded = request(method, b"a" * length)
    assert len(padded.to_bytes()) == size
    return padded


def test_size_threshold() -> None:
    assert UDP_MAX_REQUEST == 1300
    assert not too_big_for_udp(sized(1300), 1300)
    assert too_big_for_udp(sized(1301), 1300)
    assert not too_big_for_udp(sized(60000), 0)  # 0: never switch
    assert too_big_for_udp(sized(600), 500)
    # counted in bytes as sent, not characters (a UTF-8 display name)
    wide = request()
    wide.set("From", '"' + "é" * 600 + '" <sip:1001@198.51.100.1>;tag=f1')
    assert len(wide.to_bytes()) > 1300 > len(wide.to_bytes().decode())
    assert too_big_for_udp(wide, 1300)


def test_tcp_instead_of_udp_for_large_new_requests() -> None:
    assert tcp_instead(sized(1301), UDP, 1300) == Peer("192.0.2.7", 5062, "tcp")
    assert tcp_instead(sized(1301, "MESSAGE"), UDP, 1300) == Peer("192.0.2.7", 5062, "tcp")
    assert tcp_instead(sized(1300), UDP, 1300) is None
    assert tcp_instead(sized(5000), UDP, 0) is None
    for transport in ("tcp", "tls"):  # already congestion controlled
        assert tcp_instead(sized(5000), Peer(UDP.host, UDP.port, transport), 1300) is None
    for method in ("ACK", "CANCEL"):  # they go the way their INVITE went
        assert tcp_instead(sized(5000, method), UDP, 1300) is None


def test_rewrite_top_via_keeps_branch_and_parameters() -> None:
    req = request(second_via=True)
    rewrite_top_via(req, transport="tcp", port=5080)
    assert req.get_all("Via") == ["SIP/2.0/TCP 198.51.100.1:5080;branch=z9hG4bKabc;rport",
                                  "SIP/2.0/UDP 203.0.113.9:5070;branch=z9hG4bKdef"]
    assert req.top_via.transport == "TCP" and req.top_via.branch == "z9hG4bKabc"
    rewrite_top_via(req, transport="udp", branch="z9hG4bKnew")  # the fallback: new branch
    assert req.get_all("Via")[0] == "SIP/2.0/UDP 198.51.100.1:5080;branch=z9hG4bKnew;rport"
    assert len(req.get_all("Via")) == 2
    # one header line holding both Vias
    joined = request()
    joined.set("Via", "SIP/2.0/UDP a.example:5060;branch=z9hG4bK1, "
                      "SIP/2.0/UDP b.example;branch=z9hG4bK2")
    rewrite_top_via(joined, transport="tcp")
    assert [str(v) for v in joined.vias] == ["SIP/2.0/TCP a.example:5060;branch=z9hG4bK1",
                                            "SIP/2.0/UDP b.example;branch=z9hG4bK2"]


def test_udp_only_peers_expire_and_are_capped() -> None:
    memory = UdpOnly(seconds=60, size=2)
    assert not memory.has(UDP, 0.0)
    memory.add(UDP, 100.0)
    assert memory.has(UDP, 159.9)
    assert not memory.has(Peer(UDP.host, UDP.port + 1), 100.0)  # host and port both count
    assert memory.has(Peer(UDP.host, UDP.port, "tcp"), 100.0)  # whatever the transport
    assert not memory.has(UDP, 160.0) and len(memory) == 0  # expired, forgotten
    peers = [Peer("192.0.2.1", 5060 + n) for n in range(3)]
    for n, peer in enumerate(peers):
        memory.add(peer, float(n))
    assert len(memory) == 2 and not memory.has(peers[0], 3.0)  # the oldest went first
    memory.add(peers[1], 4.0)  # added again: now the newest
    memory.add(peers[0], 5.0)
    assert memory.has(peers[1], 6.0) and memory.has(peers[0], 6.0)
    assert not memory.has(peers[2], 6.0)
