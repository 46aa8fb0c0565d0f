"""Digest authentication for SIP (RFC 7616, RFC 2617, RFC 2069 style), sans-IO.

Server side: `DigestChallenger` writes WWW-Authenticate / Proxy-Authenticate values and
verifies Authorization / Proxy-Authorization values. Its nonces need no table: a nonce is
`hex(timestamp ms ‖ 8 random bytes ‖ HMAC-SHA256(secret, timestamp ‖ random ‖ realm)[:16])`,
so any nonce it minted can be authenticated and aged from the secret alone. `verify`
answers OK, STALE (the digest is right but the nonce expired, or its nonce-count went
backwards: re-challenge with stale=true), FAILED (bad response, unknown user, wrong realm,
forged nonce, malformed header) or MISSING (no credentials).

Nonce-count replays: with qop the client numbers each request it makes with one nonce.
The challenger remembers the highest nc accepted for the last `max_tracked_nonces` nonces
(an LRU dict, 4096 by default, 0 to turn it off) and answers STALE to a count that does not
increase, so a captured request cannot be replayed while its nonce lives; a replay of a
nonce pushed out of that small table, or of an RFC 2069 request (no nc), is not detected.

Client side: `answer_challenge` (one shot) and `DigestClient` (remembers the challenge and
counts nc) build Authorization values for MD5, MD5-sess, SHA-256 and SHA-256-sess, with or
without qop=auth / auth-int, echoing opaque.

Everything hashes UTF-8 text. Responses are compared with `hmac.compare_digest`.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ippbx.sip.errors import SipParseError
from ippbx.sip.headers import parse_credentials, quote, split_list

__all__ = [
    "ALGORITHMS",
    "Challenge",
    "DigestChallenger",
    "DigestClient",
    "DigestError",
    "VerifyResult",
    "VerifyStatus",
    "answer_challenge",
    "compute_ha1",
    "compute_response",
    "parse_challenge",
    "pick_challenge",
    "split_challenges",
]


class DigestError(SipParseError):
    """A challenge or credentials that cannot be used (malformed, unsupported algorithm)."""


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# algorithm name (upper case) -> (hash function, is "-sess")
ALGORITHMS: dict[str, tuple[Callable[[bytes], str], bool]] = {
    "MD5": (_md5, False),
    "MD5-SESS": (_md5, True),
    "SHA-256": (_sha256, False),
    "SHA-256-SESS": (_sha256, True),
}
# preference when a server offers several challenges
_STRENGTH = {"SHA-256": 4, "SHA-256-SESS": 3, "MD5": 2, "MD5-SESS": 1}


def _algorithm(name: str | None) -> tuple[str, Callable[[bytes], str], bool]:
    key = (name or "MD5").upper()
    try:
        fn, sess = ALGORITHMS[key]
    except KeyError:
        raise DigestError(f"unsupported digest algorithm {name!r}") from None
    return key, fn, sess


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def compute_ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """H(username:realm:password) — what a server may store instead of the password.

    For the -sess algorithms this is the stored part; the session HA1 is derived per
    request by `compute_response`.
    """
    _, fn, _ = _algorithm(algorithm)
    return fn(_b(f"{username}:{realm}:{password}"))


def compute_response(
    *,
    algorithm: str | None,
    method: str,
    uri: str,
    nonce: str,
    ha1: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The request-digest (RFC 7616 §3.4.1) from a stored HA1 = H(user:realm:password)."""
    _, fn, sess = _algorithm(algorithm)
    if sess:
        if not cnonce:
            raise DigestError("a -sess algorithm needs a cnonce")
        ha1 = fn(_b(f"{ha1}:{nonce}:{cnonce}"))
    if qop is None or qop == "":
        ha2 = fn(_b(f"{method}:{uri}"))
        return fn(_b(f"{ha1}:{nonce}:{ha2}"))
    qop = qop.lower()
    if qop == "auth":
        ha2 = fn(_b(f"{method}:{uri}"))
    elif qop == "auth-int":
        ha2 = fn(_b(f"{method}:{uri}:") + _b(fn(body)))
    else:
        raise DigestError(f"unsupported qop {qop!r}")
    if not nc or not cnonce:
        raise DigestError("qop needs nc and cnonce")
    return fn(_b(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}"))


# ----------------------------------------------------------------------------- server
class VerifyStatus(enum.Enum):
    """Outcome of `DigestChallenger.verify`."""

    OK = "ok"
    STALE = "stale"  # right digest, expired (or replayed) nonce: re-challenge, stale=true
    FAILED = "failed"  # wrong password, unknown user, wrong realm, forged nonce, malformed
    MISSING = "missing"  # no credentials at all: challenge


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """What `verify` found; truthy only when the credentials are accepted."""

    status: VerifyStatus
    username: str | None = None
    reason: str = ""
    algorithm: str | None = None

    def __bool__(self) -> bool:
        return self.status is VerifyStatus.OK

    @property
    def ok(self) -> bool:
        return self.status is VerifyStatus.OK


_NONCE_BYTES = 8 + 8 + 16  # timestamp ms, random, MAC


class DigestChallenger:
    """Issues digest challenges for one realm and verifies the answers (no nonce table).

    `secret` keys the nonce MAC: share it between processes that must accept each
    other's nonces, rotate it to invalidate every outstanding nonce. `nonce_ttl` is how
    long (seconds) a nonce is fresh; `clock` returns seconds (inject one in tests).
    """

    def __init__(
        self,
        realm: str,
        secret: bytes,
        nonce_ttl: float = 300.0,
        clock: Callable[[], float] = time.time,
        *,
        qop: Sequence[str] = ("auth",),
        opaque: bool = True,
        max_tracked_nonces: int = 4096,
    ) -> None:
        if not secret:
            raise ValueError("DigestChallenger needs a non-empty secret")
        self.realm = realm
        self._secret = bytes(secret)
        self.nonce_ttl = nonce_ttl
        self._clock = clock
        self._qop = tuple(qop)
        self._opaque = (
            hmac.new(self._secret, b"opaque:" + _b(realm), hashlib.sha256).hexdigest()[:32]
            if opaque else None
        )
        self._max_tracked = max_tracked_nonces
        self._nc_seen: OrderedDict[str, int] = OrderedDict()

    # -- challenges -----------------------------------------------------------------
    def new_nonce(self) -> str:
        """A fresh nonce: timestamp and random bytes, authenticated by the secret."""
        payload = struct.pack(">Q", max(0, int(self._clock() * 1000))) + os.urandom(8)
        return (payload + self._mac(payload)).hex()

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload + _b(self.realm), hashlib.sha256).digest()[:16]

    def challenges(self, stale: bool = False, algorithms: Iterable[str] = ("MD5",)) -> list[str]:
        """One challenge value per algorithm; in SIP each goes in its own header field."""
        out = []
        for name in algorithms:
            key, _, _ = _algorithm(name)
            canonical = key.replace("-SESS", "-sess")
            parts = [f"Digest realm={quote(self.realm)}", f'nonce="{self.new_nonce()}"']
            if self._opaque:
                parts.append(f'opaque="{self._opaque}"')
            if stale:
                parts.append("stale=true")
            parts.append(f"algorithm={canonical}")
            if self._qop:
                parts.append(f'qop="{",".join(self._qop)}"')
            out.append(", ".join(parts))
        return out

    def challenge(self, stale: bool = False, algorithms: Iterable[str] = ("MD5",)) -> str:
        """The WWW-Authenticate / Proxy-Authenticate value (several algorithms: joined)."""
        return ", ".join(self.challenges(stale, algorithms))

    # -- verification ---------------------------------------------------------------
    def nonce_age(self, nonce: str) -> float | None:
        """Seconds since this challenger minted `nonce`, or None if it did not."""
        if len(nonce) != 2 * _NONCE_BYTES:
            return None
        try:
            raw = bytes.fromhex(nonce)
        except ValueError:
            return None
        payload, mac = raw[:16], raw[16:]
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        (millis,) = struct.unpack(">Q", payload[:8])
        return self._clock() - millis / 1000.0

    def verify(
        self,
        auth_header_value: str | None,
        method: str,
        password: str | Callable[[str], str | None] | None = None,
        *,
        ha1: str | Callable[[str], str | None] | None = None,
        body: bytes = b"",
        uri: str | None = None,
    ) -> VerifyResult:
        """Check an Authorization / Proxy-Authorization value for a request.

        `password` is the password or a lookup username -> password (None: unknown user);
        `ha1` instead gives H(username:realm:password) (or a lookup), computed with the
        algorithm the client uses — offer only that algorithm when storing HA1s. `body` is
        needed for qop=auth-int. `uri`, if given, must equal the digest's uri parameter.
        """
        if not auth_header_value or not auth_header_value.strip():
            return VerifyResult(VerifyStatus.MISSING, reason="no credentials")
        try:
            scheme, params = parse_credentials(auth_header_value)
        except SipParseError as exc:
            return VerifyResult(VerifyStatus.FAILED, reason=f"malformed credentials: {exc}")
        if scheme.lower() != "digest":
            return VerifyResult(VerifyStatus.FAILED, reason=f"unsupported scheme {scheme}")
        username = params.get("username")
        if username is None:
            return VerifyResult(VerifyStatus.FAILED, reason="no username")
        if params.get("userhash", "false").lower() == "true":
            return VerifyResult(VerifyStatus.FAILED, username, "userhash is not supported")

        def failed(reason: str) -> VerifyResult:
            return VerifyResult(VerifyStatus.FAILED, username, reason, params.get("algorithm"))

        nonce = params.get("nonce")
        response = params.get("response")
        digest_uri = params.get("uri")
        if nonce is None or response is None or digest_uri is None:
            return failed("nonce, uri and response are required")
        if params.get("realm") != self.realm:
            return failed("wrong realm")
        try:
            algorithm, _, _ = _algorithm(params.get("algorithm"))
        except DigestError as exc:
            return failed(str(exc))
        if uri is not None and digest_uri != uri:
            return failed("digest uri does not match the Request-URI")
        if self._opaque is not None and "opaque" in params and \
                not hmac.compare_digest(_b(params["opaque"]), _b(self._opaque)):
            return failed("wrong opaque")
        age = self.nonce_age(nonce)
        if age is None:
            return failed("nonce not issued here")
        qop = params.get("qop")
        nc = params.get("nc")
        cnonce = params.get("cnonce")
        nc_value: int | None = None
        if qop is not None:
            if qop.lower() not in ("auth", "auth-int"):
                return failed(f"unsupported qop {qop}")
            if not nc or not cnonce or len(nc) != 8:
                return failed("qop needs an 8-digit nc and a cnonce")
            try:
                nc_value = int(nc, 16)
            except ValueError:
                return failed("bad nc")
        elif algorithm.endswith("-SESS") and not cnonce:
            return failed("a -sess algorithm needs a cnonce")

        stored_ha1 = self._ha1_for(username, algorithm, password, ha1)
        if stored_ha1 is None:
            return failed("unknown user")
        try:
            expected = compute_response(
                algorithm=algorithm, method=method, uri=digest_uri, nonce=nonce,
                ha1=stored_ha1, qop=qop, nc=nc, cnonce=cnonce, body=body,
            )
        except DigestError as exc:
            return failed(str(exc))
        if not hmac.compare_digest(_b(expected), _b(response.lower())):
            return failed("wrong response")
        if age > self.nonce_ttl or age < -60.0:
            return VerifyResult(VerifyStatus.STALE, username, "nonce expired", algorithm)
        if nc_value is not None and self._max_tracked > 0 and not self._count(nonce, nc_value):
            return VerifyResult(VerifyStatus.STALE, username, "nonce count replayed", algorithm)
        return VerifyResult(VerifyStatus.OK, username, "", algorithm)

    def _ha1_for(
        self,
        username: str,
        algorithm: str,
        password: str | Callable[[str], str | None] | None,
        ha1: str | Callable[[str], str | None] | None,
    ) -> str | None:
        if ha1 is not None:
            value = ha1(username) if callable(ha1) else ha1
            return value.lower() if value is not None else None
        if password is None:
            return None
        secret = password(username) if callable(password) else password
        if secret is None:
            return None
        return compute_ha1(username, self.realm, secret, algorithm)

    def _count(self, nonce: str, nc: int) -> bool:
        """Record nc for nonce; False if it does not exceed the last one accepted."""
        last = self._nc_seen.get(nonce)
        if last is not None and nc <= last:
            return False
        self._nc_seen[nonce] = nc
        self._nc_seen.move_to_end(nonce)
        while len(self._nc_seen) > self._max_tracked:
            self._nc_seen.popitem(last=False)
        return True


# ----------------------------------------------------------------------------- client
@dataclass(slots=True)
class Challenge:
    """One parsed digest challenge (WWW-Authenticate / Proxy-Authenticate)."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: list[str] = field(default_factory=list)
    opaque: str | None = None
    stale: bool = False


def split_challenges(value: str) -> list[str]:
    """Split a header value holding several challenges (`Digest a=1, Digest b=2`)."""
    out: list[str] = []
    for item in split_list(value):
        head = item.split(None, 1)
        if out and head and "=" not in head[0]:
            out.append(item)  # `Scheme param=…` starts a new challenge
        elif out:
            out[-1] = f"{out[-1]}, {item}"
        else:
            out.append(item)
    return out


def parse_challenge(value: str) -> Challenge:
    """Parse one Digest challenge; DigestError if it is not one we can answer."""
    try:
        scheme, params = parse_credentials(value)
    except SipParseError as exc:
        raise DigestError(f"malformed challenge: {exc}") from None
    if scheme.lower() != "digest":
        raise DigestError(f"not a Digest challenge: {scheme}")
    if "realm" not in params or "nonce" not in params:
        raise DigestError("challenge without realm or nonce")
    algorithm, _, _ = _algorithm(params.get("algorithm"))
    qop = [q.strip().lower() for q in params.get("qop", "").split(",") if q.strip()]
    return Challenge(
        realm=params["realm"],
        nonce=params["nonce"],
        algorithm=algorithm,
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "").lower() == "true",
    )


def pick_challenge(values: Iterable[str]) -> str:
    """Of several challenge header values, the strongest one we can answer."""
    best: tuple[int, str] | None = None
    for value in values:
        for one in split_challenges(value):
            try:
                challenge = parse_challenge(one)
            except DigestError:
                continue
            rank = _STRENGTH.get(challenge.algorithm, 0)
            if best is None or rank > best[0]:
                best = (rank, one)
    if best is None:
        raise DigestError("no usable Digest challenge")
    return best[1]


def _authorization(
    challenge: Challenge,
    method: str,
    uri: str,
    username: str,
    password: str,
    body: bytes,
    nc: int,
    cnonce: str | None,
) -> str:
    qop = "auth" if "auth" in challenge.qop else "auth-int" if "auth-int" in challenge.qop \
        else None
    if (qop or challenge.algorithm.endswith("-SESS")) and cnonce is None:
        cnonce = os.urandom(8).hex()
    nc_text = f"{nc:08x}" if qop else None
    ha1 = compute_ha1(username, challenge.realm, password, challenge.algorithm)
    response = compute_response(
        algorithm=challenge.algorithm, method=method, uri=uri, nonce=challenge.nonce,
        ha1=ha1, qop=qop, nc=nc_text, cnonce=cnonce, body=body,
    )
    algorithm = challenge.algorithm.replace("-SESS", "-sess")
    parts = [
        f"Digest username={quote(username)}",
        f"realm={quote(challenge.realm)}",
        f"nonce={quote(challenge.nonce)}",
        f"uri={quote(uri)}",
        f'response="{response}"',
        f"algorithm={algorithm}",
    ]
    if cnonce is not None and (qop or challenge.algorithm.endswith("-SESS")):
        parts.append(f"cnonce={quote(cnonce)}")
    if challenge.opaque is not None:
        parts.append(f"opaque={quote(challenge.opaque)}")
    if qop:
        parts.append(f"qop={qop}")
        parts.append(f"nc={nc_text}")
    return ", ".join(parts)


def answer_challenge(
    header_value: str,
    method: str,
    uri: str,
    username: str,
    password: str,
    body: bytes = b"",
    nc: int = 1,
    cnonce: str | None = None,
) -> str:
    """The Authorization / Proxy-Authorization value answering a challenge.

    `header_value` may hold several challenges; the strongest supported one is used.
    qop=auth is chosen when offered (auth-int if only that is), else the RFC 2069 form.
    Raises DigestError if no challenge can be answered.
    """
    challenge = parse_challenge(pick_challenge([header_value]))
    return _authorization(challenge, method, uri, username, password, body, nc, cnonce)


class DigestClient:
    """Answers challenges for one set of credentials and reuses the nonce with nc+1."""

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self.password = password
        self._challenge: Challenge | None = None
        self._nc = 0

    def answer(self, header_value: str, method: str, uri: str, body: bytes = b"") -> str:
        """Answer a new challenge (nc restarts at 1)."""
        self._challenge = parse_challenge(pick_challenge([header_value]))
        self._nc = 0
        return self.again(method, uri, body) or ""

    def again(self, method: str, uri: str, body: bytes = b"") -> str | None:
        """Credentials for another request with the last nonce (None if none yet)."""
        if self._challenge is None:
            return None
        self._nc += 1
        return _authorization(
            self._challenge, method, uri, self.username, self.password, body, self._nc, None
        )
