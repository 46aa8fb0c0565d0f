"""TLS material: the self-signed certificate beside the store (made, reused, remade), its
subjectAltName, the server and client SSL contexts, and the `[api]` TLS settings."""

from __future__ import annotations

import logging
import re
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509

from ippbx.api.tls import api_ssl_context
from ippbx.certs import (
    TlsError,
    certificate_paths,
    client_context,
    ensure_self_signed,
    fingerprint,
    make_self_signed,
    server_context,
)
from ippbx.config import ConfigError, parse_config

FINGERPRINT = re.compile(r"(?:[0-9A-F]{2}:){31}[0-9A-F]{2}")


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def san(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    return ips, set(names.get_values_for_type(x509.DNSName))


def logged_fingerprints(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [m.group(0) for r in caplog.records if r.levelno == logging.INFO
            and (m := FINGERPRINT.search(r.getMessage()))]


def test_made_at_first_call_then_reused_then_remade(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ippbx.certs")
    store = str(tmp_path / "ippbx.sqlite3")
    cert_path, key_path = ensure_self_signed(store, "ippbx-api", "test pbx", ["127.0.0.1"])
    assert (cert_path, key_path) == (tmp_path / "ippbx-api.crt", tmp_path / "ippbx-api.key")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    cert = load(cert_path)
    first = fingerprint(cert)
    assert FINGERPRINT.fullmatch(first)
    assert logged_fingerprints(caplog) == [first]
    assert cert.subject.rfc4514_string() == "CN=test pbx" == cert.issuer.rfc4514_string()
    ips, dns = san(cert)
    assert ips == {"127.0.0.1", "::1"} and dns == {"localhost"}
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime.days >= 3650
    pem = cert_path.read_bytes(), key_path.read_bytes()

    # a second start reuses the pair
    again = ensure_self_signed(store, "ippbx-api", "test pbx", ["127.0.0.1"])
    assert again == (cert_path, key_path)
    assert (cert_path.read_bytes(), key_path.read_bytes()) == pem
    assert logged_fingerprints(caplog) == [first, first]

    # a deleted key: a new pair
    key_path.unlink()
    ensure_self_signed(store, "ippbx-api", "test pbx")
    second = fingerprint(load(cert_path))
    assert second != first and stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert logged_fingerprints(caplog)[-1] == second

    # an unreadable certificate: a new pair, with a warning
    cert_path.write_text("not a certificate\n")
    ensure_self_signed(store, "ippbx-api", "test pbx")
    assert fingerprint(load(cert_path)) not in (first, second)
    assert any(r.levelno == logging.WARNING for r in caplog.records)

    # a key that is not the certificate's: a new pair
    other_key = make_self_signed("x")[1]
    key_path.write_bytes(other_key)
    before = fingerprint(load(cert_path))
    ensure_self_signed(store, "ippbx-api", "test pbx")
    assert fingerprint(load(cert_path)) != before and key_path.read_bytes() != other_key
    server_context(cert_path, key_path)  # the pair on disk is usable


def test_subject_alt_names_hold_the_listen_host_unless_a_wildcard() -> None:
    for hosts, ips, dns in [
        (["0.0.0.0"], {"127.0.0.1", "::1"}, {"localhost"}),
        (["::"], {"127.0.0.1", "::1"}, {"localhost"}),
        (["192.0.2.7"], {"127.0.0.1", "::1", "192.0.2.7"}, {"localhost"}),
        (["2001:db8::5"], {"127.0.0.1", "::1", "2001:db8::5"}, {"localhost"}),
        (["pbx.example.com"], {"127.0.0.1", "::1"}, {"localhost", "pbx.example.com"}),
        (["localhost", "127.0.0.1"], {"127.0.0.1", "::1"}, {"localhost"}),
    ]:
        cert = x509.load_pem_x509_certificate(make_self_signed("", hosts)[0])
        assert san(cert) == (ips, dns), hosts
        assert cert.subject.rfc4514_string() == "CN=ippbx"  # no name: "ippbx"


def test_memory_store_puts_the_pair_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert certificate_paths(":memory:", "ippbx-api") == (tmp_path / "ippbx-api.crt",
                                             tmp_path / "ippbx-api.key")
    assert certificate_paths("/var/lib/ippbx/db.sqlite3", "ippbx-api")[0] == Path(
        "/var/lib/ippbx/ippbx-api.crt")
    assert certificate_paths("db.sqlite3", "ippbx-sip")[1] == Path("ippbx-sip.key")
    ensure_self_signed(":memory:", "ippbx-api")
    assert (tmp_path / "ippbx-api.crt").is_file() and (tmp_path / "ippbx-api.key").is_file()


def test_server_context_and_its_errors(tmp_path: Path) -> None:
    cert_path, key_path = ensure_self_signed(str(tmp_path / "db.sqlite3"), "ippbx-sip")
    context = server_context(cert_path, key_path)
    assert isinstance(context, ssl.SSLContext)
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    wrong = tmp_path / "wrong.key"
    wrong.write_bytes(make_self_signed("x")[1])
    with pytest.raises(TlsError, match="cannot load the SIP certificate") as info:
        server_context(cert_path, wrong, label="SIP")
    assert isinstance(info.value, OSError) and "\n" not in str(info.value)
    with pytest.raises(TlsError):
        server_context(tmp_path / "absent.crt", key_path)


def test_client_context_verifies_unless_told_not_to(tmp_path: Path) -> None:
    cert_path, key_path = ensure_self_signed(str(tmp_path / "db.sqlite3"), "ippbx-sip")
    strict = client_context()
    assert strict.verify_mode == ssl.CERT_REQUIRED and strict.check_hostname
    pinned = client_context(ca_file=str(cert_path))
    assert pinned.verify_mode == ssl.CERT_REQUIRED
    assert pinned.cert_store_stats()["x509"] == 1  # only our certificate is trusted
    loose = client_context(verify=False)
    assert loose.verify_mode == ssl.CERT_NONE and not loose.check_hostname
    assert loose.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_unwritable_folder_is_a_tls_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(TlsError, match="cannot write the API certificate"):
        ensure_self_signed(str(blocker / "db.sqlite3"), "ippbx-api", label="API")


API = '[api]\npassword = "x"\n'


def test_api_ssl_context_uses_the_configured_pair(tmp_path: Path) -> None:
    cert_pem, key_pem = make_self_signed("mine")
    (tmp_path / "mine.crt").write_bytes(cert_pem)
    (tmp_path / "mine.key").write_bytes(key_pem)
    config = parse_config(
        API + f'https_listen = "127.0.0.1:0"\ntls_cert = "{tmp_path / "mine.crt"}"\n'
        f'tls_key = "{tmp_path / "mine.key"}"\n[store]\npath = "{tmp_path / "db.sqlite3"}"\n')
    assert isinstance(api_ssl_context(config), ssl.SSLContext)
    assert not (tmp_path / "ippbx-api.crt").exists()  # nothing self-signed made
    config = parse_config(
        API + f'https_listen = "127.0.0.1:0"\n[store]\npath = "{tmp_path / "db.sqlite3"}"\n')
    api_ssl_context(config)
    assert (tmp_path / "ippbx-api.crt").exists()


def test_config_https_settings(tmp_path: Path) -> None:
    assert parse_config(API).api.https_address is None  # off by default
    assert parse_config(API + 'https_listen = "127.0.0.1"').api.https_address == (
        "127.0.0.1", 8088)
    assert parse_config(API + 'https_listen = "[::1]:9443"').api.https_address == ("::1", 9443)
    assert parse_config(API + 'https_listen = "0.0.0.0:8443"').api.https_address == (
        "0.0.0.0", 8443)
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    bad = {
        'https_listen = "127.0.0.1:70000"': "api.https_listen: bad listen address",
        'https_listen = "127.0.0.1:x"': "api.https_listen",
        f'tls_cert = "{cert}"': "api: tls_cert and tls_key go together",
        f'tls_cert = "{cert}"\ntls_key = "{tmp_path / "absent.key"}"':
            "api.tls_key: no such file",
        'https_listen = "127.0.0.1:9011"': "api: https_listen is the same address as listen",
    }
    for extra, message in bad.items():
        with pytest.raises(ConfigError) as info:
            parse_config(API + extra, "x.toml")
        text = str(info.value)
        assert text.startswith(f"x.toml: {message}"), text
        assert "\n" not in text
