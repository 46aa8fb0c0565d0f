"""Digest authentication for SIP (RFC 7616, RFC 8760, RFC 2617, RFC 2069 style), sans-IO.

Server side: `DigestChallenger` writes WWW-Authenticate / Proxy-Authenticate values and
verifies Authorization / Proxy-Authorization values against a request.

Nonces are stateless to issue and bound to time and to the address they were sent to:
`hex(timestamp ms ‖ 8 random bytes ‖ HMAC-SHA256(secret, timestamp ‖ random ‖ realm ‖
source)[:16])`. Only the same challenger (same secret) can have minted a nonce that checks
out for a source address, so credentials carrying one prove that whoever sent them saw our
challenge at that address: a blind spoofer cannot produce them. `verify` answers

- OK: accepted;
- MISSING: no credentials;
- INVALID: credentials nothing can be concluded from — malformed, another scheme, another
  realm, a nonce this challenger did not issue to this source (forged, foreign, captured
  at another address). Answer with a fresh challenge; never count it as a failure;
- STALE: a nonce issued to this source and the right digest, but the nonce expired
  (`nonce_ttl`) or was already used: an RFC 2069 answer (no qop) is single-use, and with
  qop every request must carry a higher nonce-count than the last one accepted. Answer
  with a fresh challenge, stale=true;
- WRONG_URI: a nonce issued to this source, but the digest's `uri` is not the Request-URI
  (compared as RFC 3261 §19.1.4 says, `ippbx.sip.uri.equivalent`): a failure, answered
  with a fresh challenge;
- FAILED: a nonce issued to this source and wrong credentials (response, unknown user,
  an algorithm or qop not offered, bad nc, …): a failure.

Used nonces: the challenger remembers the last nonce-count accepted for each nonce (an
RFC 2069 use counts as the highest possible) until the nonce expires, in an LRU table of
at most `max_tracked_nonces` entries. When the table is full the least recently used entry
is dropped and its issue time becomes a floor: a nonce issued at or before the floor that
the table does not know is treated as used (STALE), so forgetting never lets a replay
through; it only makes an old nonce's client fetch a new one.

Algorithms: the challenger offers `algorithms` in that order (RFC 8760: one header field
each, most preferred first) and accepts answers with any of them, and with nothing else.

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
from ippbx.sip.uri import SipUri, equivalent

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
    """Outcome of `DigestChallenger.verify` (see the module docstring)."""

    OK = "ok"
    MISSING = "missing"  # no credentials: challenge
    INVALID = "invalid"  # nothing to conclude (not our nonce for this source): challenge
    STALE = "stale"  # right digest, expired or used nonce: challenge with stale=true
    WRONG_URI = "wrong-uri"  # our nonce, uri is not the Request-URI: a failure, challenge
    FAILED = "failed"  # our nonce, wrong credentials: a failure


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

    @property
    def is_failure(self) -> bool:
        """Wrong credentials over a nonce issued to the sender: worth counting."""
        return self.status in (VerifyStatus.FAILED, VerifyStatus.WRONG_URI)


_NONCE_BYTES = 8 + 8 + 16  # timestamp ms, random, MAC
_RFC2069_USE = 1 << 32  # above any 8-hex-digit nc: nothing may follow an RFC 2069 use


class _NonceUses:
    """The last nonce-count accepted per nonce, bounded, with a floor for what it forgot."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("max_tracked_nonces must be at least 1")
        self.capacity = capacity
        self._last: OrderedDict[str, tuple[float, int]] = OrderedDict()  # nonce -> (issued, nc)
        self.floor = float("-inf")  # issue time of the newest live nonce forgotten

    def __len__(self) -> int:
        return len(self._last)

    def use(self, nonce: str, issued: float, nc: int, oldest_live: float) -> bool:
        """Record a use with count `nc`; False if it is not higher than the last one."""
        while self._last:  # drop expired nonces from the old end (they are STALE anyway)
            first = next(iter(self._last))
            if self._last[first][0] >= oldest_live:
                break
            del self._last[first]
        entry = self._last.get(nonce)
        if entry is None:
            if issued <= self.floor:
                return False
        elif nc <= entry[1]:
            return False
        self._last[nonce] = (issued, nc)
        self._last.move_to_end(nonce)
        while len(self._last) > self.capacity:
            _, (forgotten, _) = self._last.popitem(last=False)
            self.floor = max(self.floor, forgotten)
        return True


class DigestChallenger:
    """Issues digest challenges for one realm and verifies the answers.

    `secret` keys the nonce MAC: share it between processes that must accept each
    other's nonces, rotate it to invalidate every outstanding nonce. `nonce_ttl` is how
    long (seconds) a nonce is fresh; `clock` returns seconds (inject one in tests).
    `algorithms` are offered in that order and are the only ones accepted.
    `accept_host_uri` also accepts a digest `uri` naming only the Request-URI's host and
    port (`sip:HOST:PORT`, what sipp 3.6.1 always signs): such credentials are not bound
    to the Request-URI's user part (the dialled number), only to the server.
    """

    def __init__(
        self,
        realm: str,
        secret: bytes,
        nonce_ttl: float = 300.0,
        clock: Callable[[], float] = time.time,
        *,
        algorithms: Sequence[str] = ("MD5",),
        qop: Sequence[str] = ("auth",),
        opaque: bool = True,
        max_tracked_nonces: int = 16384,
        accept_host_uri: bool = False,
    ) -> None:
        if not secret:
            raise ValueError("DigestChallenger needs a non-empty secret")
        if not algorithms:
            raise ValueError("DigestChallenger needs at least one algorithm")
        self.realm = realm
        self._secret = bytes(secret)
        self.nonce_ttl = nonce_ttl
        self._clock = clock
        self.algorithms = tuple(_algorithm(name)[0] for name in algorithms)
        self._qop = tuple(q.lower() for q in qop)
        self._opaque = (
            hmac.new(self._secret, b"opaque:" + _b(realm), hashlib.sha256).hexdigest()[:32]
            if opaque else None
        )
        self._uses = _NonceUses(max_tracked_nonces)
        self._accept_host_uri = accept_host_uri

    # -- challenges -----------------------------------------------------------------
    def new_nonce(self, source: str = "") -> str:
        """A fresh nonce for a challenge sent to `source` (the peer's address)."""
        payload = struct.pack(">Q", max(0, int(self._clock() * 1000))) + os.urandom(8)
        return (payload + self._mac(payload, source)).hex()

    def _mac(self, payload: bytes, source: str) -> bytes:
        message = b"\0".join((payload, _b(self.realm), _b(source)))
        return hmac.new(self._secret, message, hashlib.sha256).digest()[:16]

    def challenges(self, source: str = "", stale: bool = False) -> list[str]:
        """One challenge value per algorithm, most preferred first, each with its own
        nonce for `source`; in SIP each goes in its own header field (RFC 8760)."""
        out = []
        for key in self.algorithms:
            parts = [f"Digest realm={quote(self.realm)}", f'nonce="{self.new_nonce(source)}"']
            if self._opaque:
                parts.append(f'opaque="{self._opaque}"')
            if stale:
                parts.append("stale=true")
            parts.append(f"algorithm={key.replace('-SESS', '-sess')}")
            if self._qop:
                parts.append(f'qop="{",".join(self._qop)}"')
            out.append(", ".join(parts))
        return out

    def challenge(self, source: str = "", stale: bool = False) -> str:
        """The challenges as one header value (joined: only for a single algorithm)."""
        return ", ".join(self.challenges(source, stale))

    # -- verification ---------------------------------------------------------------
    def nonce_issued(self, nonce: str, source: str = "") -> float | None:
        """When (clock seconds) this challenger minted `nonce` for `source`; None if it
        did not (forged, another secret or realm, another address)."""
        if len(nonce) != 2 * _NONCE_BYTES:
            return None
        try:
            raw = bytes.fromhex(nonce)
        except ValueError:
            return None
        payload, mac = raw[:16], raw[16:]
        if not hmac.compare_digest(mac, self._mac(payload, source)):
            return None
        (millis,) = struct.unpack(">Q", payload[:8])
        return millis / 1000.0

    def nonce_age(self, nonce: str, source: str = "") -> float | None:
        """Seconds since this challenger minted `nonce` for `source`, or None."""
        issued = self.nonce_issued(nonce, source)
        return None if issued is None else self._clock() - issued

    def _pick(self, credentials: str | Sequence[str]) -> tuple[str, dict[str, str]] | str:
        """The first Digest credentials for our realm, or why there are none."""
        values = [credentials] if isinstance(credentials, str) else list(credentials)
        why = "no credentials"
        for value in values:
            try:
                scheme, params = parse_credentials(value)
            except SipParseError as exc:
                why = f"malformed credentials: {exc}"
                continue
            if scheme.lower() != "digest":
                why = f"unsupported scheme {scheme}"
            elif params.get("realm") != self.realm:
                why = "no credentials for this realm"
            else:
                return scheme, params
        return why

    def verify(
        self,
        credentials: str | Sequence[str] | None,
        method: str,
        password: str | Callable[[str], str | None] | None = None,
        *,
        uri: str,
        source: str = "",
        ha1: str | Callable[[str], str | None] | None = None,
        body: bytes = b"",
    ) -> VerifyResult:
        """Check Authorization / Proxy-Authorization value(s) for a request.

        `credentials`: the header value, or every value of the header (the first Digest
        one for our realm is used). `uri` is the Request-URI and `source` the address the
        request came from (the one its nonce must have been issued to). `password` is the
        password or a lookup username -> password (None: unknown user); `ha1` instead
        gives H(username:realm:password) (or a lookup), computed with the algorithm the
        client uses — offer only that algorithm when storing HA1s. `body` is needed for
        qop=auth-int.
        """
        if credentials is None or (isinstance(credentials, str) and not credentials.strip()) \
                or (not isinstance(credentials, str) and not any(v.strip() for v in credentials)):
            return VerifyResult(VerifyStatus.MISSING, reason="no credentials")
        picked = self._pick(credentials)
        if isinstance(picked, str):
            return VerifyResult(VerifyStatus.INVALID, reason=picked)
        _, params = picked
        username = params.get("username")
        nonce = params.get("nonce")
        if nonce is None:
            return VerifyResult(VerifyStatus.INVALID, username, "no nonce")
        issued = self.nonce_issued(nonce, source)
        if issued is None:
            return VerifyResult(VerifyStatus.INVALID, username, "nonce not issued to this source")

        # from here on the sender saw our challenge: wrong credentials are failures
        def failed(reason: str, status: VerifyStatus = VerifyStatus.FAILED) -> VerifyResult:
            return VerifyResult(status, username, reason, params.get("algorithm"))

        if username is None:
            return failed("no username")
        if params.get("userhash", "false").lower() == "true":
            return failed("userhash is not supported")
        response = params.get("response")
        digest_uri = params.get("uri")
        if response is None or digest_uri is None:
            return failed("uri and response are required")
        try:
            algorithm, _, _ = _algorithm(params.get("algorithm"))
        except DigestError as exc:
            return failed(str(exc))
        if algorithm not in self.algorithms:
            return failed(f"algorithm {algorithm} was not offered")
        if self._opaque is not None and "opaque" in params and \
                not hmac.compare_digest(_b(params["opaque"]), _b(self._opaque)):
            return failed("wrong opaque")
        if not self._uri_matches(digest_uri, uri):
            return failed("digest uri does not match the Request-URI", VerifyStatus.WRONG_URI)
        qop = params.get("qop")
        nc = params.get("nc")
        cnonce = params.get("cnonce")
        count = _RFC2069_USE
        if qop is not None:
            if qop.lower() not in self._qop:
                return failed(f"unsupported qop {qop}")
            if not nc or not cnonce or len(nc) != 8:
                return failed("qop needs an 8-digit nc and a cnonce")
            try:
                count = int(nc, 16)
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
        now = self._clock()
        age = now - issued
        if age > self.nonce_ttl or age < -60.0:
            return VerifyResult(VerifyStatus.STALE, username, "nonce expired", algorithm)
        if not self._uses.use(nonce, issued, count, now - self.nonce_ttl):
            reason = "nonce already used" if qop is None else "nonce count replayed"
            return VerifyResult(VerifyStatus.STALE, username, reason, algorithm)
        return VerifyResult(VerifyStatus.OK, username, "", algorithm)

    def _uri_matches(self, digest_uri: str, request_uri: str) -> bool:
        if equivalent(digest_uri, request_uri):
            return True
        if not self._accept_host_uri:
            return False
        try:  # sipp's form: sip:HOST:PORT of the Request-URI, without its user part
            target = SipUri.parse(request_uri)
        except SipParseError:
            return False
        server = SipUri(target.host, port=target.port, scheme=target.scheme)
        return equivalent(digest_uri, str(server))

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
