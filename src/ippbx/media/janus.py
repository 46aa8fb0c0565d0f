"""ippbx's conference mixer: the Janus WebRTC server's AudioBridge plugin, driven over REST.

ippbx uses Janus for one thing: mixing the audio of conference rooms. Every party is a
plain-RTP participant (no WebRTC, no ICE, no DTLS): G.711 (PCMU, or PCMA) at 8 kHz, in
a room whose mixer runs at 8 kHz, so nothing is transcoded or resampled.

The REST API (`JanusClient`)
----------------------------
`start()` creates a Janus session (POST /janus `create`), attaches one plugin handle to
`janus.plugin.audiobridge` (the control handle: `create`, `destroy`, `list`,
`listparticipants`, `mute`/`unmute` are synchronous requests answered in the HTTP reply)
and starts the long poll (GET /janus/<session>?maxev=N), which returns the session's
events as they come, or a keepalive after 30 s; each poll also counts as a keepalive, so
the session does not time out while it runs. `join()` attaches a handle of its own per
party (a handle is one participant) and sends `join` with an `rtp` object (where the
party receives: ip, port, payload type). Janus acks it at once; the `joined` event
comes on the long poll, carrying the transaction of the request, the participant id and
where Janus receives this party's RTP (`rtp: {ip, port, payload_type}`). The client
registers a future per transaction before sending, so an event that overtakes the ack is
not lost. `leave()` detaches the party's handle: the plugin removes it from the room.
Janus errors (`"janus": "error"`, e.g. 458 no such session, 459 no such handle) and
plugin errors (`error_code`, e.g. 485 no such room, 486 room exists, 492 no such user)
become `JanusError` with the code in `.code`; so do HTTP failures and timeouts.

Janus only starts sending a plain-RTP party the mix once it has received a packet from
it, and its socket is connect()ed to the address given in `join`: the party must send
from exactly that address (symmetric RTP), packets from anywhere else are dropped by the
kernel. Each party gets one even UDP port (no RTCP port) from the plugin's
`rtp_port_range`, allocated round-robin over the range (ports from min up to below max).

The process (`JanusEngine`)
---------------------------
With no `url`, `JanusEngine` runs its own janus: `janus -C <dir>/janus.jcfg -F <dir> -o`
with a configuration folder written by `janus_config()` into `workdir` (or a temporary
directory): the HTTP transport on 127.0.0.1 and a free port (not Janus's default 8088;
no admin API, no HTTPS), the AudioBridge with `local_ip` = the media interface (Janus
would otherwise advertise an address it guesses) and `rtp_port_range` = the engine's
range, the core's RTP range set to the same, session timeouts off (the session is ours
and dies with the process), no event handlers. Plugins and transports are loaded from
folders of our own holding symlinks to `libjanus_audiobridge.so` and `libjanus_http.so`
only, so no other plugin (SIP, streaming, ...) or transport (WebSockets, ...) is ever
loaded, whatever else is installed (`exit_on_dl_error`: if those two cannot load, janus
exits rather than running without them). Its output (stdout and stderr, colours off,
`debug_level` 4 by default) is read line by line into logging: "[WARN]", "[ERR]" and
"[FATAL]" lines as rate-limited WARNING lines (but those that repeat an error the API
answers with as well, e.g. "Room 7 already exists!", are no news), the rest at DEBUG;
only the last few lines are kept (for the error when it fails to start). It runs in a
session of its own, so a Ctrl-C at the terminal reaches ippbx only, which then stops
it; it gets SIGTERM if ippbx itself dies (Linux PR_SET_PDEATHSIG).

`start()` returns once janus answers GET /janus/info and `client` (a `JanusClient`)
holds a session (JanusError when that does not happen within `start_timeout`, or janus
exits; a first start whose HTTP port was taken meanwhile tries another port). When it
dies, one WARNING line says so, and it is started again after a backoff (0.25 s,
doubling up to 30 s, reset after a minute of good run) on the same port if it can;
once it answers, `client` is replaced by a fresh session and `on_restart()` is called:
every room and participant was lost, the caller rebuilds or ends them. Until then the
old `client` stays in place, closed: its requests raise JanusError. `stop()` closes the
session, sends SIGTERM (janus takes about a second to exit), then SIGKILL after
`stop_timeout`, and reaps it. That supervision is `child.SupervisedChild`'s (shared
with rtpengine's); `JanusEngine` adds janus's configuration and command line, its
readiness (a session), which output lines are severe, and the closed client.

With `url` the janus is someone else's: `start()` pings it and opens a session, and a
health check pings it every `health_interval` (2 s). When it stops answering, one
WARNING line says so; when it answers again, a keepalive tells whether our session
survived (a network hiccup: nothing happens) or not (janus restarted: its rooms are
gone): then `client` is replaced and `on_restart()` called, as above.

Measured with Debian's janus 1.1.2 on loopback: it answers about 0.2 s after the spawn
(a restart after SIGKILL, backoff included, takes about 0.4 s); a join (attach, join,
joined event) takes about 5 ms; what a party says reaches the others about 0.145 s later
(the plugin buffers 6 packets per party before it mixes it in); mute takes effect
within a packet; a party's port is free again about 1 s after it left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ippbx.media.child import SupervisedChild, call_back, describe_exit

__all__ = [
    "AUDIOBRIDGE", "JanusClient", "JanusEngine", "JanusError", "Participant", "RtpAddress",
    "find_janus", "find_janus_libdir", "janus_config", "link_modules",
]

log = logging.getLogger(__name__)

AUDIOBRIDGE = "janus.plugin.audiobridge"
AUDIOBRIDGE_SO = "libjanus_audiobridge.so"
HTTP_SO = "libjanus_http.so"

# Janus API error codes (janus/apierror.h) and AudioBridge plugin error codes
ERR_NO_SUCH_SESSION = 458
ERR_NO_SUCH_HANDLE = 459
ERR_NO_SUCH_ROOM = 485
ERR_ROOM_EXISTS = 486

CODECS = {0: "pcmu", 8: "pcma"}  # RTP payload type -> the plugin's codec name
SAMPLING_RATE = 8000

_LONG_POLL = 30.0  # janus answers a long poll with a keepalive after 30 s
_MAX_EVENTS = 16  # events per long-poll answer
_POLL_RETRY_MAX = 2.0
_SEVERE = ("[WARN]", "[ERR]", "[FATAL]")
# [WARN]/[ERR] lines that are no news: our own choice, or janus echoing an error its API
# answers us with as well (a JanusError for the caller, or tolerated on purpose: a room
# that exists already, an unknown room or session)
_BENIGN = ("Session timeouts have been disabled", "already exists!", "No such room (",
           "No such user ", "Couldn't find any session ",
           # a member's call ends (its rtpengine call deleted) a moment before it leaves
           "Error sending plain RTP packet: 111")


class JanusError(Exception):
    """A Janus request failed: HTTP error, timeout, a Janus or plugin error, not running.

    `code` is Janus's error code (e.g. 458 no such session, 459 no such handle) or the
    AudioBridge's (485 no such room, 486 room exists, 492 no such user), else None.
    """

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class RtpAddress:
    """Where RTP goes: an IPv4 address, a port, the payload type (0 PCMU, 8 PCMA)."""

    ip: str
    port: int
    payload_type: int = 0


@dataclass
class Participant:
    """One party in a room: its AudioBridge id, its plugin handle, and where Janus
    receives its RTP."""

    room: int
    id: int
    handle: int
    janus_rtp: RtpAddress


# -- helpers --------------------------------------------------------------------------------


def find_janus() -> str | None:
    """The path of the janus executable, or None when it is not installed."""
    found = shutil.which("janus")
    if found:
        return found
    return "/usr/bin/janus" if os.access("/usr/bin/janus", os.X_OK) else None


def find_janus_libdir(binary: str | None = None) -> Path | None:
    """The folder with janus's `plugins/` and `transports/` (e.g. Debian's
    /usr/lib/x86_64-linux-gnu/janus), looked for next to the binary's prefix and under
    /usr; None when no folder there has both the AudioBridge and the HTTP transport."""
    prefixes: list[Path] = []
    if binary:
        prefixes.append(Path(os.path.realpath(binary)).parent.parent)
    prefixes += [Path("/usr"), Path("/usr/local"), Path("/opt/janus")]
    for prefix in dict.fromkeys(prefixes):
        candidates = [prefix / "lib" / "janus", prefix / "lib64" / "janus"]
        with contextlib.suppress(OSError):
            candidates += sorted((prefix / "lib").glob("*/janus"))
        for folder in candidates:
            if ((folder / "plugins" / AUDIOBRIDGE_SO).is_file()
                    and (folder / "transports" / HTTP_SO).is_file()):
                return folder
    return None


def _quote(value: str) -> str:
    """A libconfig string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def janus_config(*, confdir: Path, http_port: int, interface: str, rtp_port_min: int,
                 rtp_port_max: int, debug_level: int = 4) -> dict[str, str]:
    """The files of our janus's configuration folder `confdir`: name -> text.

    janus.jcfg loads plugins and transports from `confdir`/plugins and
    `confdir`/transports (see `link_modules`), has no session timeout, the core's RTP
    range and local IP set, no event handlers; the AudioBridge binds plain-RTP parties
    on `interface`, ports `rtp_port_min`-`rtp_port_max`; the HTTP transport listens on
    127.0.0.1:`http_port` only (no HTTPS, no admin API).
    """
    ports = _quote(f"{rtp_port_min}-{rtp_port_max}")
    folder = confdir.resolve()
    core = f"""\
# written by ippbx (ippbx.media.janus): regenerated at every start
general: {{
	configs_folder = {_quote(str(folder))}
	plugins_folder = {_quote(str(folder / "plugins"))}
	transports_folder = {_quote(str(folder / "transports"))}
	events_folder = {_quote(str(folder / "events"))}
	loggers_folder = {_quote(str(folder / "loggers"))}
	log_to_stdout = true
	debug_level = {int(debug_level)}
	debug_timestamps = false
	debug_colors = false
	interface = {_quote(interface)}
	server_name = "ippbx"
	session_timeout = 0
	hide_dependencies = true
	exit_on_dl_error = true
}}
media: {{
	rtp_port_range = {ports}
}}
nat: {{
	nice_debug = false
	ice_enforce_list = {_quote(interface)}
}}
plugins: {{
}}
transports: {{
}}
loggers: {{
}}
events: {{
	broadcast = false
}}
"""
    audiobridge = f"""\
# written by ippbx (ippbx.media.janus)
general: {{
	local_ip = {_quote(interface)}
	rtp_port_range = {ports}
	events = false
}}
"""
    http = f"""\
# written by ippbx (ippbx.media.janus)
general: {{
	json = "compact"
	base_path = "/janus"
	http = true
	port = {int(http_port)}
	ip = "127.0.0.1"
	https = false
	events = false
}}
admin: {{
	admin_http = false
	admin_https = false
}}
"""
    return {"janus.jcfg": core, "janus.plugin.audiobridge.jcfg": audiobridge,
            "janus.transport.http.jcfg": http}


def link_modules(confdir: Path, libdir: Path) -> None:
    """Fill `confdir`/plugins with a symlink to the AudioBridge only and
    `confdir`/transports with one to the HTTP transport only (loggers/ and events/ stay
    empty): janus loads every .so of those folders."""
    wanted = {"plugins": AUDIOBRIDGE_SO, "transports": HTTP_SO, "loggers": None,
              "events": None}
    for sub, name in wanted.items():
        folder = confdir / sub
        folder.mkdir(parents=True, exist_ok=True)
        for entry in folder.iterdir():
            if entry.name != name:
                entry.unlink()
        if name is not None:
            link = folder / name
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(libdir / sub / name)


def _transaction() -> str:
    return secrets.token_hex(8)


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise JanusError(f"janus: {what} is not an integer: {value!r}")
    return value


def _plugin_data(reply: dict[str, Any], request: str) -> dict[str, Any]:
    """The AudioBridge's answer in a "success" reply or an "event"; JanusError for a
    plugin error."""
    plugindata = reply.get("plugindata")
    data = plugindata.get("data") if isinstance(plugindata, dict) else None
    if reply.get("janus") not in ("success", "event") or not isinstance(data, dict):
        raise JanusError(f"audiobridge {request}: unexpected answer {reply!r:.300}")
    if "error_code" in data:
        code = data.get("error_code")
        raise JanusError(f"audiobridge {request}: {data.get('error', 'error')} ({code})",
                         code=code if isinstance(code, int) else None)
    return data


# -- the REST client ------------------------------------------------------------------------


class JanusClient:
    """One Janus session over REST, its long-poll task, one control handle."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")  # e.g. "http://127.0.0.1:8188/janus"
        self.timeout = timeout
        self.session_id: int | None = None
        self.control: int | None = None  # the handle for room requests
        self._http: httpx.AsyncClient | None = None
        self._poll: asyncio.Task[None] | None = None
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._handles: dict[int, int] = {}  # handle -> room, of the parties we joined
        self._poll_ok = False
        self._lost = False  # janus no longer knows our session
        self._closed = False

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            # trust_env=False: an http_proxy in the environment must not catch loopback
            self._http = httpx.AsyncClient(timeout=self.timeout, trust_env=False)
        return self._http

    # -- state ------------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """The session is up and the long poll is not failing."""
        return (self.session_id is not None and not self._closed and not self._lost
                and self._poll_ok and self._poll is not None and not self._poll.done())

    @property
    def handles(self) -> dict[int, int]:
        """The handles of the parties we joined (and did not leave): handle -> room."""
        return dict(self._handles)

    # -- start and close --------------------------------------------------------------------

    async def start(self) -> None:
        """Create the session, attach the control handle, start the long poll."""
        if self.session_id is not None or self._closed:
            raise JanusError("janus client already started")
        try:
            reply = await self._request("", {"janus": "create"})
            data = reply.get("data")
            self.session_id = _int(data.get("id") if isinstance(data, dict) else None,
                                   "session id")
            self.control = await self._attach()
        except BaseException:
            await self.close()
            raise
        self._poll_ok = True
        self._poll = asyncio.create_task(self._long_poll(), name="janus-long-poll")

    async def close(self) -> None:
        """Destroy the session (best effort: its handles leave their rooms), stop the long
        poll, close the HTTP client; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._poll is not None:
            self._poll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll
            self._poll = None
        self._fail_waiters(JanusError("janus client closed"))
        if self.session_id is not None and not self._lost and self._http is not None:
            with contextlib.suppress(httpx.HTTPError):
                await self._http.post(f"{self.url}/{self.session_id}",
                                      json={"janus": "destroy", "transaction": _transaction()},
                                      timeout=min(self.timeout, 1.0))
        self._handles.clear()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> JanusClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- requests ---------------------------------------------------------------------------

    async def ping(self, *, timeout: float | None = None) -> bool:
        """Does janus answer GET /janus/info?"""
        if self._closed:
            return False
        try:
            response = await self._client().get(f"{self.url}/info", timeout=timeout
                                                or self.timeout)
            return (response.status_code == 200
                    and response.json().get("janus") == "server_info")
        except (httpx.HTTPError, ValueError, AttributeError):
            return False

    async def keepalive(self) -> bool:
        """Does janus still know our session? (False when it does not, or does not answer.)"""
        if self.session_id is None or self._closed or self._lost:
            return False
        try:
            await self._request(f"/{self.session_id}", {"janus": "keepalive"})
            return True
        except JanusError:
            return False

    async def _request(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST `body` (with a transaction) to url + path; the reply, or JanusError."""
        if self._closed:
            raise JanusError("janus client closed")
        if "transaction" not in body:
            body = {**body, "transaction": _transaction()}
        what = body.get("janus")
        try:
            response = await self._client().post(self.url + path, json=body)
        except httpx.HTTPError as exc:
            raise JanusError(f"janus {what} at {self.url}: {type(exc).__name__}: {exc}"
                             ) from None
        if response.status_code != 200:
            raise JanusError(f"janus {what} at {self.url}: HTTP {response.status_code}")
        try:
            reply = response.json()
        except ValueError:
            raise JanusError(f"janus {what}: the answer is not JSON") from None
        if not isinstance(reply, dict):
            raise JanusError(f"janus {what}: the answer is not a JSON object")
        if reply.get("janus") == "error":
            error = reply.get("error")
            error = error if isinstance(error, dict) else {}
            code = error.get("code")
            code = code if isinstance(code, int) else None
            if code == ERR_NO_SUCH_SESSION:
                self._lost = True
            raise JanusError(f"janus {what}: {error.get('reason', 'error')} ({code})",
                             code=code)
        return reply

    def _session_path(self) -> str:
        if self.session_id is None:
            raise JanusError("janus client not started")
        return f"/{self.session_id}"

    async def _attach(self) -> int:
        reply = await self._request(self._session_path(),
                                    {"janus": "attach", "plugin": AUDIOBRIDGE})
        data = reply.get("data")
        return _int(data.get("id") if isinstance(data, dict) else None, "handle id")

    async def _detach(self, handle: int) -> None:
        """Detach `handle`; one janus no longer knows is not an error."""
        try:
            await self._request(f"{self._session_path()}/{handle}", {"janus": "detach"})
        except JanusError as exc:
            if exc.code not in (ERR_NO_SUCH_HANDLE, ERR_NO_SUCH_SESSION):
                raise

    async def _room_request(self, body: dict[str, Any]) -> dict[str, Any]:
        """A synchronous AudioBridge request on the control handle."""
        if self.control is None:
            raise JanusError("janus client not started")
        reply = await self._request(f"{self._session_path()}/{self.control}",
                                    {"janus": "message", "body": body})
        return _plugin_data(reply, str(body.get("request")))

    # -- rooms ------------------------------------------------------------------------------

    async def create_room(self, room: int, *, description: str = "",
                          record_file: str | None = None) -> None:
        """Create room `room` (8 kHz mixing, plain-RTP parties allowed, not saved to the
        config); a room that exists already is not an error. `record_file`: janus writes
        the room's mix there (a WAV file, relative to janus's working directory)."""
        body: dict[str, Any] = {
            "request": "create", "room": room, "sampling_rate": SAMPLING_RATE,
            "allow_rtp_participants": True, "permanent": False, "audiolevel_ext": False,
        }
        if description:
            body["description"] = description
        if record_file:
            body["record"] = True
            body["record_file"] = record_file
        try:
            await self._room_request(body)
        except JanusError as exc:
            if exc.code != ERR_ROOM_EXISTS:
                raise

    async def destroy_room(self, room: int) -> None:
        """Destroy room `room` (its parties are dropped; the handles we joined to it are
        detached); an unknown room is not an error."""
        try:
            await self._room_request({"request": "destroy", "room": room,
                                      "permanent": False})
        except JanusError as exc:
            if exc.code != ERR_NO_SUCH_ROOM:
                raise
        for handle in [h for h, r in self._handles.items() if r == room]:
            self._handles.pop(handle, None)
            try:
                await self._detach(handle)
            except JanusError as exc:
                log.debug("janus: detaching handle %d of room %d: %s", handle, room, exc)

    async def rooms(self) -> list[int]:
        """The rooms janus has (the `list` request)."""
        data = await self._room_request({"request": "list"})
        listed = data.get("list")
        if not isinstance(listed, list):
            raise JanusError("audiobridge list: no list in the answer")
        return [item["room"] for item in listed
                if isinstance(item, dict) and isinstance(item.get("room"), int)]

    async def participants(self, room: int) -> list[dict[str, Any]]:
        """The parties in `room` (`listparticipants`): dicts with id, display, muted, ..."""
        data = await self._room_request({"request": "listparticipants", "room": room})
        listed = data.get("participants")
        if not isinstance(listed, list):
            raise JanusError("audiobridge listparticipants: no list in the answer")
        return [item for item in listed if isinstance(item, dict)]

    async def mute(self, room: int, participant_id: int, muted: bool) -> None:
        """Mute (or unmute) a party for the room: the others stop (or start again)
        hearing it."""
        await self._room_request({"request": "mute" if muted else "unmute", "room": room,
                                  "id": participant_id})

    # -- parties ----------------------------------------------------------------------------

    async def join(self, room: int, rtp: RtpAddress, *, display: str = "",
                   muted: bool = False) -> Participant:
        """Add a plain-RTP party to `room` that receives the mix at `rtp` (payload type 0:
        PCMU, 8: PCMA); returns once joined, with where janus receives its RTP."""
        codec = CODECS.get(rtp.payload_type)
        if codec is None:
            raise ValueError(f"payload type {rtp.payload_type} is not G.711 (0 or 8)")
        handle = await self._attach()
        transaction = _transaction()
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[transaction] = waiter
        body: dict[str, Any] = {
            "request": "join", "room": room, "codec": codec, "muted": muted,
            "rtp": {"ip": rtp.ip, "port": rtp.port, "payload_type": rtp.payload_type},
        }
        if display:
            body["display"] = display
        try:
            reply = await self._request(f"{self._session_path()}/{handle}",
                                        {"janus": "message", "body": body,
                                         "transaction": transaction})
            if reply.get("janus") == "ack":
                try:
                    reply = await asyncio.wait_for(waiter, self.timeout)
                except TimeoutError:
                    raise JanusError(f"audiobridge join: no joined event within "
                                     f"{self.timeout:.1f} s") from None
            data = _plugin_data(reply, "join")
            if data.get("audiobridge") != "joined":
                raise JanusError(f"audiobridge join: unexpected answer {data!r:.300}")
            where = data.get("rtp")
            if not isinstance(where, dict) or not isinstance(where.get("ip"), str):
                raise JanusError("audiobridge join: no RTP address in the joined event "
                                 "(no free port in its rtp_port_range?)")
            participant = Participant(
                room=room, id=_int(data.get("id"), "participant id"), handle=handle,
                janus_rtp=RtpAddress(where["ip"], _int(where.get("port"), "rtp port"),
                                     _int(where.get("payload_type", rtp.payload_type),
                                          "payload type")))
        except BaseException:
            with contextlib.suppress(JanusError):
                await self._detach(handle)
            raise
        finally:
            self._waiters.pop(transaction, None)
        self._handles[handle] = room
        return participant

    async def leave(self, participant: Participant) -> None:
        """Take the party out of its room (detach its handle); idempotent, and a no-op
        for a party of another (e.g. a lost) session."""
        if self._handles.pop(participant.handle, None) is None:
            return
        if self._closed or self._lost:
            return
        await self._detach(participant.handle)

    # -- the long poll ----------------------------------------------------------------------

    async def _long_poll(self) -> None:
        assert self.session_id is not None
        url = f"{self.url}/{self.session_id}"
        timeout = httpx.Timeout(self.timeout, read=_LONG_POLL + self.timeout)
        retry = 0.1
        while not self._closed:
            problem = ""
            try:
                response = await self._client().get(url, params={"maxev": _MAX_EVENTS},
                                                    timeout=timeout)
                if response.status_code == 404:  # janus no longer knows the session
                    self._lost = True
                    self._poll_ok = False
                    log.warning("janus: session %d at %s is gone", self.session_id, self.url)
                    self._fail_waiters(JanusError("janus session lost",
                                                  code=ERR_NO_SUCH_SESSION))
                    return
                if response.status_code != 200:
                    problem = f"HTTP {response.status_code}"
                else:
                    events = response.json()
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            except ValueError:
                problem = "the answer is not JSON"
            if problem:
                if self._poll_ok:  # (the engine's supervision says what happened)
                    log.info("janus: long poll at %s failed: %s", self.url, problem)
                self._poll_ok = False
                self._fail_waiters(JanusError(f"janus long poll failed: {problem}"))
                await asyncio.sleep(retry)
                retry = min(retry * 2, _POLL_RETRY_MAX)
                continue
            if not self._poll_ok:
                log.info("janus: long poll at %s works again", self.url)
            self._poll_ok = True
            retry = 0.1
            for event in events if isinstance(events, list) else [events]:
                self._dispatch(event)

    def _dispatch(self, event: object) -> None:
        if not isinstance(event, dict):
            return
        kind = event.get("janus")
        transaction = event.get("transaction")
        if kind == "event" and isinstance(transaction, str):
            waiter = self._waiters.get(transaction)
            if waiter is not None and not waiter.done():
                waiter.set_result(event)
                return
        if kind == "timeout":
            self._lost = True
        if kind != "keepalive":
            log.debug("janus event: %.300s", event)

    def _fail_waiters(self, error: JanusError) -> None:
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(error)
                waiter.exception()  # retrieved: no "never retrieved" warning if unwaited


# -- the engine -----------------------------------------------------------------------------


class JanusEngine(SupervisedChild):
    """ippbx's own supervised janus (no `url`), or an external one; see the module
    docstring. After `start()`, `client` is a connected `JanusClient`."""

    _LOG = log
    _NAME = "janus"
    _LABEL = "janus"
    _PORT_LABEL = "janus: HTTP port"
    _PORT_KIND = socket.SOCK_STREAM
    _PORT_TAKEN = "Couldn't start webserver"
    _ERROR = JanusError
    _OUTPUT = "output"
    _LOSES = "its rooms are lost"

    def __init__(
        self,
        *,
        url: str = "",
        binary: str | None = None,
        interface: str = "127.0.0.1",
        rtp_port_min: int = 40000,
        rtp_port_max: int = 44999,
        workdir: Path | None = None,
        on_restart: Callable[[], object] | None = None,
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
        backoff: float = 0.25,
        backoff_max: float = 30.0,
        health_interval: float = 2.0,
        debug_level: int = 4,
        timeout: float = 5.0,
    ) -> None:
        if not 1 <= rtp_port_min < rtp_port_max <= 65535:
            raise ValueError("want 1 <= rtp_port_min < rtp_port_max <= 65535")
        super().__init__(on_restart=on_restart, start_timeout=start_timeout,
                         stop_timeout=stop_timeout, backoff=backoff, backoff_max=backoff_max)
        self.external = url.rstrip("/")
        self.binary = binary
        self.interface = interface
        self.rtp_port_min = rtp_port_min
        self.rtp_port_max = rtp_port_max
        self.workdir = workdir
        self.health_interval = health_interval
        self.debug_level = debug_level
        self.timeout = timeout
        self.client: JanusClient | None = None
        self._confdir: Path | None = None
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None

    # -- state ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The REST API's base URL (".../janus"); "" before our janus got its port."""
        if self.external:
            return self.external
        return f"http://127.0.0.1:{self._port}/janus" if self._port else ""

    @property
    def ready(self) -> bool:
        """Can rooms be used now: janus answers and `client` holds a session (False
        while it is being restarted, or an external one does not answer)."""
        if not self._ready or self.client is None:
            return False
        return bool(self.external) or self.pid is not None

    def command(self, confdir: Path) -> list[str]:
        """The janus command line for the configuration folder `confdir`."""
        binary = self.binary or find_janus()
        if not binary:
            raise JanusError("janus is not installed (Debian package janus)")
        return [binary, "-C", str(confdir / "janus.jcfg"), "-F", str(confdir), "-o"]

    # -- start and stop ---------------------------------------------------------------------

    async def start(self) -> None:
        """Spawn our janus (or reach the external one) and open a session."""
        if self.client is not None:
            raise JanusError("janus engine already started")
        self._stopping = False
        try:
            if self.external:
                await self._start_external()
            else:
                self._prepare()
                await self._launch(first=True)
        except BaseException:
            await self.stop()
            raise
        watch = self._watch_external() if self.external else self._supervise()
        self._supervisor = asyncio.create_task(watch, name="janus-supervisor")

    async def stop(self) -> None:
        """Stop supervising, close the session, end our janus (SIGTERM, then SIGKILL);
        idempotent. An external janus is left running, and so are the rooms we made
        there (rooms outlive sessions: destroy them first)."""
        self._ready = False
        await self._end_supervision()
        if self.client is not None:
            await self.client.close()
            self.client = None
        await self._terminate()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None
            self._confdir = None

    def _prepare(self) -> None:
        """The configuration folder: `workdir`, or a temporary directory."""
        if self._confdir is not None:
            return
        if self.workdir is not None:
            self._confdir = Path(self.workdir).resolve()
            self._confdir.mkdir(parents=True, exist_ok=True)
        else:
            self._tempdir = tempfile.TemporaryDirectory(prefix="ippbx-janus-")
            self._confdir = Path(self._tempdir.name)

    def _write_config(self) -> Path:
        assert self._confdir is not None and self._port is not None
        binary = self.command(self._confdir)[0]
        libdir = find_janus_libdir(binary)
        if libdir is None:
            raise JanusError(f"cannot find janus's plugins folder (with {AUDIOBRIDGE_SO}) "
                             f"for {binary}")
        link_modules(self._confdir, libdir)
        files = janus_config(confdir=self._confdir, http_port=self._port,
                             interface=self.interface, rtp_port_min=self.rtp_port_min,
                             rtp_port_max=self.rtp_port_max, debug_level=self.debug_level)
        for name, text in files.items():
            (self._confdir / name).write_text(text)
        return self._confdir

    async def _start_external(self) -> None:
        loop = asyncio.get_running_loop()
        client = JanusClient(self.external, timeout=self.timeout)
        deadline = loop.time() + self.start_timeout
        while not await client.ping(timeout=min(self.timeout, 1.0)):
            if loop.time() >= deadline:
                await client.close()
                raise JanusError(f"janus at {self.external} does not answer")
            await asyncio.sleep(0.25)
        await client.start()
        self.client = client
        self._ready = True
        log.info("janus: using the janus at %s", self.external)

    # -- the process: SupervisedChild's hooks -----------------------------------------------

    def _command_line(self) -> tuple[list[str], Path | None]:
        confdir = self._write_config()
        return self.command(confdir), confdir

    async def _wait_ready(self, proc: asyncio.subprocess.Process) -> None:
        """Until it answers GET /janus/info and a session of a new client is open; that
        client replaces `client` (the old one, if any, is closed)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout
        client = JanusClient(self.url, timeout=self.timeout)
        try:
            while True:
                if proc.returncode is not None:
                    await asyncio.sleep(0.05)  # let the reader catch the last lines
                    raise JanusError(f"janus exited with {describe_exit(proc.returncode)} "
                                     f"at start: {self._last_lines()}")
                if await client.ping(timeout=0.25):
                    break
                if loop.time() >= deadline:
                    raise JanusError(f"janus at {self.url} did not answer within "
                                     f"{self.start_timeout:.1f} s: {self._last_lines()}")
                await asyncio.sleep(0.05)
            await client.start()
        except BaseException:
            await client.close()
            raise
        old, self.client = self.client, client
        if old is not None:
            await old.close()  # closed already when janus died: returns at once

    def _announce(self, proc: asyncio.subprocess.Process) -> None:
        log.info("janus (pid %d) answers at %s; plain RTP on %s ports %d-%d", proc.pid,
                 self.url, self.interface, self.rtp_port_min, self.rtp_port_max)

    def _severe(self, line: str) -> bool:
        """[WARN], [ERR] and [FATAL] lines, but for those that are no news (`_BENIGN`)."""
        return line.startswith(_SEVERE) and not any(b in line for b in _BENIGN)

    async def _died(self) -> tuple[object, ...]:
        """Its rooms and our session are gone: `client` is closed (and stays in place,
        closed, until replaced); the process is reaped and its output read to the end.
        `on_restart()` gets no arguments."""
        if self.client is not None:
            await self.client.close()
        await self._terminate()
        return ()

    async def _watch_external(self) -> None:
        """Ping the external janus; a new session and on_restart when it lost ours."""
        while not self._stopping:
            await asyncio.sleep(self.health_interval)
            client = self.client
            assert client is not None
            if not await client.ping(timeout=min(self.timeout, self.health_interval)):
                if self._ready:
                    log.warning("janus at %s does not answer", self.external)
                self._ready = False
                continue
            if self._ready and client.alive:
                continue
            if await client.keepalive():
                if not self._ready:
                    log.info("janus at %s answers again; our session survived", self.external)
                self._ready = True
                continue
            fresh = JanusClient(self.external, timeout=self.timeout)
            try:
                await fresh.start()
            except JanusError as exc:
                log.warning("janus at %s: cannot open a session: %s", self.external, exc)
                continue
            self.client = fresh
            await client.close()
            self._ready = True
            self.restarts += 1
            log.warning("janus at %s lost our session (restarted?): its rooms are gone",
                        self.external)
            await call_back(self.on_restart, log)
