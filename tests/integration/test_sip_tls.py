"""SIP over TLS (RFC 3261 §26): phones register and call over TLS, calls leave over TLS trunks.

* baresip, a real softphone, registers as extension 1003 to ippbx's `[sip] tls_listen`
  port, trusting only ippbx's self-signed certificate (`ippbx-sip.crt`, made beside the
  store at the first start), and calls 9 5551234 out through a UDP trunk (sipp); while
  the call is up `outbound/query` shows it, and it ends when baresip hangs up.
* A TLS trunk: the extension (sipp, UDP) dials out and ippbx carries the call to a
  carrier that listens only on TLS (ippbx's own SIP stack with its own certificate);
  ippbx checks the carrier's certificate against `[sip] tls_ca`. With a CA the carrier's
  certificate does not chain to, nothing reaches the carrier and the caller gets 503 at
  once (no 32 s wait for Timer B); the same for a TCP trunk whose port is closed.
* The TLS listener on the stock event loop and on uvloop: connections are capped per
  address from accept on (before their handshake), a handshake must finish in time,
  plain text on the TLS port is refused, and every count is released.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
import uvloop
from baresip_harness import Baresip, baresip_available
from pbx_harness import PbxHarness, TrunkSpec, dialling, ext_password, rejected_with
from sip_wire import options_request, read_message
from sipp_harness import SippFactory, free_port

from ippbx.certs import make_self_signed, server_context
from ippbx.sip.message import Request, Response, make_response
from ippbx.sip.transport import SipTransport
from ippbx.sip.wire import Peer


async def test_baresip_registers_and_calls_out_over_tls(
    tmp_path: Path, sipp: SippFactory, caplog: pytest.LogCaptureFixture
) -> None:
    if not baresip_available():
        pytest.skip("baresip not installed (Debian package baresip; `make test` installs it)")
    caplog.set_level(logging.INFO, logger="ippbx")
    carrier_port = free_port()
    pbx = await PbxHarness.start(
        tmp_path, trunks=[TrunkSpec("carrier", carrier_port)],
        security={"digest_uri": "request-uri"}, sip={"tls_listen": "127.0.0.1:0"})
    softphone: Baresip | None = None
    try:
        tls_port = pbx.app.pbx.transport.tls_port
        assert tls_port is not None
        cert = tmp_path / "ippbx-sip.crt"
        assert cert.is_file() and (tmp_path / "ippbx-sip.key").stat().st_mode & 0o077 == 0
        assert any("SIP TLS certificate" in r.getMessage() and "fingerprint" in r.getMessage()
                   for r in caplog.records)
        account = (f"<sip:1003@127.0.0.1:{tls_port};transport=tls>;auth_user=1003;"
                   f"auth_pass={ext_password('1003')};regint=60;audio_codecs=PCMU;"
                   "answermode=auto")
        softphone = Baresip.configure(tmp_path / "baresip", account,
                                      extra=[f"sip_cafile {cert}"])
        await softphone.start()
        await softphone.add_account(timeout=10)
        binding = pbx.app.pbx.registrar.contacts("1003")
        assert [b.source.transport for b in binding] == ["tls"], binding

        carrier = await sipp("uas.xml", port=carrier_port, calls=1).astart()
        await softphone.command("dial", "95551234")
        await softphone.wait_event("CALL_ESTABLISHED", timeout=10)

        async def talking() -> list[dict[str, str]]:
            return [c for c in await pbx.outbound() if c.get("status") == "Talking"]

        calls = await pbx.wait_for(talking, timeout=5, what="the TLS call to show Talking")
        assert [(c["from"], c["to"], c["trunk"]) for c in calls] == [
            ("1003", "5551234", "carrier")], calls

        await softphone.command("hangup")
        await softphone.wait_event("CALL_CLOSED", timeout=10)
        (await carrier.await_result(timeout=10)).assert_ok(calls=1)

        async def no_calls() -> bool:
            return await pbx.outbound() == []

        await pbx.wait_for(no_calls, timeout=5, what="outbound/query to be empty")
        await pbx.wait_idle(timeout=5)
    finally:
        if softphone is not None:
            await softphone.stop()
        await pbx.stop()


NUMBER = "95551234"  # 9 (the route's prefix) 5551234


class TlsCarrier:
    """A carrier listening on TLS only: answers INVITE 200 (with the offer as answer),
    ACK and BYE as a UAS would, and records what it got."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.transport = SipTransport(
            "127.0.0.1", 0, self.on_message, tls_listen=("127.0.0.1", 0),
            tls_server=server_context(cert, key))
        self.requests: list[tuple[str, Peer]] = []
        self.invited = asyncio.Event()

    async def start(self) -> int:
        await self.transport.start()
        assert self.transport.tls_port is not None
        return self.transport.tls_port

    def on_message(self, message: Request | Response, peer: Peer) -> None:
        if not isinstance(message, Request):
            return
        self.requests.append((message.method, peer))
        if message.method == "ACK":
            return
        extra: list[tuple[str, str]] = []
        body = b""
        if message.method == "INVITE":
            extra = [("Contact", f"<sip:carrier@127.0.0.1:{self.transport.tls_port};"
                                 "transport=tls>"), ("Content-Type", "application/sdp")]
            body = message.body
            self.invited.set()
        response = make_response(message, 200, to_tag="carrier1", headers=extra, body=body)
        self.transport.send(response, self.transport.response_destination(response, peer))


async def test_calls_leave_through_a_tls_trunk_whose_certificate_is_checked(
    tmp_path: Path, sipp: SippFactory
) -> None:
    cert_pem, key_pem = make_self_signed("carrier", ["127.0.0.1"])
    (tmp_path / "carrier.crt").write_bytes(cert_pem)
    (tmp_path / "carrier.key").write_bytes(key_pem)
    stranger = tmp_path / "stranger.crt"
    stranger.write_bytes(make_self_signed("stranger", ["127.0.0.1"])[0])
    carrier = TlsCarrier(tmp_path / "carrier.crt", tmp_path / "carrier.key")
    carrier_port = await carrier.start()
    try:
        for ca, answered in ((tmp_path / "carrier.crt", True), (stranger, False)):
            folder = tmp_path / ("good" if answered else "bad")
            folder.mkdir()
            pbx = await PbxHarness.start(
                folder, trunks=[TrunkSpec("carrier", carrier_port,
                                          extra='transport = "tls"')],
                sip={"tls_ca": str(ca)})
            try:
                carrier.requests.clear()
                carrier.invited.clear()
                if answered:
                    caller = await dialling(sipp, pbx, "uac_auth.xml", NUMBER,
                                           duration_ms=1500).astart()
                    await asyncio.wait_for(carrier.invited.wait(), 10)
                    calls = await pbx.wait_for(pbx.outbound, timeout=5,
                                               what="the call in outbound/query")
                    assert [(c["to"], c["trunk"]) for c in calls] == [
                        ("5551234", "carrier")], calls
                    (await caller.await_result(timeout=20)).assert_ok(calls=1)
                    methods = [method for method, _ in carrier.requests]
                    assert methods == ["INVITE", "ACK", "BYE"], methods
                    assert {peer.transport for _, peer in carrier.requests} == {"tls"}
                else:
                    started = asyncio.get_running_loop().time()
                    caller = await dialling(sipp, pbx, rejected_with(tmp_path, 503),
                                            NUMBER).astart()
                    (await caller.await_result(timeout=20)).assert_ok(calls=1)
                    # the failed handshake fails the INVITE at once, not at Timer B (32 s)
                    assert asyncio.get_running_loop().time() - started < 10
                    assert carrier.requests == []
                    assert pbx.app.pbx.transport.cut == {}  # (no incoming cut either)
                await pbx.wait_idle(timeout=5)
            finally:
                await pbx.stop()
    finally:
        await carrier.transport.stop()


async def test_a_refused_tcp_connect_fails_the_call_at_once(
    tmp_path: Path, sipp: SippFactory
) -> None:
    closed_port = free_port()  # nothing listens there
    pbx = await PbxHarness.start(
        tmp_path, trunks=[TrunkSpec("carrier", closed_port, extra='transport = "tcp"')])
    try:
        started = asyncio.get_running_loop().time()
        caller = await dialling(sipp, pbx, rejected_with(tmp_path, 503), NUMBER).astart()
        (await caller.await_result(timeout=20)).assert_ok(calls=1)
        assert asyncio.get_running_loop().time() - started < 10  # not Timer B's 32 s
        await pbx.wait_idle(timeout=5)
    finally:
        await pbx.stop()


# -- the TLS listener itself, on both event loops ippbx runs on ---------------------------------
async def eof_within(reader: asyncio.StreamReader, timeout: float) -> bool:
    """True if the other side closes within `timeout` s without sending anything."""
    try:
        return await asyncio.wait_for(reader.read(1), timeout) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


async def listener_scenario(tmp_path: Path) -> None:
    cert_pem, key_pem = make_self_signed("pbx", ["127.0.0.1"])
    (tmp_path / "pbx.crt").write_bytes(cert_pem)
    (tmp_path / "pbx.key").write_bytes(key_pem)
    seen: list[Peer] = []
    server: SipTransport

    def on_message(message: Request | Response, peer: Peer) -> None:
        seen.append(peer)
        if isinstance(message, Request):
            answer = make_response(message, 200, to_tag="t")
            server.send(answer, server.response_destination(answer, peer))

    server = SipTransport("127.0.0.1", 0, on_message, tls_listen=("127.0.0.1", 0),
                          tls_server=server_context(tmp_path / "pbx.crt", tmp_path / "pbx.key"),
                          max_connections_per_ip=3, handshake_timeout=1.0)
    await server.start()
    port = server.tls_port
    assert port is not None and port != server.local_port
    trusting = ssl.create_default_context(cafile=str(tmp_path / "pbx.crt"))

    async def tls_options(source: str, call_id: str) -> int:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            "127.0.0.1", port, ssl=trusting, local_addr=(source, 0)), 5)
        try:
            host, local_port = writer.get_extra_info("sockname")[:2]
            writer.write(options_request(host, local_port, call_id, "TLS"))
            answer = await read_message(reader)
            assert isinstance(answer, Response) and answer.call_id == call_id
            return answer.status
        finally:
            writer.close()

    async def raw(source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(asyncio.open_connection(
            "127.0.0.1", port, local_addr=(source, 0)), 5)

    try:
        # three connections that never start a handshake fill 127.0.0.2's quota: a
        # fourth is closed at once, while another address is served
        held = [await raw("127.0.0.2") for _ in range(3)]
        extra_reader, extra_writer = await raw("127.0.0.2")
        assert await eof_within(extra_reader, 2)
        assert server.cut["too many connections from one address"] == 1
        assert await tls_options("127.0.0.3", "ok-1") == 200
        assert seen[-1].transport == "tls" and seen[-1].host == "127.0.0.3"

        # the held ones are closed once the handshake time is up, and free the quota
        for reader, _ in held:
            assert await eof_within(reader, 3)
        assert server.cut["TLS handshake failed"] >= 3
        assert await tls_options("127.0.0.2", "ok-2") == 200

        # plain SIP on the TLS port is no handshake: closed, and nothing delivered
        before = len(seen)
        reader, writer = await raw("127.0.0.4")
        writer.write(options_request("127.0.0.4", 5060, "plain", "TLS"))
        assert await eof_within(reader, 3)
        assert len(seen) == before
        for _, stream in [*held, (extra_reader, extra_writer), (reader, writer)]:
            stream.close()

        # a client that does not trust the certificate gets no session
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.wait_for(asyncio.open_connection(
                "127.0.0.1", port, ssl=ssl.create_default_context()), 5)
        assert await tls_options("127.0.0.5", "ok-3") == 200
    finally:
        await server.stop()
    assert not server._all and not server._per_ip  # nothing left counted


@pytest.mark.parametrize("loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop],
                         ids=["asyncio", "uvloop"])
def test_tls_listener_caps_connections_before_the_handshake(
    tmp_path: Path, loop_factory: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    """The per-address cap counts connections from accept on, a handshake that does not
    finish in time is cut, plain text on the TLS port is refused, and every count is
    released: on the stock loop and on uvloop (`ippbx serve` runs on uvloop)."""
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(listener_scenario(tmp_path))
