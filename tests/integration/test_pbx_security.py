"""The outside security test's findings, replayed with real packets against a real ippbx.

Every request here is hand-written SIP on a UDP socket bound to a loopback address of the
test's choosing (any 127.0.0.0/8 address is ours on Linux), which is how a spoofed source
is played: the "spoofer" sends from the victim's address and never uses the answers.
Credentials are computed from the PBX's real challenges. Unless a test says otherwise the
PBX runs the product's digest rules (`digest_uri = "request-uri"`, not the harness's
sipp-friendly "host") and its default `[security]`, where nothing is trusted.

1. a captured RFC 2069 Proxy-Authorization replayed from another address or to another
   number places no call; the digest's `uri` must be the Request-URI (sipp too, which
   needs `-auth_uri` for that);
2. bans that hold: (a) registering one's own extension between guesses at another's
   password does not reset the count; (b) 10,000 spoofed one-packet failures neither
   count nor push out a guesser's count; (c) more bans than the table holds, and a new
   attacker is still banned; (d) spoofed junk credentials never ban the victim address;
   plus the per-extension lockout, the rate limit and trusted addresses;
3. an unknown auth scheme gets a challenge and is not counted;
and SHA-256 offered before MD5 when configured, either one accepted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from pbx_harness import PbxHarness, Start, ext_password
from sipp_harness import SCENARIO_DIR, SippFactory

from ippbx.pbx.security import Security
from ippbx.sip.digest import answer_challenge, compute_ha1, compute_response, parse_challenge
from ippbx.sip.message import Response, parse_message

REALM = "ippbx.test"  # the harness's [sip] domain
STRICT: dict[str, Any] = {"digest_uri": "request-uri"}


class UdpPhone:
    """Hand-made SIP over one UDP socket bound to `ip` (port chosen by the kernel)."""

    def __init__(self, pbx: PbxHarness, ip: str) -> None:
        host, port = pbx.sip_address.rsplit(":", 1)
        self.pbx_host, self.pbx_port = host, int(port)
        self.ip = ip
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.cseq = 0
        self.call_id = f"{os.urandom(6).hex()}@{ip}"

    def close(self) -> None:
        self.sock.close()

    @property
    def server(self) -> str:
        return f"{self.pbx_host}:{self.pbx_port}"

    def request(self, method: str, uri: str, user: str, headers: dict[str, str]) -> tuple[
            str, bytes]:
        self.cseq += 1
        branch = "z9hG4bK" + os.urandom(6).hex()
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.ip}:{self.port};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: <sip:{user}@{self.server}>;tag={self.call_id[:8]}",
            f"To: <{uri if method == 'INVITE' else f'sip:{user}@{self.server}'}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} {method}",
            f"Contact: <sip:{user}@{self.ip}:{self.port}>",
            *(f"{name}: {value}" for name, value in headers.items()),
            "Content-Length: 0",
        ]
        return branch, ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def send(self, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendto(self.sock, data,
                                                     (self.pbx_host, self.pbx_port))

    async def final(self, branch: str, timeout: float = 5.0) -> Response:
        """The final response to the request with `branch` (provisionals skipped)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"no final response from {self.ip} in {timeout} s")
            data = await asyncio.wait_for(loop.sock_recv(self.sock, 65535), left)
            message = parse_message(data)
            if isinstance(message, Response) and message.status >= 200 \
                    and message.top_via.branch == branch:
                return message

    async def transact(self, method: str, uri: str, user: str,
                       headers: dict[str, str] | None = None) -> Response:
        branch, data = self.request(method, uri, user, headers or {})
        await self.send(data)
        response = await self.final(branch)
        if method == "INVITE":  # ACK the non-2xx final (same branch, its To tag)
            ack = [f"ACK {uri} SIP/2.0",
                   f"Via: SIP/2.0/UDP {self.ip}:{self.port};branch={branch};rport",
                   "Max-Forwards: 70", f"From: {response.get('From')}",
                   f"To: {response.get('To')}", f"Call-ID: {self.call_id}",
                   f"CSeq: {self.cseq} ACK", "Content-Length: 0"]
            await self.send(("\r\n".join(ack) + "\r\n\r\n").encode())
        return response

    async def register(self, user: str, password: str | None) -> Response:
        """REGISTER as `user`; with a password, answer the challenge (qop, MD5)."""
        uri = f"sip:{self.server}"
        first = await self.transact("REGISTER", uri, user)
        if password is None or first.status != 401:
            return first
        credentials = answer_challenge(first.get("WWW-Authenticate") or "", "REGISTER", uri,
                                       user, password)
        return await self.transact("REGISTER", uri, user, {"Authorization": credentials})


def rfc2069(challenge: Response, method: str, uri: str, user: str) -> str:
    """RFC 2069 credentials (no qop, no nc) answering `challenge`'s first Digest header."""
    header = challenge.get("Proxy-Authenticate") or challenge.get("WWW-Authenticate") or ""
    nonce = parse_challenge(header).nonce
    ha1 = compute_ha1(user, REALM, ext_password(user))
    response = compute_response(algorithm="MD5", method=method, uri=uri, nonce=nonce, ha1=ha1)
    return (f'Digest username="{user}", realm="{REALM}", nonce="{nonce}", uri="{uri}", '
            f'response="{response}", algorithm=MD5')


def security_of(pbx: PbxHarness) -> Security:
    return pbx.app.pbx.auth.security


def phones(pbx: PbxHarness, *ips: str) -> list[UdpPhone]:
    return [UdpPhone(pbx, ip) for ip in ips]


# -- 1. digest replay ----------------------------------------------------------------------
async def test_captured_digest_replayed_elsewhere_places_no_call(start_pbx: Start) -> None:
    pbx = await start_pbx([], security=STRICT)
    victim, attacker = phones(pbx, "127.0.0.1", "127.0.0.2")
    try:
        to_1002, to_1003 = f"sip:1002@{victim.server}", f"sip:1003@{victim.server}"
        challenge = await victim.transact("INVITE", to_1002, "1001")
        assert challenge.status == 407
        captured = {"Proxy-Authorization": rfc2069(challenge, "INVITE", to_1002, "1001")}
        placed = await victim.transact("INVITE", to_1002, "1001", captured)
        assert placed.status == 480  # authenticated and routed: 1002 is not registered
        await pbx.wait_idle()
        assert len(pbx.app.store.cdrs()) == 1

        # from another address, to another number or the same one: a fresh challenge
        for uri in (to_1003, to_1002):
            answer = await attacker.transact("INVITE", uri, "1001", captured)
            assert answer.status == 407 and "stale" not in answer.get("Proxy-Authenticate", "")
        assert security_of(pbx).failures("127.0.0.2") == 0  # not the sender's nonce
        # from the same address: the nonce was single-use
        answer = await victim.transact("INVITE", to_1002, "1001", captured)
        assert answer.status == 407 and "stale=true" in answer.get("Proxy-Authenticate", "")
        assert security_of(pbx).failures("127.0.0.1") == 0
        # to another number: the digest's uri is not the Request-URI
        answer = await victim.transact("INVITE", to_1003, "1001", captured)
        assert answer.status == 407
        assert security_of(pbx).failures("127.0.0.1") == 1
        # a fresh, right digest whose uri is not the Request-URI: refused all the same
        fresh = await victim.transact("INVITE", to_1003, "1001")
        wrong_uri = {"Proxy-Authorization": rfc2069(fresh, "INVITE", to_1002, "1001")}
        answer = await victim.transact("INVITE", to_1003, "1001", wrong_uri)
        assert answer.status == 407
        assert security_of(pbx).failures("127.0.0.1") == 2

        await pbx.wait_idle()
        assert len(pbx.app.store.cdrs()) == 1  # no other call was ever placed
    finally:
        for phone in (victim, attacker):
            phone.close()
    await pbx.stop()


@pytest.mark.parametrize(("auth_uri", "status"), [(True, 480), (False, 407)])
async def test_sipp_digest_uri_must_be_the_request_uri(
    start_pbx: Start, sipp: SippFactory, tmp_path: Path, auth_uri: bool, status: int
) -> None:
    """sipp 3.6.1 signs `uri="sip:REMOTE_IP:REMOTE_PORT"` unless given `-auth_uri`: under
    the product's rule its INVITE is challenged again; with `-auth_uri NUMBER@PBX` the
    digest names the Request-URI and the call goes through (1002 is not registered: 480)."""
    pbx = await start_pbx([], security=STRICT)
    text = (SCENARIO_DIR / "pbx_uac_auth_reject.xml").read_text()
    scenario = tmp_path / f"reject_{status}.xml"
    scenario.write_text(text.replace('response="EXPECTED"', f'response="{status}"'))
    extra = ["-auth_uri", f"1002@{pbx.sip_address}"] if auth_uri else []
    near = sipp(str(scenario), remote=pbx.sip_address, service="1002", calls=1,
                auth=("1001", ext_password("1001")), keys={"user": "1001"},
                recv_timeout_ms=5000, sipp_timeout_s=20, extra=extra)
    await near.astart()
    (await near.await_result(15)).assert_ok(calls=1)
    await pbx.wait_idle()
    assert len(pbx.app.store.cdrs()) == (1 if auth_uri else 0)
    await pbx.stop()


# -- 2a. own extension between guesses -----------------------------------------------------
async def test_own_registrations_between_guesses_do_not_reset_the_count(
    start_pbx: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ippbx.pbx.security")
    pbx = await start_pbx([], security=STRICT)
    ban_failures = pbx.app.config.security.ban_failures
    assert ban_failures == 10
    [user] = phones(pbx, "127.0.0.3")  # a phone user of 1001 guessing 1002's password
    try:
        for guess in range(ban_failures):
            assert (await user.register("1002", f"guess{guess}")).status == 403
            if guess < ban_failures - 1:
                assert (await user.register("1001", ext_password("1001"))).status == 200
        answer = await user.register("1001", ext_password("1001"))
        assert (answer.status, answer.reason) == (403, "Banned")
    finally:
        user.close()
    bans = [r.getMessage() for r in caplog.records if r.name == "ippbx.pbx.security"]
    assert bans == ["SIP: banned 127.0.0.3 for 300 s after 10 failed authentications "
                    "(extensions: 1002)"]
    await pbx.stop()


async def test_distributed_guesses_lock_the_extension_but_not_its_phone(
    start_pbx: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ippbx.pbx.security")
    pbx = await start_pbx([], security={**STRICT, "ban_failures": 3, "lockout_failures": 4,
                                        "lockout_seconds": 1})
    own, g1, g2, stranger = phones(pbx, "127.0.0.20", "127.0.0.21", "127.0.0.22",
                                   "127.0.0.23")
    try:
        assert (await own.register("1002", ext_password("1002"))).status == 200
        for guesser in (g1, g2):  # two guesses each: neither address is banned
            for _ in range(2):
                assert (await guesser.register("1002", "guess")).status == 403
        assert not security_of(pbx).is_banned("127.0.0.21")
        # 1002 is locked: the right password from a new address is refused...
        assert (await stranger.register("1002", ext_password("1002"))).status == 403
        # ...its own phone keeps registering, and other extensions are not affected
        assert (await own.register("1002", ext_password("1002"))).status == 200
        assert (await stranger.register("1001", ext_password("1001"))).status == 200
        assert [r.getMessage() for r in caplog.records if r.name == "ippbx.pbx.security"] == [
            "SIP: extension 1002 locked for 1 s after 4 failed authentications "
            "(the last from 127.0.0.22)"]

        async def unlocked() -> bool:
            return (await stranger.register("1002", ext_password("1002"))).status == 200

        await pbx.wait_for(unlocked, 5, "the lockout to end")
    finally:
        for phone in (own, g1, g2, stranger):
            phone.close()
    await pbx.stop()


# -- 2b. a flood of spoofed one-packet failures ----------------------------------------------
async def test_ten_thousand_spoofed_failures_do_not_reset_a_guesser(start_pbx: Start) -> None:
    pbx = await start_pbx([], security=STRICT)
    guard = security_of(pbx)
    [attacker] = phones(pbx, "127.0.0.4")
    try:
        for _ in range(5):
            assert (await attacker.register("1002", "guess")).status == 403
        assert guard.failures("127.0.0.4") == 5

        junk = {"Authorization": f'Digest username="1002", realm="{REALM}", '
                                 f'nonce="{"ab" * 32}", uri="sip:x", response="{"0" * 32}"'}
        sent = 0
        for batch in range(50):  # 50 × 200 = 10,000 sources, each one packet
            spoofers = phones(pbx, *(f"127.1.{batch}.{i + 1}" for i in range(200)))
            try:
                branches = []
                for spoofer in spoofers:
                    branch, data = spoofer.request("REGISTER", f"sip:{spoofer.server}", "1002",
                                                   junk)
                    await spoofer.send(data)
                    branches.append(branch)
                answers = await asyncio.gather(*(s.final(b, timeout=10)
                                                 for s, b in zip(spoofers, branches, strict=True)))
                assert {a.status for a in answers} == {401}  # a challenge, nothing counted
                sent += len(spoofers)
            finally:
                for spoofer in spoofers:
                    spoofer.close()
        assert sent == 10_000
        assert guard.failures("127.0.0.4") == 5
        assert guard.failures("127.1.0.1") == 0 and guard.failures("127.1.49.200") == 0
        for _ in range(4):
            assert (await attacker.register("1002", "guess")).status == 403
        assert not guard.is_banned("127.0.0.4")
        assert (await attacker.register("1002", "guess")).status == 403
        assert guard.is_banned("127.0.0.4")
    finally:
        attacker.close()
    await pbx.stop()


# -- 2c. more bans than the table holds ------------------------------------------------------
async def test_a_new_attacker_is_banned_after_the_ban_table_filled(start_pbx: Start) -> None:
    pbx = await start_pbx([], security={**STRICT, "ban_failures": 1, "ban_seconds": 1,
                                        "table_size": 16, "lockout_failures": 1000})
    guard = security_of(pbx)
    attackers = phones(pbx, *(f"127.0.2.{i}" for i in range(1, 23)))
    try:
        for attacker in attackers[:20]:  # more bans than the table holds
            assert (await attacker.register("1001", "guess")).status == 403
        assert len(guard._bans) == 16
        late = attackers[20]  # the table is full of live bans: the oldest gives way
        assert (await late.register("1001", "guess")).status == 403
        answer = await late.register("1001", ext_password("1001"))
        assert (answer.status, answer.reason) == (403, "Banned")

        async def all_expired() -> bool:
            return not any(guard.is_banned(a.ip) for a in attackers[:21])

        await pbx.wait_for(all_expired, 5, "the bans to expire")
        newest = attackers[21]  # bans expired: a new attacker is banned all the same
        assert (await newest.register("1001", "guess")).status == 403
        answer = await newest.register("1001", ext_password("1001"))
        assert (answer.status, answer.reason) == (403, "Banned")
        assert len(guard._bans) <= 16
    finally:
        for attacker in attackers:
            attacker.close()
    await pbx.stop()


# -- 2d. spoofed junk credentials never ban the victim -------------------------------------
async def test_spoofed_junk_credentials_do_not_ban_the_victim(start_pbx: Start) -> None:
    pbx = await start_pbx([], security=STRICT)
    guard = security_of(pbx)
    spoofer, attacker = phones(pbx, "127.0.0.5", "127.0.0.6")  # spoofer: the victim's address
    try:
        # a real challenge the attacker got at its own address, answered wrongly...
        challenge = await attacker.transact("REGISTER", f"sip:{attacker.server}", "1001")
        stolen = answer_challenge(challenge.get("WWW-Authenticate") or "", "REGISTER",
                                  f"sip:{spoofer.server}", "1001", "guess")
        random = (f'Digest username="1001", realm="{REALM}", nonce="{os.urandom(32).hex()}", '
                  f'uri="sip:{spoofer.server}", response="{"0" * 32}", algorithm=MD5')
        for i in range(2 * guard.section.ban_failures):  # ...and junk, from the victim's address
            value = stolen if i % 2 else random
            answer = await spoofer.transact("REGISTER", f"sip:{spoofer.server}", "1001",
                                            {"Authorization": value})
            assert answer.status == 401
        assert guard.failures("127.0.0.5") == 0 and not guard.is_banned("127.0.0.5")
        assert guard.extension_failures("1001") == 0
        # the victim's real phone registers
        assert (await spoofer.register("1001", ext_password("1001"))).status == 200
    finally:
        spoofer.close()
        attacker.close()
    await pbx.stop()


# -- 3. unknown auth scheme ------------------------------------------------------------------
async def test_unknown_auth_scheme_gets_a_challenge_and_is_not_counted(
    start_pbx: Start,
) -> None:
    """RFC 4475 regaut01: `Authorization: NoOneKnowsThisScheme opaque-data=here`."""
    pbx = await start_pbx([], security=STRICT)
    guard = security_of(pbx)
    [phone] = phones(pbx, "127.0.0.9")
    try:
        unknown = "NoOneKnowsThisScheme opaque-data=here"
        for _ in range(guard.section.ban_failures + 2):
            answer = await phone.transact("REGISTER", f"sip:{phone.server}", "1001",
                                          {"Authorization": unknown})
            assert answer.status == 401
            assert parse_challenge(answer.get("WWW-Authenticate") or "").realm == REALM
        answer = await phone.transact("INVITE", f"sip:1002@{phone.server}", "1001",
                                      {"Proxy-Authorization": unknown})
        assert answer.status == 407 and answer.get("Proxy-Authenticate")
        assert guard.failures("127.0.0.9") == 0 and not guard.is_banned("127.0.0.9")
        assert (await phone.register("1001", ext_password("1001"))).status == 200
    finally:
        phone.close()
    await pbx.stop()


# -- SHA-256 beside MD5 ------------------------------------------------------------------------
async def test_sha256_offered_first_and_either_answer_accepted(start_pbx: Start) -> None:
    pbx = await start_pbx([], security={**STRICT, "digest_algorithms": ["SHA-256", "MD5"]})
    [phone] = phones(pbx, "127.0.0.10")
    try:
        uri = f"sip:{phone.server}"
        for index, algorithm in ((0, "SHA-256"), (1, "MD5")):
            challenge = await phone.transact("REGISTER", uri, "1001")
            offered = challenge.get_all("WWW-Authenticate")
            assert [parse_challenge(v).algorithm for v in offered] == ["SHA-256", "MD5"]
            credentials = answer_challenge(offered[index], "REGISTER", uri, "1001",
                                           ext_password("1001"))
            assert f"algorithm={algorithm}" in credentials
            answer = await phone.transact("REGISTER", uri, "1001",
                                          {"Authorization": credentials})
            assert answer.status == 200, algorithm
    finally:
        phone.close()
    await pbx.stop()


# -- rate limit and trusted addresses --------------------------------------------------------
async def test_rate_limit_and_trusted_addresses(start_pbx: Start) -> None:
    pbx = await start_pbx([], security={**STRICT, "rate_limit": 2, "rate_burst": 5,
                                        "ban_failures": 3, "trusted": ["127.0.0.7/32"]})
    busy, trusted = phones(pbx, "127.0.0.8", "127.0.0.7")
    try:
        uri = f"sip:{busy.server}"
        kept = await busy.transact("REGISTER", uri, "1001")  # a challenge (token 1 of 5)
        statuses = [(await busy.transact("REGISTER", uri, "1001")).status for _ in range(6)]
        assert statuses == [401] * 4 + [503] * 2
        limited = await busy.transact("REGISTER", uri, "1001")
        assert limited.status == 503 and limited.get("Retry-After") == "1"
        # valid credentials are never limited
        credentials = answer_challenge(kept.get("WWW-Authenticate") or "", "REGISTER", uri,
                                       "1001", ext_password("1001"))
        answer = await busy.transact("REGISTER", uri, "1001", {"Authorization": credentials})
        assert answer.status == 200

        # a trusted address: never limited, never banned
        for _ in range(10):
            assert (await trusted.transact("REGISTER", uri, "1002")).status == 401
        for _ in range(5):
            assert (await trusted.register("1002", "guess")).status == 403
        assert not security_of(pbx).is_banned("127.0.0.7")
        assert (await trusted.register("1002", ext_password("1002"))).status == 200
    finally:
        busy.close()
        trusted.close()
    await pbx.stop()
