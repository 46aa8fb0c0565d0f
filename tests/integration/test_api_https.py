"""HTTPS for the API beside plain HTTP, over real sockets: an `App` with `https_listen` on a
free loopback port, the self-signed certificate it makes beside the store (or the one
configured), one session manager behind both ports, and a plain-HTTP request sent to
the HTTPS port (closed quickly, the server unharmed)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import ipaddress
import logging
import re
import ssl
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ippbx.app import App
from ippbx.certs import TlsError
from ippbx.config import parse_config

FreePort = Callable[..., int]
API_MD5 = hashlib.md5(b"apipass").hexdigest()
LOGIN = {"username": "api", "password": API_MD5, "port": "8260"}


def config_text(store: Path, https_port: int, extra: str = "") -> str:
    return f"""
[pbx]
sn = "tlstest01"
name = "tls pbx"
[sip]
listen = "127.0.0.1:0"
[media]
engine = "none"
[api]
listen = "127.0.0.1:0"
https_listen = "127.0.0.1:{https_port}"
password = "apipass"
{extra}
[store]
path = "{store}"
[[extensions]]
number = "1001"
password = "secret1001"
"""


@contextlib.asynccontextmanager
async def running(text: str) -> AsyncIterator[App]:
    app = App(parse_config(text))
    try:
        await app.start()
        yield app
    finally:
        await app.stop()
        app.close()


async def login(client: httpx.AsyncClient, base: str) -> str:
    answer = (await client.post(f"{base}/api/v0.0.1/login?type=json", json=LOGIN)).json()
    assert answer["status"] == "Success", answer
    return str(answer["token"])


async def outbound(client: httpx.AsyncClient, base: str, token: str) -> dict[str, Any]:
    response = await client.post(f"{base}/api/v0.0.1/outbound/query?token={token}&type=json",
                                 json={"outboundid": "all"})
    result: dict[str, Any] = response.json()
    return result


async def peer_fingerprint(port: int) -> str:
    """The SHA-256 fingerprint (AA:BB:…) of the certificate served on 127.0.0.1:`port`."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    _, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=context), 5)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await asyncio.wait_for(writer.wait_closed(), 5)
    return hashlib.sha256(der).digest().hex(":").upper()


def cert_fingerprint(path: Path) -> str:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def trusting(cafile: Path) -> ssl.SSLContext:
    """A client context trusting only `cafile`, as strict as Python 3.13's default."""
    context = ssl.create_default_context(cafile=str(cafile))
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    return context


async def test_https_with_a_self_signed_certificate_beside_the_store(
    tmp_path: Path, free_port: FreePort, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    https_port = free_port()
    async with running(config_text(tmp_path / "ippbx.sqlite3", https_port)) as app:
        assert app.api_tls is not None
        assert app.api_tls.url == f"https://127.0.0.1:{https_port}"
        assert app.api.url.startswith("http://127.0.0.1:")
        crt, key = tmp_path / "ippbx-api.crt", tmp_path / "ippbx-api.key"
        assert crt.is_file() and key.stat().st_mode & 0o777 == 0o600
        made = cert_fingerprint(crt)
        assert await peer_fingerprint(https_port) == made
        assert any(made in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)
        assert f"API listening on https://127.0.0.1:{https_port}" in caplog.text

        # (a) certificate checks off
        async with httpx.AsyncClient(verify=False, timeout=5, trust_env=False) as client:
            token = await login(client, app.api_tls.url)
            assert await outbound(client, app.api_tls.url, token) == {
                "status": "Success", "outbound": []}
        # (b) the generated certificate as the only trusted CA
        async with httpx.AsyncClient(verify=trusting(crt), timeout=5,
                                     trust_env=False) as client:
            token = await login(client, app.api_tls.url)
            assert (await outbound(client, app.api_tls.url, token))["status"] == "Success"
        # ... and not trusted without it
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=None), timeout=5,
                                     trust_env=False) as client:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.post(f"{app.api_tls.url}/api/v0.0.1/login", json=LOGIN)

        # (c) one session manager: tokens cross between the two ports both ways
        async with httpx.AsyncClient(verify=False, timeout=5, trust_env=False) as client:
            over_https = await login(client, app.api_tls.url)
            assert await outbound(client, app.api.url, over_https) == {
                "status": "Success", "outbound": []}
            over_http = await login(client, app.api.url)
            assert (await outbound(client, app.api_tls.url, over_http))["status"] == "Success"
            await client.post(f"{app.api.url}/api/v0.0.1/logout?token={over_https}")
            assert await outbound(client, app.api_tls.url, over_https) == {
                "status": "Failed", "errno": "20004"}

    # stopped: the HTTPS port is closed
    with pytest.raises(OSError):
        await asyncio.wait_for(asyncio.open_connection("127.0.0.1", https_port), 5)

    # a later start reuses the certificate
    async with running(config_text(tmp_path / "ippbx.sqlite3", free_port())) as app:
        assert app.api_tls is not None
        assert await peer_fingerprint(app.api_tls.port) == made == cert_fingerprint(crt)


def own_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate of the test's own making (EC P-256, CN "operator's cert")."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "operator's cert")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    crt, pem = folder / "operator.crt", folder / "operator.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption()))
    return crt, pem


async def test_the_configured_certificate_is_served(tmp_path: Path, free_port: FreePort) -> None:
    crt, key = own_certificate(tmp_path)
    extra = f'tls_cert = "{crt}"\ntls_key = "{key}"'
    async with running(config_text(tmp_path / "ippbx.sqlite3", free_port(), extra)) as app:
        assert app.api_tls is not None
        assert await peer_fingerprint(app.api_tls.port) == cert_fingerprint(crt)
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(crt)),
                                     timeout=5, trust_env=False) as client:
            token = await login(client, app.api_tls.url)
            assert (await outbound(client, app.api_tls.url, token))["status"] == "Success"
    assert not (tmp_path / "ippbx-api.crt").exists()  # nothing self-signed was made


async def test_bad_certificate_fails_the_start_and_stops_what_started(
    tmp_path: Path, free_port: FreePort
) -> None:
    crt, key = tmp_path / "bad.crt", tmp_path / "bad.key"
    crt.write_text("not a certificate\n")
    key.write_text("not a key\n")
    app = App(parse_config(config_text(tmp_path / "ippbx.sqlite3", free_port(),
                                       f'tls_cert = "{crt}"\ntls_key = "{key}"')))
    try:
        with pytest.raises(TlsError, match="cannot load the API certificate"):
            await app.start()
        with pytest.raises(RuntimeError):
            _ = app.api.port  # the plain API server, started before, was stopped again
    finally:
        await app.stop()
        app.close()


async def test_plain_http_to_the_https_port_is_closed_and_harmless(
    tmp_path: Path, free_port: FreePort
) -> None:
    async with running(config_text(tmp_path / "ippbx.sqlite3", free_port())) as app:
        assert app.api_tls is not None
        port = app.api_tls.port
        # a raw plain-HTTP request: the server answers with at most a TLS alert and closes
        began = time.monotonic()
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
        try:
            writer.write(b"POST /api/v0.0.1/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Length: 2\r\n\r\n{}")
            await writer.drain()
            received = b""
            with contextlib.suppress(ConnectionResetError):
                while chunk := await asyncio.wait_for(reader.read(4096), 5):
                    received += chunk
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await asyncio.wait_for(writer.wait_closed(), 5)
        assert time.monotonic() - began < 5
        assert not re.match(rb"HTTP/1\.[01] 200", received)
        # the same through an HTTP client: an error, not a hang
        async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
            began = time.monotonic()
            with pytest.raises(httpx.TransportError) as info:
                await client.post(f"http://127.0.0.1:{port}/api/v0.0.1/login", json=LOGIN)
            assert not isinstance(info.value, httpx.TimeoutException)
            assert time.monotonic() - began < 5
        # HTTPS still answers afterwards
        async with httpx.AsyncClient(verify=False, timeout=5, trust_env=False) as client:
            token = await login(client, app.api_tls.url)
            assert (await outbound(client, app.api_tls.url, token))["status"] == "Success"


async def test_stop_is_quick_with_an_idle_keep_alive_client(
    tmp_path: Path, free_port: FreePort, caplog: pytest.LogCaptureFixture
) -> None:
    """A TLS close waits for the peer's close_notify, which an idle pooled connection
    never sends: the server must not wait for it (nor log uvicorn's timeout error)."""
    app = App(parse_config(config_text(tmp_path / "ippbx.sqlite3", free_port())))
    client = httpx.AsyncClient(verify=False, timeout=5, trust_env=False)
    try:
        await app.start()
        assert app.api_tls is not None
        await login(client, app.api_tls.url)  # its connection stays open in the pool
        began = time.monotonic()
        await app.stop()
        assert time.monotonic() - began < 2
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        await client.aclose()
        await app.stop()
        app.close()
