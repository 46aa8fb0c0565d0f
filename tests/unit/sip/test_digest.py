"""Digest authentication: RFC vectors, client/server round trips, stale and failure paths."""

from __future__ import annotations

import pytest

from ippbx.sip.digest import (
    DigestChallenger,
    DigestClient,
    DigestError,
    VerifyStatus,
    answer_challenge,
    compute_ha1,
    compute_response,
    parse_challenge,
    pick_challenge,
    split_challenges,
)
from ippbx.sip.headers import parse_credentials

PASSWORDS = {"1001": "secret1001", "alice": "wonderland"}


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server(clock: Clock) -> DigestChallenger:
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
@pytest.mark.parametrize("algorithm", ["MD5", "MD5-sess", "SHA-256", "SHA-256-sess"])
def test_round_trip_with_qop(server: DigestChallenger, algorithm: str) -> None:
    challenge = server.challenge(algorithms=(algorithm,))
    assert f"algorithm={algorithm}" in challenge and 'qop="auth"' in challenge
    value = answer_challenge(challenge, "REGISTER", "sip:pbx.example.com", "1001",
                             "secret1001")
    result = server.verify(value, "REGISTER", PASSWORDS.get, uri="sip:pbx.example.com")
    assert result.status is VerifyStatus.OK and result
    assert result.username == "1001" and result.algorithm == algorithm.upper()


def test_round_trip_without_qop_rfc2069_style(clock: Clock) -> None:
    server = DigestChallenger("pbx", b"x" * 16, clock=clock, qop=(), opaque=False)
    challenge = server.challenge()
    assert "qop" not in challenge and "opaque" not in challenge
    value = answer_challenge(challenge, "INVITE", "sip:1002@pbx", "1001", "secret1001")
    params = parse_credentials(value)[1]
    assert "qop" not in params and "nc" not in params and "cnonce" not in params
    assert server.verify(value, "INVITE", PASSWORDS.get).status is VerifyStatus.OK


def test_sipp_style_answer_without_qop_accepted_by_a_qop_challenge(
    server: DigestChallenger,
) -> None:
    # sipp (and some phones) ignore qop and answer RFC 2069 style
    nonce = parse_challenge(server.challenge()).nonce
    ha1 = compute_ha1("1001", "pbx.example.com", "secret1001")
    response = compute_response(algorithm="MD5", method="INVITE", uri="sip:1002@pbx",
                                nonce=nonce, ha1=ha1)
    value = (f'Digest username="1001",realm="pbx.example.com",uri="sip:1002@pbx",'
             f'nonce="{nonce}",response="{response}",algorithm=MD5')
    assert server.verify(value, "INVITE", PASSWORDS.get).status is VerifyStatus.OK


def test_auth_int_covers_the_body(server: DigestChallenger) -> None:
    challenge = server.challenge().replace('qop="auth"', 'qop="auth-int"')
    value = answer_challenge(challenge, "INVITE", "sip:x@pbx", "1001", "secret1001",
                             body=b"v=0\r\n")
    assert "qop=auth-int" in value
    assert server.verify(value, "INVITE", PASSWORDS.get, body=b"v=0\r\n")
    assert not server.verify(value, "INVITE", PASSWORDS.get, body=b"v=1\r\n")


def test_verify_against_password_string_and_precomputed_ha1(server: DigestChallenger) -> None:
    value = answer_challenge(server.challenge(), "REGISTER", "sip:pbx", "alice", "wonderland")
    assert server.verify(value, "REGISTER", "wonderland").ok
    server2 = DigestChallenger("pbx.example.com", b"k" * 32, clock=server._clock,
                               max_tracked_nonces=0)
    ha1 = compute_ha1("alice", "pbx.example.com", "wonderland")
    assert server2.verify(value, "REGISTER", ha1=ha1).ok
    assert server2.verify(value, "REGISTER", ha1=ha1.upper()).ok
    assert server2.verify(value, "REGISTER", ha1={"alice": ha1}.get).ok
    assert server2.verify(value, "REGISTER", ha1={}.get).status is VerifyStatus.FAILED


def test_digest_client_counts_nonce_uses(server: DigestChallenger) -> None:
    client = DigestClient("1001", "secret1001")
    assert client.again("REGISTER", "sip:pbx") is None
    first = client.answer(server.challenge(), "REGISTER", "sip:pbx")
    second = client.again("REGISTER", "sip:pbx")
    assert second is not None
    assert parse_credentials(first)[1]["nc"] == "00000001"
    assert parse_credentials(second)[1]["nc"] == "00000002"
    assert server.verify(first, "REGISTER", PASSWORDS.get).ok
    assert server.verify(second, "REGISTER", PASSWORDS.get).ok


# ----------------------------------------------------------------- stale and failures
def test_expired_nonce_is_stale_and_rechallenge_says_so(
    server: DigestChallenger, clock: Clock
) -> None:
    value = answer_challenge(server.challenge(), "REGISTER", "sip:pbx", "1001", "secret1001")
    clock.now += 299
    assert server.verify(value, "REGISTER", PASSWORDS.get).ok
    clock.now += 2
    result = server.verify(value, "REGISTER", PASSWORDS.get)
    assert result.status is VerifyStatus.STALE and result.username == "1001"
    again = server.challenge(stale=True)
    assert parse_challenge(again).stale
    fresh = answer_challenge(again, "REGISTER", "sip:pbx", "1001", "secret1001")
    assert server.verify(fresh, "REGISTER", PASSWORDS.get).ok


def test_expired_nonce_with_wrong_password_is_failed_not_stale(
    server: DigestChallenger, clock: Clock
) -> None:
    value = answer_challenge(server.challenge(), "REGISTER", "sip:pbx", "1001", "guess")
    clock.now += 1000
    assert server.verify(value, "REGISTER", PASSWORDS.get).status is VerifyStatus.FAILED


def test_replayed_nonce_count_is_stale(server: DigestChallenger) -> None:
    value = answer_challenge(server.challenge(), "REGISTER", "sip:pbx", "1001", "secret1001")
    assert server.verify(value, "REGISTER", PASSWORDS.get).ok
    replay = server.verify(value, "REGISTER", PASSWORDS.get)
    assert replay.status is VerifyStatus.STALE and "replay" in replay.reason


def test_replay_tracking_can_be_disabled_and_is_bounded(clock: Clock) -> None:
    off = DigestChallenger("r", b"s", clock=clock, max_tracked_nonces=0)
    value = answer_challenge(off.challenge(), "REGISTER", "sip:r", "alice", "wonderland")
    assert off.verify(value, "REGISTER", "wonderland").ok
    assert off.verify(value, "REGISTER", "wonderland").ok
    small = DigestChallenger("r", b"s", clock=clock, max_tracked_nonces=2)
    values = [answer_challenge(small.challenge(), "REGISTER", "sip:r", "alice", "wonderland")
              for _ in range(3)]
    for v in values:
        assert small.verify(v, "REGISTER", "wonderland").ok
    assert len(small._nc_seen) == 2


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda v: v.replace('response="', 'response="0'), "wrong response"),
        (lambda v: v.replace('realm="pbx.example.com"', 'realm="other"'), "wrong realm"),
        (lambda v: v.replace('username="1001"', 'username="1009"'), "unknown user"),
        (lambda v: v.replace('opaque="', 'opaque="x'), "wrong opaque"),
        (lambda v: v.replace("algorithm=MD5", "algorithm=SHA-512"), "unsupported"),
        (lambda v: v.replace("nc=00000001", "nc=0000000g"), "bad nc"),
        (lambda v: v.replace("qop=auth", "qop=auth-conf"), "unsupported qop"),
    ],
)
def test_tampered_credentials_fail(
    server: DigestChallenger, mutate: object, reason: str
) -> None:
    value = answer_challenge(server.challenge(), "REGISTER", "sip:pbx", "1001", "secret1001")
    result = server.verify(mutate(value), "REGISTER", PASSWORDS.get)  # type: ignore[operator]
    assert result.status is VerifyStatus.FAILED
    assert reason in result.reason


def test_tampered_or_foreign_nonce_is_rejected(server: DigestChallenger, clock: Clock) -> None:
    challenge = server.challenge()
    nonce = parse_challenge(challenge).nonce
    # move the timestamp forward (would make an old nonce fresh): the MAC no longer fits
    forged = f"{int(nonce[:16], 16) + 10**6:016x}" + nonce[16:]
    for bad in (forged, nonce[:-2] + "00", "abc", "zz" * 32):
        value = answer_challenge(challenge.replace(nonce, bad), "REGISTER", "sip:pbx",
                                 "1001", "secret1001")
        result = server.verify(value, "REGISTER", PASSWORDS.get)
        assert result.status is VerifyStatus.FAILED, bad
        assert result.reason == "nonce not issued here"
    other = DigestChallenger("pbx.example.com", b"another secret", clock=clock)
    value = answer_challenge(other.challenge(), "REGISTER", "sip:pbx", "1001", "secret1001")
    assert server.verify(value, "REGISTER", PASSWORDS.get).status is VerifyStatus.FAILED


def test_nonce_from_another_realm_with_the_same_secret_is_rejected(clock: Clock) -> None:
    a = DigestChallenger("a.example", b"shared", clock=clock)
    b = DigestChallenger("b.example", b"shared", clock=clock)
    nonce = parse_challenge(a.challenge()).nonce
    assert a.nonce_age(nonce) == 0.0
    assert b.nonce_age(nonce) is None


def test_wrong_password_and_method_and_uri(server: DigestChallenger) -> None:
    value = answer_challenge(server.challenge(), "REGISTER", "sip:pbx", "1001", "nope")
    assert server.verify(value, "REGISTER", PASSWORDS.get).status is VerifyStatus.FAILED
    good = answer_challenge(server.challenge(), "REGISTER", "sip:pbx", "1001", "secret1001")
    assert not server.verify(good, "INVITE", PASSWORDS.get)
    assert server.verify(good, "REGISTER", PASSWORDS.get, uri="sip:other").reason.startswith(
        "digest uri"
    )


@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_credentials(server: DigestChallenger, value: str | None) -> None:
    assert server.verify(value, "REGISTER", PASSWORDS.get).status is VerifyStatus.MISSING


@pytest.mark.parametrize(
    "value",
    [
        "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
        "Digest",
        'Digest username="1001"',
        'Digest username="1001", realm="pbx.example.com", nonce="x", uri="sip:pbx"',
        'Digest username="unterminated, realm="pbx.example.com"',
        "Digest username",
        'Digest username="1001", userhash=true, realm="pbx.example.com", nonce="x", '
        'uri="u", response="r"',
    ],
)
def test_malformed_or_foreign_credentials_fail(server: DigestChallenger, value: str) -> None:
    assert server.verify(value, "REGISTER", PASSWORDS.get).status is VerifyStatus.FAILED


def test_odd_but_valid_spacing_and_quoting(server: DigestChallenger) -> None:
    challenge = server.challenge()
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
    assert server.verify(value, "REGISTER", PASSWORDS.get).ok


def test_realm_with_quotes_is_escaped_both_ways(clock: Clock) -> None:
    realm = 'the "big" \\ realm'
    server = DigestChallenger(realm, b"s", clock=clock)
    challenge = server.challenge()
    assert parse_challenge(challenge).realm == realm
    value = answer_challenge(challenge, "REGISTER", "sip:pbx", "alice", "wonderland")
    assert parse_credentials(value)[1]["realm"] == realm
    assert server.verify(value, "REGISTER", "wonderland").ok


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


def test_multiple_algorithm_challenges(server: DigestChallenger) -> None:
    values = server.challenges(algorithms=("SHA-256", "MD5"))
    assert len(values) == 2
    value = answer_challenge(pick_challenge(values), "REGISTER", "sip:pbx", "1001",
                             "secret1001")
    assert "algorithm=SHA-256" in value
    assert server.verify(value, "REGISTER", PASSWORDS.get).ok
    assert server.challenge(algorithms=("SHA-256", "MD5")).count("Digest ") == 2


def test_challenger_needs_a_secret() -> None:
    with pytest.raises(ValueError):
        DigestChallenger("r", b"")
