"""Property tests for the SIP message layer (hypothesis).

1. parse(serialize(m)) keeps the start line, every header (canonical name, value) and
   every body byte of generated valid messages.
2. parse_message, StreamParser.feed and the structured accessors raise nothing but
   SipParseError, on arbitrary bytes and on mutated valid messages.
3. StreamParser yields the same messages whatever the chunking of a valid stream.
"""

from __future__ import annotations

import os
import pathlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ippbx.sip.errors import SipParseError
from ippbx.sip.message import (
    Request,
    Response,
    StreamParser,
    canonical_name,
    parse_message,
)

# SIP_PROPS_EXAMPLES=5000 for a long local run; the default keeps the suite fast.
EXAMPLES = int(os.environ.get("SIP_PROPS_EXAMPLES", "150"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

TOKEN = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"

tokens = st.text(TOKEN, min_size=1, max_size=12)
words = st.text(ALNUM, min_size=1, max_size=10)
hosts = st.one_of(
    st.lists(words, min_size=1, max_size=3).map(".".join),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))),
    st.just("[2001:db8::1]"),
)
ports = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))
sip_uris = st.builds(
    lambda scheme, user, host, port, params: f"{scheme}:{user}{host}{port}{params}",
    st.sampled_from(["sip", "sips"]),
    st.one_of(st.just(""), words.map(lambda u: f"{u}@")),
    hosts,
    ports,
    st.lists(st.tuples(words, st.one_of(st.none(), words)), max_size=3).map(
        lambda ps: "".join(f";{k}" if v is None else f";{k}={v}" for k, v in ps)
    ),
)
request_uris = st.one_of(sip_uris, words.map(lambda n: f"tel:+{n}"))
# header values: any text but CR/LF, no surrounding whitespace (the parser strips it)
values = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=40
).map(str.strip)
extra_names = st.one_of(
    st.sampled_from(["Subject", "User-Agent", "Server", "Allow", "Supported", "Accept",
                     "Date", "Organization", "Priority", "Warning", "X-Custom"]),
    st.text(TOKEN, min_size=1, max_size=15).map(lambda n: f"X-{n}"),
)
vias = st.builds(
    lambda transport, host, port, branch: (
        f"SIP/2.0/{transport} {host}{port};branch=z9hG4bK{branch}"
    ),
    st.sampled_from(["UDP", "TCP", "TLS", "WS"]), hosts, ports, words,
)
addrs = st.builds(
    lambda display, uri, tag: f"{display}<{uri}>{tag}",
    st.one_of(st.just(""), words.map(lambda d: f'"{d}" ')),
    sip_uris,
    st.one_of(st.just(""), words.map(lambda t: f";tag={t}")),
)
bodies = st.binary(max_size=200)


@st.composite
def messages(draw: st.DrawFn) -> Request | Response:
    headers = [("Via", v) for v in draw(st.lists(vias, min_size=1, max_size=3))]
    headers += [
        ("From", draw(addrs)),
        ("To", draw(addrs)),
        ("Call-ID", draw(st.text(TOKEN + "@", min_size=1, max_size=30))),
    ]
    number = draw(st.integers(0, 2**31 - 1))
    extras = draw(st.lists(st.tuples(extra_names, values), max_size=6))
    if draw(st.booleans()):
        method = draw(st.one_of(st.sampled_from(["INVITE", "ACK", "BYE", "REGISTER"]), tokens))
        msg: Request | Response = Request(method, draw(request_uris))
        cseq_method = method
    else:
        msg = Response(draw(st.integers(100, 699)), draw(values))
        cseq_method = draw(tokens)
    headers.append(("CSeq", f"{number} {cseq_method}"))
    headers += [(canonical_name(n), v) for n, v in extras]
    order = draw(st.permutations(range(len(headers))))
    msg.headers = [headers[i] for i in order]
    msg.body = draw(bodies)
    return msg


def start_line(m: Request | Response) -> tuple[object, ...]:
    if isinstance(m, Request):
        return ("req", m.method, m.uri)
    return ("resp", m.status, m.reason)


def same(a: Request | Response, b: Request | Response) -> bool:
    return start_line(a) == start_line(b) and a.headers == b.headers and a.body == b.body


def without_length(m: Request | Response) -> list[tuple[str, str]]:
    return [h for h in m.headers if h[0] != "Content-Length"]


# ------------------------------------------------------------------------ 1. round trip
@SETTINGS
@given(messages())
def test_round_trip_keeps_everything(m: Request | Response) -> None:
    again = parse_message(m.to_bytes())
    assert start_line(again) == start_line(m)
    assert without_length(again) == without_length(m)
    assert again.get("Content-Length") == str(len(m.body))
    assert again.body == m.body
    # the structured views read what was generated
    assert again.cseq == m.cseq
    assert [v.branch for v in again.vias] == [v.branch for v in m.vias]
    assert again.from_ == m.from_ and again.to == m.to


# -------------------------------------------------------- 2. nothing but SipParseError
def touch(m: Request | Response) -> None:
    for attr in ("vias", "from_", "to", "cseq", "contacts", "top_via"):
        try:
            getattr(m, attr)
        except SipParseError:
            pass
    if isinstance(m, Request):
        try:
            m.sip_uri()
        except SipParseError:
            pass
    m.to_bytes()


def parse_everything(data: bytes) -> None:
    try:
        touch(parse_message(data))
    except SipParseError as exc:
        assert isinstance(exc.status, int)
    parser = StreamParser()
    try:
        for m in parser.feed(data):
            touch(m)
    except SipParseError:
        pass


@SETTINGS
@given(st.binary(max_size=600))
def test_arbitrary_bytes_raise_only_sip_parse_error(data: bytes) -> None:
    parse_everything(data)


SEEDS = [p.read_bytes() for p in sorted((pathlib.Path(__file__).parent / "torture").rglob("*.sip"))]
seed_messages = st.one_of(st.sampled_from(SEEDS), messages().map(lambda m: m.to_bytes()))
# bytes that are likely to break framing or grammar when inserted
SPICE = [b"\r\n", b"\n", b"\r", b"\r\n\r\n", b" ", b"\t", b":", b";", b",", b'"', b"<", b">",
         b"/", b"@", b"%", b"\\", b"\x00", b"\xff", b"=", b"?", b"[", b"]", b"\r\n "]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(seed_messages))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "duplicate"]))
        pos = draw(st.integers(0, len(data)))
        if kind == "truncate":
            del data[pos:]
        elif kind == "flip" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[pos:pos] = draw(st.one_of(st.sampled_from(SPICE), st.binary(max_size=4)))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 20))]
        elif kind == "duplicate":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 40))]
    return bytes(data)


@settings(max_examples=EXAMPLES * 3, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_messages_raise_only_sip_parse_error(data: bytes) -> None:
    parse_everything(data)


# ------------------------------------------------------------------ 3. stream chunking
@SETTINGS
@given(
    st.lists(messages(), min_size=1, max_size=4),
    st.lists(st.booleans(), min_size=4, max_size=4),
    st.lists(st.integers(0, 10_000), max_size=12),
)
def test_stream_chunking_does_not_matter(
    msgs: list[Request | Response], keepalive: list[bool], cuts: list[int]
) -> None:
    stream = b"".join((b"\r\n\r\n" if k else b"") + m.to_bytes()
                      for m, k in zip(msgs, keepalive, strict=False))
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    parser = StreamParser()
    got: list[Request | Response] = []
    for chunk in chunks:
        got += parser.feed(chunk)
    expected = [parse_message(m.to_bytes()) for m in msgs]
    assert len(got) == len(expected)
    assert all(same(a, b) for a, b in zip(got, expected, strict=True))
    assert parser.buffered == 0
