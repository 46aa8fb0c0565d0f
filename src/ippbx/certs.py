"""TLS certificates and contexts, shared by the HTTPS API and SIP over TLS.

Yeastar's API is HTTPS with a self-signed certificate, and every hosted PBX offers SIP
over TLS on 5061; neither should need an operator to make a certificate first. When a
listener is on and no certificate/key pair is configured, `ensure_self_signed()` makes
one at the first start (RSA 2048, CN the PBX name, valid ten years, subjectAltName
localhost, 127.0.0.1, ::1 and the listen host unless it is a wildcard) and stores it
beside the SQLite database as `<stem>.crt` / `<stem>.key` (the key file mode 0600; for a
":memory:" store in the current directory): `ippbx-api.*` for HTTPS, `ippbx-sip.*` for
SIP. Later starts reuse the pair; it is made anew only when a file is missing or
unreadable (or the key is not the certificate's). The certificate's SHA-256 fingerprint
is logged at INFO, so a client can pin it.

`server_context()` is a server-side `ssl.SSLContext` (TLS 1.2 or later) for a PEM
certificate and key; `client_context()` the client side (verifying against the system's
CAs or a given CA file, or not at all). Problems are `TlsError`, an OSError, so
`ippbx serve` reports them as a start failure ("cannot start: …", exit 1).
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

__all__ = [
    "TlsError",
    "certificate_paths",
    "client_context",
    "ensure_self_signed",
    "fingerprint",
    "make_self_signed",
    "server_context",
]

log = logging.getLogger(__name__)

VALID_DAYS = 3650
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "*"})
_BASE_NAMES = ("localhost", "127.0.0.1", "::1")


class TlsError(OSError):
    """A certificate or key cannot be made or loaded (one line for the operator)."""


def certificate_paths(store_path: str, stem: str) -> tuple[Path, Path]:
    """Where a self-signed certificate and key live: `<stem>.crt`/`.key` beside the SQLite
    file at `store_path`."""
    folder = Path.cwd() if store_path == ":memory:" else Path(store_path).parent
    return folder / f"{stem}.crt", folder / f"{stem}.key"


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
    store_path: str, stem: str, common_name: str = "ippbx", hosts: Iterable[str] = (),
    *, label: str = "TLS",
) -> tuple[Path, Path]:
    """The self-signed pair `<stem>.crt`/`.key` beside the store, made now if missing or
    unreadable. Returns (certificate path, key path) and logs the certificate's
    fingerprint; `label` ("API", "SIP") names the listener in the log lines.
    """
    cert_path, key_path = certificate_paths(store_path, stem)
    made = False
    try:
        cert = _load_pair(cert_path, key_path)
    except FileNotFoundError:
        log.info("%s TLS: creating a self-signed certificate %s", label, cert_path.absolute())
        made = True
    except (OSError, ValueError, TypeError) as exc:
        log.warning("%s TLS: %s or %s is unreadable (%s); creating a new pair",
                    label, cert_path, key_path, exc)
        made = True
    if made:
        cert_pem, key_pem = make_self_signed(common_name, hosts)
        try:
            cert_path.parent.mkdir(parents=True, exist_ok=True)
            _write(key_path, key_pem, 0o600)
            _write(cert_path, cert_pem, 0o644)
        except OSError as exc:
            raise TlsError(f"cannot write the {label} certificate {cert_path}: {exc}") from None
        cert = x509.load_pem_x509_certificate(cert_pem)
    else:
        with contextlib.suppress(OSError):
            if key_path.stat().st_mode & 0o077:
                key_path.chmod(0o600)
    log.info("%s TLS certificate %s, SHA-256 fingerprint %s", label, cert_path.absolute(),
             fingerprint(cert))
    return cert_path, key_path


def server_context(
    cert_path: str | Path, key_path: str | Path, *, alpn: Iterable[str] = (),
    label: str = "TLS",
) -> ssl.SSLContext:
    """A server-side SSL context (TLS 1.2+, the given ALPN protocols) for a PEM
    certificate and key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if alpn:
        context.set_alpn_protocols(list(alpn))
    try:
        context.load_cert_chain(str(cert_path), str(key_path))
    except (OSError, ValueError) as exc:
        raise TlsError(
            f"cannot load the {label} certificate {cert_path} with key {key_path}: {exc}"
        ) from None
    return context


def listener_context(
    cert: str, key: str, *, store_path: str, stem: str, common_name: str,
    address: tuple[str, int] | None = None, alpn: Iterable[str] = (), label: str = "TLS",
) -> ssl.SSLContext:
    """A listener's server context: the configured `cert`/`key` pair when given (its
    fingerprint logged), else the self-signed `<stem>` pair beside the store, naming the
    listen `address`'s host too."""
    hosts = [address[0]] if address is not None else []
    if cert and key:
        context = server_context(cert, key, alpn=alpn, label=label)
        with contextlib.suppress(OSError, ValueError):
            loaded = x509.load_pem_x509_certificate(Path(cert).read_bytes())
            log.info("%s TLS certificate %s, SHA-256 fingerprint %s", label, cert,
                     fingerprint(loaded))
        return context
    cert_path, key_path = ensure_self_signed(store_path, stem, common_name, hosts, label=label)
    return server_context(cert_path, key_path, alpn=alpn, label=label)


def client_context(verify: bool = True, ca_file: str = "") -> ssl.SSLContext:
    """A client-side SSL context (TLS 1.2+): the server's certificate is checked against
    `ca_file` (PEM) when given, else the system's CAs; `verify=False` checks nothing
    (a peer with a self-signed certificate one cannot get hold of)."""
    context = ssl.create_default_context(cafile=ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
