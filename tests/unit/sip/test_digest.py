"""Digest authentication: RFC vectors, client/server round trips, nonces bound to the source
and single-use (RFC 2069) or counted (qop), stale, uri against the Request-URI, SHA-256 beside
MD5, and which outcomes are failures worth counting."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from ippbx.sip.digest import (
    DigestChallenger,
    DigestClient,
    DigestError,
    VerifyResult,
    VerifyStatus,
    answer_challenge,
    compute_ha1,
    compute_response,
    parse_challenge,
    pick_challenge,
    split_challenges,
)
from ippbx.sip.headers import parse_credentials

if TYPE_CHECKING:  # (the `clock` fixture is tests/conftest.py's)
    from conftest import FakeClock

PASSWORDS = {"1001": "secret1001", "alice": "wonderland"}




@pytest.fixture
def server(clock: FakeClock) -> DigestChallenger:
    return DigestChallenger("pbx.example.com", b"k" * 32, nonce_ttl=300.0, clock=clock)


# -------------------------------------------------------------------- RFC test vectors
def test_rfc2617_section_3_5_example() -> None:
    ha1 = compute_ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
    response = compute_response(
        algorithm="MD5", method="GET", uri="/dir/index.html",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", ha1=ha1, qop="auth", nc="00000001",
        cnonce="0a4f113b",
    )
    assert response == "6629fae49393a05397450978507c4ef1"


RFC7616_CHALLENGE = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={alg}, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)


@pytest.mark.parametrize(
    ("alg", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_section_3_9_1_examples(alg: str, expected: str) -> None:
    value = answer_challenge(
        RFC7616_CHALLENGE.format(alg=alg), "GET", "/dir/index.html", "Mufasa",
        "Circle of Life", cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    )
    scheme, params = parse_credentials(value)
    assert scheme == "Digest"
    assert params["response"] == expected
    assert params["qop"] == "auth" and params["nc"] == "00000001"
    assert params["algorithm"] == alg
    assert params["opaque"] == "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
    assert params["realm"] == "http-auth@example.org"
    assert params["uri"] == "/dir/index.html"


def test_rfc2617_challenge_answered_exactly() -> None:
    challenge = (
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    value = answer_challenge(
        challenge, "GET", "/dir/index.html", "Mufasa", "Circle Of Life", cnonce="0a4f113b"
    )
    assert value == (
        'Digest username="Mufasa", realm="testrealm@host.com", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", '
        'response="6629fae49393a05397450978507c4ef1", algorithm=MD5, cnonce="0a4f113b", '
        'opaque="5ccc069c403ebaf9f0171e9517f40e41", qop=auth, nc=00000001'
    )


# ------------------------------------------------------------------------ round trips
SRC = "192.0.2.10"  # the address every challenge below goes to, unless said otherwise
URI = "sip:pbx.example.com"


def ok(server: DigestChallenger, value: str, method: str = "REGISTER", uri: str = URI,
       source: str = SRC) -> VerifyResult:
    return server.verify(value, method, PASSWORDS.get, uri=uri, source=source)


@pytest.mark.parametrize("algorithm", ["MD5", "MD5-sess", "SHA-256", "SHA-256-sess"])
def test_round_trip_with_qop(clock: FakeClock, algorithm: str) -> None:
    server = DigestChallenger("pbx.example.com", b"k" * 32, clock=clock,
                              algorithms=(algorithm,))
    challenge = server.challenge(SRC)
    assert f"algorithm={algorithm}" in challenge and 'qop="auth"' in challenge
    value = answer_challenge(challenge, "REGISTER", URI, "1001", "secret1001")
    result = ok(server, value)
    assert result.status is VerifyStatus.OK and result
    assert result.username == "1001" and result.algorithm == algorithm.upper()


def test_rfc2069_answer_is_single_use(clock: FakeClock) -> None:
    server = DigestChallenger("pbx", b"x" * 16, clock=clock, qop=(), opaque=False)
    challenge = server.challenge(SRC)
    assert "qop" not in challenge and "opaque" not in challenge
    value = answer_challenge(challenge, "INVITE", "sip:1002@pbx", "1001", "secret1001")
    params = parse_credentials(value)[1]
    assert "qop" not in params and "nc" not in params and "cnonce" not in params
    assert ok(server, value, "INVITE", "sip:1002@pbx").ok
    replay = ok(server, value, "INVITE", "sip:1002@pbx")
    assert replay.status is VerifyStatus.STALE and replay.reason == "nonce already used"
    assert not replay.is_failure
    clock.now += 1000  # long after it expired: still refused (stale, by age now)
    assert ok(server, value, "INVITE", "sip:1002@pbx").status is VerifyStatus.STALE


def test_sipp_style_answer_without_qop_accepted_once_by_a_qop_challenge(
    server: DigestChallenger,
) -> None:
    # some phones ignore qop and answer RFC 2069 style: accepted, once
    nonce = parse_challenge(server.challenge(SRC)).nonce
    ha1 = compute_ha1("1001", "pbx.example.com", "secret1001")
    response = compute_response(algorithm="MD5", method="INVITE", uri="sip:1002@pbx",
                                nonce=nonce, ha1=ha1)
    value = (f'Digest username="1001",realm="pbx.example.com",uri="sip:1002@pbx",'
             f'nonce="{nonce}",response="{response}",algorithm=MD5')
    assert ok(server, value, "INVITE", "sip:1002@pbx").status is VerifyStatus.OK
    assert ok(server, value, "INVITE", "sip:1002@pbx").status is VerifyStatus.STALE
    # nor can the nonce be used again with qop after an RFC 2069 use
    other = server.challenge(SRC)
    again = answer_challenge(other.replace(parse_challenge(other).nonce, nonce), "INVITE",
                             "sip:1002@pbx", "1001", "secret1001", nc=2)
    assert ok(server, again, "INVITE", "sip:1002@pbx").status is VerifyStatus.STALE


def test_auth_int_covers_the_body_and_only_when_offered(clock: FakeClock) -> None:
    server = DigestChallenger("pbx.example.com", b"k" * 32, clock=clock,
                              qop=("auth-int",))
    value = answer_challenge(server.challenge(SRC), "INVITE", "sip:x@pbx", "1001",
                             "secret1001", body=b"v=0\r\n")
    assert "qop=auth-int" in value
    bad = server.verify(value, "INVITE", PASSWORDS.get, uri="sip:x@pbx", source=SRC,
                        body=b"v=1\r\n")
    assert bad.status is VerifyStatus.FAILED
    assert server.verify(value, "INVITE", PASSWORDS.get, uri="sip:x@pbx", source=SRC,
                         body=b"v=0\r\n")
    auth_only = DigestChallenger("pbx.example.com", b"k" * 32, clock=clock)
    value = answer_challenge(auth_only.challenge(SRC).replace('qop="auth"', 'qop="auth-int"'),
                             "INVITE", "sip:x@pbx", "1001", "secret1001", body=b"v=0\r\n")
    result = auth_only.verify(value, "INVITE", PASSWORDS.get, uri="sip:x@pbx", source=SRC,
                              body=b"v=0\r\n")
    assert result.status is VerifyStatus.FAILED and "unsupported qop" in result.reason


def test_verify_against_password_string_and_precomputed_ha1(server: DigestChallenger) -> None:
    ha1 = compute_ha1("alice", "pbx.example.com", "wonderland")
    for secret in ("wonderland", None):
        value = answer_challenge(server.challenge(SRC), "REGISTER", URI, "alice", "wonderland")
        if secret is not None:
            assert server.verify(value, "REGISTER", secret, uri=URI, source=SRC).ok
        else:
            assert server.verify(value, "REGISTER", ha1=ha1.upper(), uri=URI, source=SRC).ok
    value = answer_challenge(server.challenge(SRC), "REGISTER", URI, "alice", "wonderland")
    assert server.verify(value, "REGISTER", ha1={"alice": ha1}.get, uri=URI, source=SRC).ok
    value = answer_challenge(server.challenge(SRC), "REGISTER", URI, "alice", "wonderland")
    result = server.verify(value, "REGISTER", ha1={}.get, uri=URI, source=SRC)
    assert result.status is VerifyStatus.FAILED and result.reason == "unknown user"


# ----------------------------------------------------------------------- nonce counts
def test_nonce_count_must_increase(server: DigestChallenger) -> None:
    client = DigestClient("1001", "secret1001")
    assert client.again("REGISTER", URI) is None
    first = client.answer(server.challenge(SRC), "REGISTER", URI)
    second = client.again("REGISTER", URI)
    third = client.again("REGISTER", URI)
    assert second is not None and third is not None
    assert parse_credentials(first)[1]["nc"] == "00000001"
    assert parse_credentials(second)[1]["nc"] == "00000002"
    assert ok(server, first).ok
    assert ok(server, third).ok  # a gap is fine (a request may have been lost)
    for replay in (second, third, first):  # not higher than 3: refused
        result = ok(server, replay)
        assert result.status is VerifyStatus.STALE and result.reason == "nonce count replayed"
    fourth = client.again("REGISTER", URI)
    assert fourth is not None and ok(server, fourth).ok


def test_nonce_table_is_bounded_and_forgetting_lets_no_replay_through(clock: FakeClock) -> None:
    server = DigestChallenger("r", b"s", clock=clock, qop=(), max_tracked_nonces=2)
    values = []
    for _ in range(3):
        values.append(answer_challenge(server.challenge(SRC), "REGISTER", "sip:r", "alice",
                                       "wonderland"))
        clock.now += 1
    later = answer_challenge(server.challenge(SRC), "REGISTER", "sip:r", "alice", "wonderland")
    for value in values:
        assert server.verify(value, "REGISTER", "wonderland", uri="sip:r", source=SRC).ok
    assert len(server._uses) == 2  # the first one was forgotten...
    for value in values:  # ...and still cannot be replayed
        result = server.verify(value, "REGISTER", "wonderland", uri="sip:r", source=SRC)
        assert result.status is VerifyStatus.STALE
    # a nonce issued after the forgotten ones is unaffected
    assert server.verify(later, "REGISTER", "wonderland", uri="sip:r", source=SRC).ok
    clock.now += 400  # everything expired: the table empties itself on the next use
    fresh = answer_challenge(server.challenge(SRC), "REGISTER", "sip:r", "alice", "wonderland")
    assert server.verify(fresh, "REGISTER", "wonderland", uri="sip:r", source=SRC).ok
    assert len(server._uses) == 1
    with pytest.raises(ValueError):
        DigestChallenger("r", b"s", max_tracked_nonces=0)


def test_nonce_issued_before_the_floor_and_never_used_is_stale(clock: FakeClock) -> None:
    server = DigestChallenger("r", b"s", clock=clock, qop=(), max_tracked_nonces=1)
    early = answer_challenge(server.challenge(SRC), "REGISTER", "sip:r", "alice", "wonderland")
    clock.now += 1
    a = answer_challenge(server.challenge(SRC), "REGISTER", "sip:r", "alice", "wonderland")
    b = answer_challenge(server.challenge(SRC), "REGISTER", "sip:r", "alice", "wonderland")
    assert server.verify(a, "REGISTER", "wonderland", uri="sip:r", source=SRC).ok
    assert server.verify(b, "REGISTER", "wonderland", uri="sip:r", source=SRC).ok  # a goes
    result = server.verify(early, "REGISTER", "wonderland", uri="sip:r", source=SRC)
    assert result.status is VerifyStatus.STALE  # older than what was forgotten


# ------------------------------------------------------------- nonces bound to the source
def test_nonce_is_bound_to_the_source_address(server: DigestChallenger) -> None:
    challenge = server.challenge("127.0.0.1")
    value = answer_challenge(challenge, "INVITE", "sip:1002@pbx", "1001", "secret1001")
    elsewhere = ok(server, value, "INVITE", "sip:1002@pbx", source="127.0.0.2")
    assert elsewhere.status is VerifyStatus.INVALID and not elsewhere.is_failure
    assert elsewhere.reason == "nonce not issued to this source"
    # a wrong password over someone else's nonce is not a failure either: a spoofer can
    # send that without ever seeing our challenge
    wrong = answer_challenge(challenge, "INVITE", "sip:1002@pbx", "1001", "guess")
    assert ok(server, wrong, "INVITE", "sip:1002@pbx", source="127.0.0.2").status \
        is VerifyStatus.INVALID
    assert ok(server, wrong, "INVITE", "sip:1002@pbx", source="127.0.0.1").status \
        is VerifyStatus.FAILED
    assert ok(server, value, "INVITE", "sip:1002@pbx", source="127.0.0.1").ok
    nonce = parse_challenge(challenge).nonce
    assert server.nonce_age(nonce, "127.0.0.1") == 0.0
    assert server.nonce_age(nonce, "127.0.0.2") is None


# ----------------------------------------------------------------- stale and failures
def test_expired_nonce_is_stale_and_rechallenge_says_so(
    server: DigestChallenger, clock: FakeClock
) -> None:
    value = answer_challenge(server.challenge(SRC), "REGISTER", URI, "1001", "secret1001")
    clock.now += 301
    result = ok(server, value)
    assert result.status is VerifyStatus.STALE and result.username == "1001"
    assert result.reason == "nonce expired" and not result.is_failure
    again = server.challenge(SRC, stale=True)
    assert parse_challenge(again).stale
    fresh = answer_challenge(again, "REGISTER", URI, "1001", "secret1001")
    assert ok(server, fresh).ok


def test_nonce_fresh_until_its_ttl(server: DigestChallenger, clock: FakeClock) -> None:
    value = answer_challenge(server.challenge(SRC), "REGISTER", URI, "1001", "secret1001")
    clock.now += 299
    assert ok(server, value).ok


def test_expired_nonce_with_wrong_password_is_failed_not_stale(
    server: DigestChallenger, clock: FakeClock
) -> None:
    value = answer_challenge(server.challenge(SRC), "REGISTER", URI, "1001", "guess")
    clock.now += 1000
    result = ok(server, value)
    assert result.status is VerifyStatus.FAILED and result.is_failure


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda v: v.replace('response="', 'response="0'), "wrong response"),
        (lambda v: v.replace('username="1001"', 'username="1009"'), "unknown user"),
        (lambda v: v.replace('opaque="', 'opaque="x'), "wrong opaque"),
        (lambda v: v.replace("algorithm=MD5", "algorithm=SHA-512"), "unsupported"),
        (lambda v: v.replace("algorithm=MD5", "algorithm=SHA-256"), "was not offered"),
        (lambda v: v.replace("nc=00000001", "nc=0000000g"), "bad nc"),
        (lambda v: v.replace("nc=00000001", "nc=1"), "8-digit nc"),
        (lambda v: v.replace("qop=auth", "qop=auth-conf"), "unsupported qop"),
        (lambda v: v.replace('username="1001", ', ""), "no username"),
        (lambda v: v.replace('response="', 'x="'), "uri and response are required"),
    ],
)
def test_wrong_credentials_over_our_nonce_fail(
    server: DigestChallenger, mutate: object, reason: str
) -> None:
    value = answer_challenge(server.challenge(SRC), "REGISTER", URI, "1001", "secret1001")
    result = ok(server, mutate(value))  # type: ignore[operator]
    assert result.status is VerifyStatus.FAILED and result.is_failure
    assert reason in result.reason


def test_wrong_password_and_method(server: DigestChallenger) -> None:
    value = answer_challenge(server.challenge(SRC), "REGISTER", URI, "1001", "nope")
    assert ok(server, value).status is VerifyStatus.FAILED
    good = answer_challenge(server.challenge(SRC), "REGISTER", URI, "1001", "secret1001")
    assert ok(server, good, "INVITE").status is VerifyStatus.FAILED


def test_tampered_or_foreign_nonce_is_invalid(server: DigestChallenger, clock: FakeClock) -> None:
    challenge = server.challenge(SRC)
    nonce = parse_challenge(challenge).nonce
    # move the timestamp forward (would make an old nonce fresh): the MAC no longer fits
    forged = f"{int(nonce[:16], 16) + 10**6:016x}" + nonce[16:]
    last = "00" if nonce[-2:] != "00" else "11"  # (a changed last byte, always)
    for bad in (forged, nonce[:-2] + last, "abc", "zz" * 32):
        value = answer_challenge(challenge.replace(nonce, bad), "REGISTER", URI,
                                 "1001", "secret1001")
        result = ok(server, value)
        assert result.status is VerifyStatus.INVALID, bad
        assert result.reason == "nonce not issued to this source" and not result.is_failure
    other = DigestChallenger("pbx.example.com", b"another secret", clock=clock)
    value = answer_challenge(other.challenge(SRC), "REGISTER", URI, "1001", "secret1001")
    assert ok(server, value).status is VerifyStatus.INVALID


def test_nonce_from_another_realm_with_the_same_secret_is_rejected(clock: FakeClock) -> None:
    a = DigestChallenger("a.example", b"shared", clock=clock)
    b = DigestChallenger("b.example", b"shared", clock=clock)
    nonce = parse_challenge(a.challenge(SRC)).nonce
    assert a.nonce_age(nonce, SRC) == 0.0
    assert b.nonce_age(nonce, SRC) is None


# ------------------------------------------------------------------ uri and Request-URI
@pytest.mark.parametrize(
    ("digest_uri", "request_uri"),
    [
        ("sip:1002@pbx.example.com", "sip:1002@pbx.example.com"),
        ("sip:1002@PBX.example.com", "sip:1002@pbx.example.com"),
        ("SIP:1002@pbx.example.com", "sip:1002@pbx.example.com"),
        ("sip:%31002@pbx.example.com", "sip:1002@pbx.example.com"),
        ("sip:1002@pbx.example.com;transport=UDP", "sip:1002@pbx.example.com;transport=udp"),
        ("sip:1002@[::1]:5060", "sip:1002@[0:0::1]:5060"),
    ],
)
def test_digest_uri_equivalent_to_the_request_uri_is_accepted(
    server: DigestChallenger, digest_uri: str, request_uri: str
) -> None:
    value = answer_challenge(server.challenge(SRC), "INVITE", digest_uri, "1001", "secret1001")
    assert ok(server, value, "INVITE", request_uri).ok


@pytest.mark.parametrize(
    "request_uri",
    [
        "sip:1003@pbx.example.com",  # another number: the replay of the finding
        "sip:1002@pbx.example.com:5060",  # an explicit default port is another URI
        "sip:1002@other.example.com",
        "sips:1002@pbx.example.com",
        "sip:1002@pbx.example.com;transport=tcp",
        "sip:1002@pbx.example.com;user=phone",
        "tel:1002",
    ],
)
def test_digest_uri_not_the_request_uri_is_a_failure(
    server: DigestChallenger, request_uri: str
) -> None:
    value = answer_challenge(server.challenge(SRC), "INVITE", "sip:1002@pbx.example.com",
                             "1001", "secret1001")
    result = ok(server, value, "INVITE", request_uri)
    assert result.status is VerifyStatus.WRONG_URI and result.is_failure
    assert result.reason == "digest uri does not match the Request-URI"


# ----------------------------------------------------------- what is not a credential
@pytest.mark.parametrize("value", [None, "", "   ", [], ["", " "]])
def test_missing_credentials(server: DigestChallenger, value: str | list[str] | None) -> None:
    result = server.verify(value, "REGISTER", PASSWORDS.get, uri=URI, source=SRC)
    assert result.status is VerifyStatus.MISSING


@pytest.mark.parametrize(
    "value",
    [
        "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
        "NoOneKnowsThisScheme opaque-data=here",  # RFC 4475 regaut01
        "Digest",
        'Digest username="1001"',
        'Digest username="1001", realm="other", nonce="x", uri="sip:pbx", response="r"',
        'Digest username="1001", realm="pbx.example.com", nonce="x", uri="sip:pbx"',
        'Digest username="unterminated, realm="pbx.example.com"',
        "Digest username",
        'Digest username="1001", userhash=true, realm="pbx.example.com", nonce="x", '
        'uri="u", response="r"',
    ],
)
def test_malformed_or_foreign_credentials_are_invalid_not_failures(
    server: DigestChallenger, value: str
) -> None:
    result = server.verify(value, "REGISTER", PASSWORDS.get, uri=URI, source=SRC)
    assert result.status is VerifyStatus.INVALID and not result.is_failure


def test_first_digest_credentials_for_our_realm_are_used(server: DigestChallenger) -> None:
    value = answer_challenge(server.challenge(SRC), "REGISTER", URI, "1001", "secret1001")
    other = value.replace('realm="pbx.example.com"', 'realm="elsewhere"')
    values = ["NoOneKnowsThisScheme opaque-data=here", other, value]
    assert server.verify(values, "REGISTER", PASSWORDS.get, uri=URI, source=SRC).ok


def test_odd_but_valid_spacing_and_quoting(server: DigestChallenger) -> None:
    challenge = server.challenge(SRC)
    c = parse_challenge(challenge)
    ha1 = compute_ha1("1001", "pbx.example.com", "secret1001")
    response = compute_response(algorithm="MD5", method="REGISTER", uri="sip:pbx",
                                nonce=c.nonce, ha1=ha1, qop="auth", nc="0000000a",
                                cnonce="a b,c")
    value = (
        f'Digest   username = "1001" ,realm="pbx.example.com",\tnonce= "{c.nonce}" , '
        f'uri="sip:pbx",RESPONSE="{response.upper()}", ALGORITHM=md5, qop="auth", '
        f'nc=0000000a, cnonce="a b,c", opaque="{c.opaque}",,'
    )
    assert ok(server, value, uri="sip:pbx").ok


def test_realm_with_quotes_is_escaped_both_ways(clock: FakeClock) -> None:
    realm = 'the "big" \\ realm'
    server = DigestChallenger(realm, b"s", clock=clock)
    challenge = server.challenge(SRC)
    assert parse_challenge(challenge).realm == realm
    value = answer_challenge(challenge, "REGISTER", "sip:pbx", "alice", "wonderland")
    assert parse_credentials(value)[1]["realm"] == realm
    assert server.verify(value, "REGISTER", "wonderland", uri="sip:pbx", source=SRC).ok


# ------------------------------------------------------------------ several algorithms
def test_sha256_offered_first_beside_md5_and_either_accepted(clock: FakeClock) -> None:
    server = DigestChallenger("pbx.example.com", b"k" * 32, clock=clock,
                              algorithms=("SHA-256", "MD5"))
    values = server.challenges(SRC)
    assert [parse_challenge(v).algorithm for v in values] == ["SHA-256", "MD5"]
    assert parse_challenge(values[0]).nonce != parse_challenge(values[1]).nonce
    strongest = answer_challenge(pick_challenge(values), "REGISTER", URI, "1001",
                                 "secret1001")
    assert "algorithm=SHA-256" in strongest
    assert ok(server, strongest).algorithm == "SHA-256"
    md5 = answer_challenge(values[1], "REGISTER", URI, "1001", "secret1001")
    assert "algorithm=MD5" in md5 and ok(server, md5).algorithm == "MD5"
    sha = DigestChallenger("pbx.example.com", b"k" * 32, clock=clock, algorithms=("SHA-256",))
    md5 = answer_challenge(sha.challenge(SRC).replace("SHA-256", "MD5"), "REGISTER", URI,
                           "1001", "secret1001")
    result = ok(sha, md5)  # MD5 was not offered: no downgrade
    assert result.status is VerifyStatus.FAILED and "not offered" in result.reason


# -------------------------------------------------------------------- client parsing
def test_challenge_parsing_and_picking() -> None:
    md5 = 'Digest realm="r", nonce="n1", algorithm=MD5, qop="auth"'
    sha = 'Digest realm="r", nonce="n2", algorithm=SHA-256, qop="auth", stale=TRUE'
    assert split_challenges(f"{md5}, {sha}") == [md5, sha]
    assert pick_challenge([md5, sha]) == sha
    assert pick_challenge([f"{md5}, {sha}"]) == sha
    assert pick_challenge(['Basic realm="x"', md5]) == md5
    parsed = parse_challenge(sha)
    assert parsed.algorithm == "SHA-256" and parsed.qop == ["auth"] and parsed.stale
    assert parse_challenge('Digest realm="r", nonce="n"').algorithm == "MD5"
    with pytest.raises(DigestError):
        pick_challenge(['Basic realm="x"'])
    with pytest.raises(DigestError):
        parse_challenge('Digest realm="r", nonce="n", algorithm=SHA-512')
    with pytest.raises(DigestError):
        parse_challenge('Digest realm="r"')
    with pytest.raises(DigestError):
        answer_challenge('Digest realm="r", nonce="n", algorithm=FOO', "REGISTER", "sip:r",
                         "u", "p")


def test_challenger_needs_a_secret_and_an_algorithm() -> None:
    with pytest.raises(ValueError):
        DigestChallenger("r", b"")
    with pytest.raises(ValueError):
        DigestChallenger("r", b"s", algorithms=())
    with pytest.raises(DigestError):
        DigestChallenger("r", b"s", algorithms=("SHA-512",))
