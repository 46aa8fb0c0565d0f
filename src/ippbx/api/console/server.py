"""The web console's server side: its pages, its login, and the JSON and server-sent
events the page reads, on the API port under `/console/`.

- `/console/` is one page (`static/index.html`) and its script and style; no build step,
  nothing from outside the package, a Content-Security-Policy that allows nothing else.
- Login: an API user (`[api]`) with its password. The login is a random cookie
  (`HttpOnly`, `SameSite=Strict`, path `/console`) plus a CSRF token the page sends back
  in `X-CSRF-Token` with every POST. Failed logins count toward the API's lockout of the
  address; `[api] allowed_ips` applies. A login ends at logout or after
  `[console] session_hours` without use. A `readonly` user sees everything and may do
  nothing (403; the configuration endpoints answer its errno 10003).
- Live calls and registrations are pushed over server-sent events (`/console/api/events`):
  the calls as soon as the registry changes (at most every `PUSH_EVERY` seconds, however
  busy the PBX), registrations and trunk states when they change (looked at every
  second, and only while a console is open). Nothing is done for the console while none
  is open.
- Actions on a call (hang up, hold, transfer) go through `CallControl`, as the API's do;
  configuration changes go through the vendor API's own endpoints
  (`/console/api/call/<endpoint>`, run as the logged-in user), so they are validated,
  applied and reported exactly as an integrator's are.
- The call history and the calls-per-hour chart read the CDR table (which keeps each
  call's recording file name).

The whole interface, path by path, is in docs/console.md.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from ippbx.api.dialects import dispatch
from ippbx.api.errors import ApiError, Errno
from ippbx.api.http_server import HttpRequest, HttpResponse, Stream
from ippbx.api.sessions import Session, md5_hex
from ippbx.pbx.calls import Call, LegStatus
from ippbx.pbx.cdr import local_time, zone
from ippbx.pbx.control import ControlError

if TYPE_CHECKING:
    from ippbx.api.request import ApiContext
    from ippbx.pbx.registrar import Registrar
    from ippbx.pbx.trunks import Trunks

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
COOKIE = "ippbx_console"
PUSH_EVERY = 0.1
"""Seconds between two pushes of the live calls, at most (changes in between are joined)."""
REGISTRATIONS_EVERY = 1.0
"""Seconds between two looks at the registrations while a console is open."""
PING_EVERY = 15.0
"""Seconds between two keep-alive comments on an idle event stream."""
MAX_CALLS_SHOWN = 500
"""Live calls sent to the page at most (the oldest first; `total` says how many there are)."""
PUSH_COST_FACTOR = 20
"""A push of the live calls waits at least this many times what the last one cost, so a
console open on a busy PBX takes at most about 5 % of the event loop."""
MAX_LOGINS = 1000
"""Console logins kept at once (the oldest goes first)."""
MAX_STREAMS = 100
"""Event streams open at once."""
MAX_STREAMS_PER_LOGIN = 8
"""Event streams one login may hold (its tabs), so one login cannot take them all."""
PER_PAGE_MAX = 200

CONFIG_ENDPOINTS = frozenset({
    "extensionlist/query", "extension/query", "extension/add", "extension/update",
    "extension/delete", "trunklist/query", "siptrunk/query", "siptrunk/add",
    "siptrunk/update", "siptrunk/delete", "outroute/query", "outroute/add",
    "outroute/update", "outroute/delete", "inroute/query", "inroute/add", "inroute/update",
    "inroute/delete",
})
"""The vendor API endpoints the console's configuration tab calls."""

_TYPES = {".html": b"text/html; charset=utf-8", ".js": b"text/javascript; charset=utf-8",
          ".css": b"text/css; charset=utf-8", ".svg": b"image/svg+xml",
          ".png": b"image/png", ".ico": b"image/x-icon"}
_SECURITY = (
    (b"Content-Security-Policy",
     b"default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; "
     b"script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
     b"form-action 'self'"),
    (b"X-Content-Type-Options", b"nosniff"),
    (b"Referrer-Policy", b"no-referrer"),
    (b"X-Frame-Options", b"DENY"),
)
_NO_STORE = (b"Cache-Control", b"no-store")
_JSON = (b"Content-Type", b"application/json")


@dataclass(slots=True)
class Login:
    """One console login."""

    user: str
    role: str
    csrf: str
    last_seen: float


class Refused(Exception):
    """An answer other than 200: its HTTP status and the text shown."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def _json(payload: object, status: int = 200,
          extra: tuple[tuple[bytes, bytes], ...] = ()) -> HttpResponse:
    return HttpResponse(status, (*_SECURITY, _NO_STORE, _JSON, *extra),
                        json.dumps(payload, separators=(",", ":")).encode("utf-8"))


def _redirect(location: bytes) -> HttpResponse:
    return HttpResponse(302, (*_SECURITY, (b"Location", location)), b"")


_NOT_FOUND = HttpResponse(404, (*_SECURITY, (b"Content-Type", b"text/plain; charset=utf-8")),
                          b"Not Found")


def _header(request: HttpRequest, name: bytes) -> str:
    for key, value in request.headers:
        if key == name:
            return value.decode("latin-1")
    return ""


def _cookie(request: HttpRequest) -> str:
    for part in _header(request, b"cookie").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return ""


def _body(request: HttpRequest) -> dict[str, Any]:
    if not request.body.strip():
        return {}
    try:
        data = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        raise Refused(400, "the body is not JSON") from None
    if not isinstance(data, dict):
        raise Refused(400, "the body is not a JSON object")
    return data


def _text(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise Refused(400, f"{name} must be text")
    return str(value).strip()


def _call_view(call: Call) -> dict[str, Any]:
    """One live call as the page shows it."""
    caller, callee = call.caller, call.callee
    if any(leg.status is LegStatus.WAIT for leg in call.legs()):
        status = "Wait"  # (held back: a queue, an inbound route under the API's control)
    elif call.answered is not None:
        status = "Talking"
    else:
        status = "Ringing"
    outbound, inbound = call.outbound_leg, call.inbound_leg
    trunk = (outbound.trunk if outbound is not None else
             inbound.trunk if inbound is not None else "") or ""
    extension = caller.extension or (callee.extension if callee is not None else None) or ""
    return {
        "callid": call.callid,
        "type": call.type.value,
        "caller": caller.from_number,
        "callee": callee.to_number if callee is not None else (call.application
                                                               or call.dialled),
        "trunk": trunk,
        "status": status,
        "started": call.created,
        "answered": call.answered,
        "extension": extension,
    }


class Console:
    """The console's pages and its JSON/SSE interface, for the PBX behind `ctx`."""

    def __init__(
        self,
        ctx: ApiContext,
        registrar: Registrar | None = None,
        trunks: Trunks | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ctx = ctx
        self.registrar = registrar
        self.trunks = trunks
        self._clock = clock
        self._logins: dict[str, Login] = {}
        self._streams: dict[Stream, str] = {}  # open event streams → their login
        self._unsubscribe: Callable[[], None] | None = None
        self._push: asyncio.TimerHandle | None = None  # the next push of the calls
        self._watch: asyncio.TimerHandle | None = None  # the next look at registrations
        self._registrations = b""  # the last registrations sent
        self._last_ping = 0.0
        self._push_cost = 0.0  # seconds the last push of the calls took
        self._static: dict[str, bytes] = {}

    # -- routing ------------------------------------------------------------------------
    def root(self, request: HttpRequest) -> HttpResponse:
        """`/`: to the console; any other path outside the API: 404."""
        if request.path == "/" and request.method in ("GET", "HEAD"):
            return _redirect(b"/console/")
        return _NOT_FOUND

    def page(self, request: HttpRequest) -> HttpResponse:
        """Everything under `/console`."""
        path, method = request.path, request.method
        try:
            if path == "/console":
                return _redirect(b"/console/")
            if path == "/console/" and method in ("GET", "HEAD"):
                return self._file("index.html")
            if path.startswith("/console/static/") and method in ("GET", "HEAD"):
                return self._file(path.removeprefix("/console/static/"))
            if path == "/console/login" and method == "POST":
                return self._login(request)
            if not path.startswith("/console/api/") and path != "/console/logout":
                return _NOT_FOUND
            return self._api(request)
        except Refused as exc:
            return _json({"error": exc.text}, exc.status)

    def _file(self, name: str) -> HttpResponse:
        kind = _TYPES.get(os.path.splitext(name)[1])
        if kind is None or "/" in name or name.startswith("."):
            return _NOT_FOUND
        body = self._static.get(name)
        if body is None:
            try:
                body = (STATIC / name).read_bytes()
            except OSError:
                return _NOT_FOUND
            self._static[name] = body
        return HttpResponse(200, (*_SECURITY, (b"Content-Type", kind),
                                  (b"Cache-Control", b"no-cache")), body)

    # -- login --------------------------------------------------------------------------
    def _login(self, request: HttpRequest) -> HttpResponse:
        data = _body(request)
        user, password = _text(data, "username"), _text(data, "password")
        try:
            role = self.ctx.sessions.authenticate(user, md5_hex(password) if password else "",
                                                  request.client)
        except ApiError as exc:
            if exc.errno is Errno.IP_LOCKED:
                raise Refused(429, "too many failed logins from this address, or the "
                                   "address is not allowed; try again later") from None
            raise Refused(401, "wrong user name or password") from None
        if len(self._logins) >= MAX_LOGINS:
            oldest = min(self._logins, key=lambda sid: self._logins[sid].last_seen)
            self._end(oldest)
        sid = secrets.token_urlsafe(32)
        login = self._logins[sid] = Login(user, role, secrets.token_urlsafe(24),
                                          self._clock())
        cookie = (f"{COOKIE}={sid}; Path=/console; HttpOnly; SameSite=Strict").encode()
        log.info("console: %s logged in from %s", user, request.client)
        return _json(self._me(login), extra=((b"Set-Cookie", cookie),))

    @staticmethod
    def _me(login: Login) -> dict[str, str]:
        return {"user": login.user, "role": login.role, "csrf": login.csrf}

    def _login_of(self, request: HttpRequest) -> tuple[str, Login]:
        sid = _cookie(request)
        login = self._logins.get(sid) if sid else None
        if login is None:
            raise Refused(401, "not logged in")
        now = self._clock()
        if now - login.last_seen > self.ctx.config.console.session_hours * 3600:
            self._end(sid)
            raise Refused(401, "the login expired")
        if not self.ctx.sessions.ip_allowed(request.client):
            raise Refused(401, "this address is not allowed")
        login.last_seen = now
        return sid, login

    def _end(self, sid: str) -> None:
        self._logins.pop(sid, None)
        for stream, owner in list(self._streams.items()):
            if owner == sid:
                stream.close()

    # -- the JSON interface ---------------------------------------------------------------
    def _api(self, request: HttpRequest) -> HttpResponse:
        sid, login = self._login_of(request)
        path, method = request.path, request.method
        if method == "POST":
            given = _header(request, b"x-csrf-token")
            if not given or not hmac.compare_digest(given.encode(), login.csrf.encode()):
                raise Refused(403, "missing or wrong CSRF token")
        if path == "/console/logout" and method == "POST":
            self._end(sid)
            log.info("console: %s logged out", login.user)
            return _json({}, extra=((b"Set-Cookie", f"{COOKIE}=; Path=/console; HttpOnly; "
                                     "SameSite=Strict; Max-Age=0".encode()),))
        name = path.removeprefix("/console/api/")
        if method == "GET":
            if name == "me":
                return _json(self._me(login))
            if name == "calls":
                return _json(self.calls())
            if name == "registrations":
                return _json(self.registrations())
            if name == "events":
                return self._events(sid)
            if name == "cdr":
                return _json(self._cdr(request))
            if name == "stats/hourly":
                return _json(self.hourly())
            if name.startswith("recordings/"):
                return self._recording(name.removeprefix("recordings/"))
            raise Refused(404, "no such page")
        if method != "POST":
            raise Refused(405, "method not allowed")
        if name.startswith("call/"):
            return self._vendor_call(request, login, name.removeprefix("call/"))
        if name.startswith("calls/"):
            callid, _, action = name.removeprefix("calls/").rpartition("/")
            if login.role != "admin":
                raise Refused(403, "a readonly user cannot act on calls")
            self._act(callid, action, _body(request))
            return _json({})
        raise Refused(404, "no such action")

    def calls(self) -> dict[str, Any]:
        """Every live call (the page's Live calls)."""
        registry = self.ctx.registry
        shown = registry.calls()[:MAX_CALLS_SHOWN]
        return {"now": self.ctx.wall_clock(), "total": len(registry),
                "calls": [_call_view(call) for call in shown]}

    def registrations(self) -> dict[str, Any]:
        """Every extension with its state and contacts, every trunk with its state."""
        config, status = self.ctx.config, self.ctx.pbx
        now = self.ctx.wall_clock()
        extensions = []
        for ext in config.extensions:
            contacts = [] if self.registrar is None else [
                {"uri": b.contact, "expires": max(0, round(b.expires_at - now))}
                for b in self.registrar.contacts(ext.number)]
            state = status.extension_status(ext.number).value if status is not None else ""
            extensions.append({"number": ext.number, "name": ext.name, "status": state,
                               "contacts": contacts})
        trunks = []
        for trunk in config.trunks:
            trunks.append({
                "name": trunk.name, "type": trunk.type,
                "status": status.trunk_status(trunk.name) if status is not None else "Unknown",
                "in_use": self.trunks.in_use.get(trunk.name, 0) if self.trunks else 0,
                "max_channels": trunk.max_channels,
            })
        return {"extensions": extensions, "trunks": trunks}

    def _cdr(self, request: HttpRequest) -> dict[str, Any]:
        query = dict(parse_qsl(request.query.decode("latin-1"), keep_blank_values=True))
        try:
            page = max(1, int(query.get("page") or 1))
            per_page = min(PER_PAGE_MAX, max(1, int(query.get("per_page") or 25)))
        except ValueError:
            raise Refused(400, "page and per_page are numbers") from None
        store = self.ctx.store
        if store is None:
            return {"total": 0, "page": page, "per_page": per_page, "items": []}
        total, records = store.cdr_page(query.get("q", "")[:100], (page - 1) * per_page,
                                        per_page)
        tz = zone(self.ctx.config.pbx.timezone)
        items = [{
            "id": r.callid, "start": local_time(r.start, tz), "caller": r.callfrom,
            "callee": r.callto, "trunk": r.dst_trunk or r.src_trunk, "type": r.type,
            "status": r.status, "duration": r.duration, "talk": r.talk,
            "recording": (f"/console/api/recordings/{r.recording}"
                          if self._has_recording(r.recording) else None),
        } for r in records]
        return {"total": total, "page": page, "per_page": per_page, "items": items}

    def _has_recording(self, name: str) -> bool:
        """Whether the recording `name` (a CDR's) is in the recordings directory."""
        recordings = self.ctx.recordings
        return bool(name) and recordings is not None and recordings.path_of(name) is not None

    def _recording(self, name: str) -> HttpResponse:
        recordings = self.ctx.recordings
        path = recordings.path_of(name) if recordings is not None else None
        if path is None:
            raise Refused(404, "no such recording")
        try:
            body = path.read_bytes()
        except OSError:
            raise Refused(404, "no such recording") from None
        return HttpResponse(200, (*_SECURITY, (b"Content-Type", b"audio/wav"),
                                  (b"Cache-Control", b"private, max-age=3600")), body)

    def hourly(self) -> dict[str, Any]:
        """Calls and answered calls started in each of the last 24 hours."""
        now = self.ctx.wall_clock()
        first = (int(now) // 3600 - 23) * 3600
        counted = {hour: (calls, answered) for hour, calls, answered
                   in (self.ctx.store.cdr_hourly(first) if self.ctx.store else [])}
        return {"hours": [{"start": hour, "calls": counted.get(hour, (0, 0))[0],
                           "answered": counted.get(hour, (0, 0))[1]}
                          for hour in range(first, first + 24 * 3600, 3600)]}

    # -- actions --------------------------------------------------------------------------
    def _act(self, callid: str, action: str, data: dict[str, Any]) -> None:
        control = self.ctx.control
        call = self.ctx.registry.get(callid) if callid else None
        if control is None or call is None:
            raise Refused(404, "no such call")
        extension = _call_view(call)["extension"]
        try:
            if action == "hangup":
                control.hangup(call.callid)
            elif action in ("hold", "unhold"):
                if not extension:
                    raise Refused(409, "only a call with an extension can be held")
                control.hold(call.callid, extension, action == "hold")
            elif action == "transfer":
                target = _text(data, "number")
                if not target:
                    raise Refused(400, "number is required")
                if not extension:
                    raise Refused(409, "only a call with an extension can be transferred")
                control.transfer(call.callid, extension, target)
            else:
                raise Refused(404, "no such action")
        except ControlError as exc:
            status = 404 if exc.reason == ControlError.NO_CALL else 409
            raise Refused(status, f"refused: {exc.reason}") from None
        log.info("console: %s on call %s", action, call.callid)

    def _vendor_call(self, request: HttpRequest, login: Login, endpoint: str) -> HttpResponse:
        """A configuration endpoint of the vendor API, as `login`'s user."""
        if endpoint not in CONFIG_ENDPOINTS:
            raise Refused(404, "not an endpoint the console calls")
        session = Session(token="", dialect="yeastar", source_ip=request.client,
                          username=login.user)
        answer = dispatch(self.ctx, method="POST", path=f"/api/v1.1.0/{endpoint}", query={},
                          authorization=None, client_ip=request.client, body=request.body,
                          as_session=session)
        if answer.listing is not None:  # (the call queries' lists, encoded already)
            return HttpResponse(200, (*_SECURITY, _NO_STORE, _JSON), answer.listing.body())
        return _json(answer.payload)

    # -- live updates ---------------------------------------------------------------------
    def _events(self, sid: str) -> HttpResponse:
        if len(self._streams) >= MAX_STREAMS:
            raise Refused(503, "too many consoles open")
        if sum(owner == sid for owner in self._streams.values()) >= MAX_STREAMS_PER_LOGIN:
            raise Refused(429, "too many consoles open with this login")

        def opened(stream: Stream) -> None:
            self._streams[stream] = sid
            stream.on_close = lambda: self._closed(stream)
            stream.send(b"retry: 2000\n" + self._event(b"calls", self.calls())
                        + self._event(b"registrations", self.registrations()))
            if self._unsubscribe is None:
                self._unsubscribe = self.ctx.registry.subscribe(self._on_change)
                self._registrations = json.dumps(self.registrations()).encode()
                self._last_ping = self._clock()
                self._watch = asyncio.get_running_loop().call_later(
                    REGISTRATIONS_EVERY, self._look)

        return HttpResponse(200, (*_SECURITY, _NO_STORE,
                                  (b"Content-Type", b"text/event-stream"),
                                  (b"X-Accel-Buffering", b"no")), stream=opened)

    @staticmethod
    def _event(name: bytes, payload: object) -> bytes:
        return b"event: " + name + b"\ndata: " + json.dumps(
            payload, separators=(",", ":")).encode("utf-8") + b"\n\n"

    def _closed(self, stream: Stream) -> None:
        self._streams.pop(stream, None)
        if not self._streams:
            self.close()

    def close(self) -> None:
        """Stop watching the PBX (no console is open, or the server stops)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for timer in (self._push, self._watch):
            if timer is not None:
                timer.cancel()
        self._push = self._watch = None

    def _on_change(self, event: object) -> None:
        if self._push is None:
            self._push = asyncio.get_running_loop().call_later(
                max(PUSH_EVERY, PUSH_COST_FACTOR * self._push_cost), self._send_calls)

    def _send_calls(self) -> None:
        self._push = None
        started = time.perf_counter()
        self._broadcast(self._event(b"calls", self.calls()))
        self._push_cost = time.perf_counter() - started

    def _broadcast(self, piece: bytes) -> None:
        for stream in list(self._streams):
            stream.send(piece)

    def _look(self) -> None:
        """Every second while a console is open: push the registrations if they changed,
        and a keep-alive comment now and then."""
        self._watch = None
        if not self._streams:
            return
        payload = self.registrations()
        encoded = json.dumps(payload).encode()
        now = self._clock()
        if encoded != self._registrations:
            self._registrations = encoded
            self._broadcast(self._event(b"registrations", payload))
            self._last_ping = now
        elif now - self._last_ping >= PING_EVERY:
            self._broadcast(b": ping\n\n")
            self._last_ping = now
        self._watch = asyncio.get_running_loop().call_later(REGISTRATIONS_EVERY, self._look)


