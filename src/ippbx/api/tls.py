"""TLS for the API's HTTPS listener (`[api] https_listen`): its certificate and SSL context.

Yeastar's API is HTTPS with a self-signed certificate, and clients hard-code https://.
When HTTPS is on and `[api] tls_cert` / `tls_key` are not given, `api_ssl_context()` makes
a self-signed certificate at the first start (RSA 2048, CN the PBX name, valid ten years,
subjectAltName localhost, 127.0.0.1, ::1 and the https_listen host unless it is a
wildcard) and stores it beside the SQLite database as `ippbx-api.crt` and
`ippbx-api.key` (the key file mode 0600; for a ":memory:" store in the current
directory). Later starts reuse the pair; it is made anew only when a file is missing or
unreadable (or the key is not the certificate's). The certificate's SHA-256 fingerprint
is logged at INFO, so a client can pin it.

`server_context()` is the server-side `ssl.SSLContext` (TLS 1.2 or later) for a PEM
certificate and key. Problems are `TlsError`, an OSError, so `ippbx serve` reports them
as a start failure ("cannot start: …", exit 1).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import logging
import os
import secrets
import ssl
import tempfile
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ippbx.config import Config

__all__ = [
    "CERT_FILE",
    "KEY_FILE",
    "TlsError",
    "api_ssl_context",
    "certificate_paths",
    "ensure_self_signed",
    "fingerprint",
    "make_self_signed",
    "server_context",
]

log = logging.getLogger(__name__)

CERT_FILE = "ippbx-api.crt"
KEY_FILE = "ippbx-api.key"
VALID_DAYS = 3650
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "*"})
_BASE_NAMES = ("localhost", "127.0.0.1", "::1")


class TlsError(OSError):
    """The API's certificate or key cannot be made or loaded (one line for the operator)."""


def certificate_paths(store_path: str) -> tuple[Path, Path]:
    """Where the self-signed certificate and key live: beside the SQLite file at `store_path`."""
    folder = Path.cwd() if store_path == ":memory:" else Path(store_path).parent
    return folder / CERT_FILE, folder / KEY_FILE


def fingerprint(cert: x509.Certificate) -> str:
    """The certificate's SHA-256 fingerprint as colon-separated hex pairs (`AA:BB:…`)."""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def _subject_alt_names(hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    seen: set[str] = set()
    for host in (*_BASE_NAMES, *hosts):
        host = host.strip().strip("[]")
        if host in WILDCARD_HOSTS or host.lower() in seen:
            continue
        seen.add(host.lower())
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def make_self_signed(common_name: str, hosts: Iterable[str] = ()) -> tuple[bytes, bytes]:
    """A new self-signed server certificate and its RSA key, both PEM: (cert, key).

    The subjectAltName holds localhost, 127.0.0.1, ::1 and `hosts` (wildcard addresses
    such as 0.0.0.0 are left out; IP literals become IP entries, the rest DNS names).
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (common_name or "ippbx")[:64])])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(_subject_alt_names(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_encipherment=True, content_commitment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to `path` atomically (a temporary file beside it, then rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _load_pair(cert_path: Path, key_path: Path) -> x509.Certificate:
    """The stored certificate if both files parse and the key is the certificate's."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*raw) != cert.public_key().public_bytes(*raw):
        raise ValueError("the key does not belong to the certificate")
    return cert


def ensure_self_signed(
    store_path: str, common_name: str = "ippbx", hosts: Iterable[str] = ()
) -> tuple[Path, Path]:
    """The self-signed pair beside the store, made now if missing or unreadable.

    Returns (certificate path, key path) and logs the certificate's fingerprint.
    """
    cert_path, key_path = certificate_paths(store_path)
    made = False
    try:
        cert = _load_pair(cert_path, key_path)
    except FileNotFoundError:
        log.info("API TLS: creating a self-signed certificate %s", cert_path.absolute())
        made = True
    except (OSError, ValueError, TypeError) as exc:
        log.warning("API TLS: %s or %s is unreadable (%s); creating a new pair",
                    cert_path, key_path, exc)
        made = True
    if made:
        cert_pem, key_pem = make_self_signed(common_name, hosts)
        try:
            cert_path.parent.mkdir(parents=True, exist_ok=True)
            _write(key_path, key_pem, 0o600)
            _write(cert_path, cert_pem, 0o644)
        except OSError as exc:
            raise TlsError(f"cannot write the API certificate {cert_path}: {exc}") from None
        cert = x509.load_pem_x509_certificate(cert_pem)
    else:
        with contextlib.suppress(OSError):
            if key_path.stat().st_mode & 0o077:
                key_path.chmod(0o600)
    log.info("API TLS certificate %s, SHA-256 fingerprint %s", cert_path.absolute(),
             fingerprint(cert))
    return cert_path, key_path


def server_context(cert_path: str | Path, key_path: str | Path) -> ssl.SSLContext:
    """A server-side SSL context (TLS 1.2+, HTTP/1.1) for a PEM certificate and key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(str(cert_path), str(key_path))
    except (OSError, ValueError) as exc:
        raise TlsError(
            f"cannot load the API certificate {cert_path} with key {key_path}: {exc}"
        ) from None
    return context


def api_ssl_context(config: Config) -> ssl.SSLContext:
    """The HTTPS listener's SSL context: `[api] tls_cert`/`tls_key`, else self-signed."""
    api = config.api
    if api.tls_cert and api.tls_key:
        context = server_context(api.tls_cert, api.tls_key)
        with contextlib.suppress(OSError, ValueError):
            cert = x509.load_pem_x509_certificate(Path(api.tls_cert).read_bytes())
            log.info("API TLS certificate %s, SHA-256 fingerprint %s", api.tls_cert,
                     fingerprint(cert))
        return context
    address = api.https_address
    hosts = [address[0]] if address is not None else []
    cert_path, key_path = ensure_self_signed(config.store.path, config.pbx.name, hosts)
    return server_context(cert_path, key_path)
