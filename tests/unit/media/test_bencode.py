"""Bencode (ippbx.media.bencode): known encodings, round trips, and malformed input that
only ever raises BencodeError."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ippbx.media.bencode import MAX_DEPTH, BencodeError, decode, encode

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def test_known_encodings() -> None:
    assert encode(0) == b"i0e"
    assert encode(-42) == b"i-42e"
    assert encode(b"") == b"0:"
    assert encode(b"spam") == b"4:spam"
    assert encode("héllo") == b"6:h\xc3\xa9llo"  # str is UTF-8
    assert encode([1, b"a", []]) == b"li1e1:alee"
    assert encode(()) == b"le"
    # keys sorted by their bytes, whatever the insertion order
    assert encode({"sdp": b"v=0", "command": "offer", "call-id": "c1"}) == (
        b"d7:call-id2:c17:command5:offer3:sdp3:v=0e")
    assert encode({b"b": 1, "a": 2}) == b"d1:ai2e1:bi1ee"


def test_rtpengine_ping_example() -> None:
    # the ng protocol documentation's own example
    assert encode({"command": "ping"}) == b"d7:command4:pinge"
    assert decode(b"d6:result4:ponge") == {"result": b"pong"}


def test_decode_types() -> None:
    value = decode(b"d4:listli1e3:abce3:numi-7e3:strd1:x0:ee")
    assert value == {"list": [1, b"abc"], "num": -7, "str": {"x": b""}}
    assert isinstance(next(iter(value)), str)  # keys are str, strings are bytes
    assert decode(b"d1:b1:x1:a1:ye") == {"b": b"x", "a": b"y"}  # unsorted keys accepted
    assert decode(b"d1:ai1e1:ai2ee") == {"a": 2}  # last duplicate wins
    assert decode(b"d2:\xff\xfe0:e") == {"\ufffd\ufffd": b""}  # bad UTF-8 key replaced
    assert decode(bytearray(b"i5e")) == 5


@pytest.mark.parametrize("bad", [
    b"", b"i", b"ie", b"i-e", b"i-0e", b"i03e", b"i1.5e", b"i1", b"i" + b"9" * 100 + b"e",
    b"5:abc", b"-1:a", b"01:a", b"3", b"3x", b"l", b"li1e", b"d", b"d1:a", b"d1:ai1e",
    b"di1ei2ee", b"dlee", b"x", b"i1ei2e", b"4:spamX", b"e", b"le" + b"e",
    b"9" * 70 + b":x",
])
def test_malformed(bad: bytes) -> None:
    with pytest.raises(BencodeError):
        decode(bad)


def test_decode_wants_bytes() -> None:
    with pytest.raises(BencodeError):
        decode("i1e")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [True, 1.5, None, {1: 2}, {"a": object()}, {"a": 1, b"a": 2}])
def test_unencodable(bad: Any) -> None:
    with pytest.raises(BencodeError):
        encode(bad)


def test_nesting_is_capped() -> None:
    assert decode(b"l" * MAX_DEPTH + b"e" * MAX_DEPTH) is not None
    for deep in (b"l" * (MAX_DEPTH + 2) + b"e" * (MAX_DEPTH + 2), b"l" * 100_000,
                 b"d1:a" * 100_000):
        with pytest.raises(BencodeError, match="nested deeper"):
            decode(deep)
    nested: list[Any] = []
    for _ in range(MAX_DEPTH + 2):
        nested = [nested]
    with pytest.raises(BencodeError, match="nested deeper"):
        encode(nested)


# -- properties -----------------------------------------------------------------------------

keys = st.text(max_size=8)
leaves = st.one_of(st.integers(), st.binary(max_size=32))
values = st.recursive(
    leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=5),
                            st.dictionaries(keys, inner, max_size=5)),
    max_leaves=30,
)


@SETTINGS
@given(values)
def test_round_trip(value: Any) -> None:
    data = encode(value)
    assert decode(data) == value
    assert encode(decode(data)) == data  # canonical: one encoding per value


@SETTINGS
@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_bencode_error(data: bytes) -> None:
    try:
        decode(data)
    except BencodeError:
        pass


@SETTINGS
@given(values, st.data())
def test_mutated_encodings_only_raise_bencode_error(value: Any, data: st.DataObject) -> None:
    raw = bytearray(encode(value))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[pos] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del raw[pos:pos + data.draw(st.integers(1, 8))]
        else:
            raw[pos:pos] = data.draw(st.sampled_from([b"l", b"d", b"e", b"i", b":", b"9"]))
    try:
        decode(bytes(raw))
    except BencodeError:
        pass
