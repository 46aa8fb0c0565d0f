"""The sans-IO half of the ng client (ippbx.media.rtpengine): requests, answers, matching
answers to requests, results, the flags we send. No sockets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ippbx.media.bencode import decode, encode
from ippbx.media.rtpengine import (
    ANSWER_FLAGS,
    OFFER_FLAGS,
    MediaError,
    NgClient,
    PendingRequests,
    build_request,
    check_result,
    merge_params,
    parse_answer,
    parse_ng_address,
    text,
)


def test_build_request() -> None:
    cookie, datagram = build_request("offer", {"call-id": "c1", "sdp": b"v=0\r\n"})
    head, _, body = datagram.partition(b" ")
    assert head == cookie.encode() and len(cookie) == 16
    assert decode(body) == {"call-id": b"c1", "command": b"offer", "sdp": b"v=0\r\n"}
    assert build_request("ping", {})[0] != build_request("ping", {})[0]  # fresh cookies
    assert build_request("ping", {}, cookie="5323_1") == ("5323_1", b"5323_1 d7:command4:pinge")


@pytest.mark.parametrize("command,params,cookie", [
    ("", {}, None),
    ("ping", {"command": "x"}, None),
    ("ping", {"x": 1.5}, None),
    ("ping", {}, "has space"),
    ("ping", {}, "caf\u00e9"),
    ("offer", {"sdp": b"x" * 70_000}, None),
])
def test_build_request_refuses(command: str, params: dict[str, object],
                               cookie: str | None) -> None:
    with pytest.raises(MediaError):
        build_request(command, params, cookie)


def test_parse_answer() -> None:
    assert parse_answer(b"abc d6:result4:ponge") == ("abc", {"result": b"pong"})
    cookie, answer = parse_answer(b"k1 d6:result2:ok3:sdp3:v=0e")
    assert cookie == "k1" and answer["sdp"] == b"v=0"


@pytest.mark.parametrize("bad,cookie", [
    (b"", None), (b"nocookie", None), (b" d6:result2:oke", None), (b"\xff d6:result2:oke", None),
    (b"k1 garbage", "k1"), (b"k1 li1ee", "k1"), (b"k1 d3:fooi1ee", "k1"), (b"k1 ", "k1"),
])
def test_parse_answer_malformed(bad: bytes, cookie: str | None) -> None:
    with pytest.raises(MediaError) as info:
        parse_answer(bad)
    assert info.value.cookie == cookie


@given(st.binary(max_size=120))
@settings(max_examples=300, deadline=None)
def test_parse_answer_only_raises_media_error(data: bytes) -> None:
    try:
        parse_answer(data)
    except MediaError:
        pass


def test_pending_requests_match_by_cookie() -> None:
    pending: PendingRequests[str] = PendingRequests()
    pending.add("a", "waiter-a")
    pending.add("b", "waiter-b")
    with pytest.raises(MediaError):
        pending.add("a", "again")
    assert pending.match(b"b d6:result2:oke") == ("waiter-b", {"result": b"ok"})
    assert pending.match(b"b d6:result2:oke") is None  # a duplicate answer: nobody waits
    assert pending.unmatched == 1
    assert pending.match(b"zz d6:result2:oke") is None and pending.unmatched == 2
    # a malformed answer with a readable cookie fails its request at once
    matched = pending.match(b"a not-bencode")
    assert matched is not None and matched[0] == "waiter-a"
    assert isinstance(matched[1], MediaError) and pending.malformed == 1
    assert pending.match(b"junk") is None and pending.malformed == 2
    assert len(pending) == 0
    pending.add("c", "waiter-c")
    pending.discard("c")
    pending.discard("c")
    assert pending.match(b"c d6:result2:oke") is None


def test_check_result() -> None:
    assert check_result("ping", {"result": b"pong"}) == {"result": b"pong"}
    ok = {"result": b"ok", "warning": b"Call-ID not found or tags didn't match"}
    assert check_result("delete", ok) == ok
    with pytest.raises(MediaError) as info:
        check_result("bogus", {"result": b"error", "error-reason": b"Unrecognized command"})
    assert info.value.reason == "Unrecognized command"
    assert str(info.value) == "bogus: Unrecognized command"
    with pytest.raises(MediaError, match="no reason given"):
        check_result("x", {"result": b"error"})
    with pytest.raises(MediaError, match="unexpected result 'load limit'"):
        check_result("offer", {"result": b"load limit"})
    with pytest.raises(MediaError):
        check_result("offer", {"result": [1]})


def test_text() -> None:
    assert text(b"ok") == "ok" and text("ok") == "ok" and text(None, "d") == "d"
    assert text(b"\xff") == "\ufffd" and text(5) == "5"


def test_merge_params_joins_lists() -> None:
    merged = merge_params(OFFER_FLAGS, {"flags": ["record-call", "port-latching"],
                                        "ICE": "force", "label": "x"})
    assert merged["flags"] == ["reject-ICE", "port-latching", "record-call"]
    assert merged["ICE"] == "force" and merged["label"] == "x"
    assert merged["replace"] == ["origin", "session-connection"]
    assert OFFER_FLAGS["ICE"] == "remove"  # the defaults are left alone
    assert merge_params(ANSWER_FLAGS, None)["flags"] == ["port-latching"]
    encode(merge_params(OFFER_FLAGS, None))  # all of it encodable


def test_the_anchoring_flags() -> None:
    for flags in (OFFER_FLAGS, ANSWER_FLAGS):
        assert flags["ICE"] == "remove"
        assert list(flags["replace"]) == ["origin", "session-connection"]  # type: ignore
        assert "port-latching" in flags["flags"]  # type: ignore[operator]
        assert "asymmetric" not in flags["flags"]  # type: ignore[operator]
    assert "reject-ICE" in OFFER_FLAGS["flags"]  # type: ignore[operator]


def test_sdp_params_of_offer_and_answer() -> None:
    params = NgClient._sdp_params("c1", "A", b"v=0", None, OFFER_FLAGS, None, None)
    assert params["call-id"] == "c1" and params["from-tag"] == "A" and "to-tag" not in params
    assert "received-from" not in params
    params = NgClient._sdp_params("c1", "A", b"v=0", "B", ANSWER_FLAGS,
                                  {"flags": ["x"]}, "2001:db8::1")
    assert params["to-tag"] == "B"
    assert params["received-from"] == ["IP6", "2001:db8::1"]
    assert params["flags"] == ["port-latching", "x", "SIP-source-address"]
    params = NgClient._sdp_params("c1", "A", b"v=0", "B", ANSWER_FLAGS, None, "192.0.2.1")
    assert params["received-from"] == ["IP4", "192.0.2.1"]


def test_parse_ng_address() -> None:
    assert parse_ng_address("127.0.0.1:2223") == ("127.0.0.1", 2223)
    assert parse_ng_address(" media.example:22222 ") == ("media.example", 22222)
    assert parse_ng_address("[::1]:2223") == ("::1", 2223)
    for bad in ("", "host", "host:", ":2223", "host:0", "host:70000", "::1:2223", "[::1]",
                "host:x"):
        with pytest.raises(ValueError):
            parse_ng_address(bad)


def test_client_routes_a_call_to_the_engine_of_its_offer() -> None:
    client = NgClient(["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"])
    assert client._pick("offer", {"call-id": "a"}) == "127.0.0.1:1"
    assert client._pick("offer", {"call-id": "b"}) == "127.0.0.1:2"
    assert client._pick("offer", {"call-id": "c"}) == "127.0.0.1:3"
    assert client._pick("offer", {"call-id": "d"}) == "127.0.0.1:1"  # round-robin
    assert client._pick("answer", {"call-id": "b"}) == "127.0.0.1:2"
    assert client._pick("offer", {"call-id": "b"}) == "127.0.0.1:2"  # a re-offer stays
    assert client._pick("delete", {"call-id": "c"}) == "127.0.0.1:3"
    assert client.engine_of("c") == "127.0.0.1:3"
    assert client._pick("ping", {}) == "127.0.0.1:1"
    assert client._pick("delete", {"call-id": "unknown"}) == "127.0.0.1:1"
    assert client.engine_of("unknown") is None
    assert sorted(client.forget_engine("127.0.0.1:1")) == ["a", "d"]
    client.forget("b")
    assert client.engine_of("b") is None and client.engine_of("a") is None


def test_client_arguments() -> None:
    with pytest.raises(ValueError):
        NgClient([])
    with pytest.raises(ValueError):
        NgClient("nope")
    with pytest.raises(ValueError):
        NgClient("127.0.0.1:1", timeout=0)
    assert NgClient("127.0.0.1:1").engines == ["127.0.0.1:1"]
