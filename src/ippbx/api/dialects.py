"""The dialect router: `/api/v0.0.1/…` is OpenVox (JSON or XML), `/api/v1.1.0/…` is Yeastar
(JSON only). Both serve the same endpoints; a dialect decides the formats it takes, the
errno it shows for a few failures, and small payload differences (`callee` object/array,
extension `type` `pjsip`/`SIP`, trunklist/query's list key `trunkname`/`trunklist`).

`dispatch` runs one request through the same steps for every endpoint, each of which can
end it with an errno (always inside a `Success`/`Failed` envelope, never an HTTP error):

1. API version      unknown → 10003
2. `?type=`         OpenVox json|xml (else 10002); Yeastar json (xml or other → 20000);
                    absent or empty: sniff the body (leading `<` is XML)
3. method/endpoint  a method the endpoint does not take (all but POST, and any method
                    on an unknown endpoint) → 20001; unknown endpoint → 10003
4. body             over 64 KiB → 10002 (both dialects); XML sniffed on Yeastar → 20000
5. token            endpoints other than login: `?token=`, `?access_token=` or
                    `Authorization: Bearer`; missing 20005, unknown 20004, expired 20006
6. decode           blank body where required → 20007; not parsable or not an object →
                    10002 (OpenVox) / 20000 (Yeastar)
7. handler          its own errnos (10004, 20002, 20003 shown as 30003 on OpenVox, …)

Anything unexpected is logged and answered with 30001. Tokens are never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ippbx.api import codec
from ippbx.api.codec import CodecError, Format
from ippbx.api.endpoints import (
    auth,
    calls,
    cdr,
    conferences,
    config,
    config_changes,
    control,
    inbound,
    ivr,
    paging,
    queues,
    recording,
    system,
    voicemail,
)
from ippbx.api.errors import ApiError, Errno
from ippbx.api.request import (
    ApiContext,
    ApiRequest,
    EncodedList,
    Endpoint,
    FileReply,
)
from ippbx.api.sessions import Session

log = logging.getLogger(__name__)

API_PREFIX = "/api/"
_DEFAULT_METHODS = frozenset({"POST"})
_NOT_PARAMETERS = frozenset({"token", "access_token", "type"})


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one API version speaks."""

    name: str
    version: str
    formats: frozenset[Format]
    malformed: Errno
    errno_map: Mapping[Errno, Errno] = field(default_factory=dict)
    callee_as_list: bool = False
    extension_type: str = "pjsip"  # `type` of a SIP extension in extension queries
    trunk_list_key: str = "trunkname"  # trunklist/query's list key (OpenVox's example)

    def errno(self, errno: Errno) -> int:
        return int(self.errno_map.get(errno, errno))

    def format_for(self, type_param: str | None) -> Format | None:
        """The format `?type=` asks for; None when absent (sniff); ApiError if refused."""
        if not type_param:
            return None
        fmt = _FORMATS.get(type_param)  # the usual spellings, at once
        if fmt is None:
            wanted = type_param.strip().lower()
            if not wanted:
                return None
            fmt = _FORMATS.get(wanted)
        if fmt is not None and fmt in self.formats:
            return fmt
        raise ApiError(self.malformed if Format.XML in self.formats else Errno.ONLY_JSON)


_FORMATS: dict[str, Format] = {fmt.value: fmt for fmt in Format}
_JSON_FORMAT = Format.JSON  # (a module constant: an enum member's lookup costs)

OPENVOX = Dialect(
    name="openvox",
    version="v0.0.1",
    formats=frozenset({Format.JSON, Format.XML}),
    malformed=Errno.BAD_PACKET,
    errno_map={Errno.BAD_CREDENTIALS: Errno.OPENVOX_LOGIN_FAILED},
)
YEASTAR = Dialect(
    name="yeastar",
    version="v1.1.0",
    formats=frozenset({Format.JSON}),
    malformed=Errno.ONLY_JSON,
    callee_as_list=True,
    extension_type="SIP",
    trunk_list_key="trunklist",
)
DIALECTS: dict[str, Dialect] = {d.version: d for d in (OPENVOX, YEASTAR)}

ENDPOINTS: dict[str, Endpoint] = {
    e.path: e
    for module in (auth, calls, cdr, conferences, config, config_changes, control, inbound,
                   ivr, paging, queues, recording, system, voicemail)
    for e in module.ENDPOINTS
}


_ROUTES: dict[str, tuple[str, str, Dialect, Endpoint]] = {
    f"{API_PREFIX}{version}/{name}": (version, name, dialect, endpoint)
    for version, dialect in DIALECTS.items() for name, endpoint in ENDPOINTS.items()
}
"""Every endpoint's path in every dialect (other paths are split and looked up)."""


def split_path(path: str) -> tuple[str, str]:
    """`/api/v0.0.1/outbound/query/` → (`v0.0.1`, `outbound/query`)."""
    version, _, name = path.removeprefix(API_PREFIX).partition("/")
    return version, name.rstrip("/")


def token_from(query: Mapping[str, str], authorization: str | None) -> str | None:
    """The session token: `?token=`, else `?access_token=`, else `Authorization: Bearer`."""
    for key in ("token", "access_token"):
        value = query.get(key)
        if value:
            return value.strip()
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


UNKNOWN_ENDPOINT = "unknown"
"""The endpoint name counted for a path that names no endpoint (so that made-up paths do
not make new counters)."""


@dataclass(slots=True)
class Answer:
    """The envelope to send and its format (or a file a download endpoint answers, or a
    list encoded already)."""

    payload: dict[str, Any]
    fmt: Format
    file: FileReply | None = None
    listing: EncodedList | None = None
    endpoint: str = UNKNOWN_ENDPOINT  # the endpoint's name, for the request counters
    errno: int = 0  # the errno sent (0: Success)


def dispatch(
    ctx: ApiContext,
    *,
    method: str,
    path: str,
    query: Mapping[str, str],
    authorization: str | None,
    client_ip: str,
    body: bytes,
    body_too_large: bool = False,
    as_session: Session | None = None,
) -> Answer:
    """Run one API request (a path under `/api/`, its body read whole, or dropped for
    being over `codec.MAX_BODY`; `authorization` is its Authorization header) and return
    its envelope. `as_session`: the request is that session's, authenticated already
    (the web console's own calls), and needs no token."""
    route = _ROUTES.get(path)
    if route is not None:
        version, name, dialect, found = route
        endpoint: Endpoint | None = found
    else:
        version, name = split_path(path)
        dialect = DIALECTS.get(version, OPENVOX)
        endpoint = ENDPOINTS.get(name)
    fmt = _JSON_FORMAT
    try:
        if version not in DIALECTS:
            raise ApiError(Errno.UNKNOWN_REQUEST, f"no API version {version!r}")
        asked = dialect.format_for(query.get("type"))
        fmt = asked or _JSON_FORMAT
        if method not in (endpoint.methods if endpoint else _DEFAULT_METHODS):
            raise ApiError(Errno.ONLY_POST)
        if endpoint is None:
            raise ApiError(Errno.UNKNOWN_REQUEST, f"no endpoint {name!r}")
        if body_too_large:
            raise ApiError(Errno.BAD_PACKET, f"body larger than {codec.MAX_BODY} bytes")
        if asked is None and codec.looks_like_xml(body):
            if Format.XML not in dialect.formats:
                raise ApiError(Errno.ONLY_JSON)
            fmt = Format.XML
        token = token_from(query, authorization)
        if endpoint.auth and not ctx.sessions.ip_allowed(client_ip):
            raise ApiError(Errno.IP_LOCKED, "address not in allowed_ips")  # (token or not)
        if as_session is not None:
            session: Session | None = as_session
        else:
            session = ctx.sessions.check(token) if endpoint.auth else None
        try:
            data = codec.decode(body, fmt)
        except CodecError as exc:
            raise ApiError(dialect.malformed, str(exc)) from None
        if data is None and endpoint.body_required:
            raise ApiError(Errno.EMPTY_BODY)
        if data is None and method == "GET":  # a plain link: its query is the request
            data = {k: v for k, v in query.items() if k not in _NOT_PARAMETERS}
        request = ApiRequest(ctx, dialect, fmt, data, client_ip, token, session)
        payload = endpoint.handler(request)
        if isinstance(payload, EncodedList):
            return Answer({}, fmt, None, payload, endpoint.path)  # (positional: cheaper)
        if isinstance(payload, FileReply):
            return Answer({}, fmt, payload, None, endpoint.path)
        return Answer(codec.success(payload), fmt, None, None, endpoint.path)
    except ApiError as exc:
        log.debug("api %s %s from %s: %s", method, path, client_ip, exc)
        errno = dialect.errno(exc.errno)
        return Answer(codec.failure(errno), fmt, endpoint=_name(endpoint), errno=errno)
    except Exception:
        log.exception("api %s %s from %s failed", method, path, client_ip)
        return Answer(codec.failure(Errno.INTERNAL), fmt, endpoint=_name(endpoint),
                      errno=int(Errno.INTERNAL))


def _name(endpoint: Endpoint | None) -> str:
    return endpoint.path if endpoint is not None else UNKNOWN_ENDPOINT
