"""ippbx's media engine: runs and supervises its own rtpengine, or pings external ones,
and receives rtpengine's DTMF events.

`MediaEngine` with no `ng` address spawns `rtpengine` (userspace forwarding, `--table=-1`)
on loopback with a free ng port, `--config-file=none` (without it rtpengine 10.5 also
reads /etc/rtpengine/rtpengine.conf from the Debian package and opens that file's CLI
and HTTP ports, so a second instance fails), the media interface and port range, the
recording directory and, when asked, `--dtmf-log-dest`. Its stderr (`--log-stderr`) is
read line by line into logging (`--log-level=5`, NOTICE: no line per ng command):
warnings and worse as rate-limited WARNING lines, the rest at DEBUG; only the last few
lines are kept (for the error when it fails to start). It runs in a session of its own,
so a Ctrl-C at the terminal reaches ippbx only, which then stops it.
`start()` returns once it answers ping (MediaError when it does not within
`start_timeout`, or exits). When it dies, one WARNING line says so, and it is started
again after a backoff (0.25 s, doubling up to 30 s, reset after a minute of good run);
once it answers again, `on_restart(lost_call_ids)` is called: the calls it held are
gone. `stop()` sends SIGTERM, then SIGKILL after `stop_timeout`, and reaps it. The child
also gets SIGTERM if ippbx itself dies (Linux PR_SET_PDEATHSIG). That supervision is
`child.SupervisedChild`'s (shared with janus); `MediaEngine` adds rtpengine's command
line, its readiness (ping), which stderr lines are severe, and the lost calls.

With `ng` = "host:port" (or a list) the engines are someone else's: `start()` only
pings them.

`resolve_engine` turns the `[media] engine` setting ("auto", "rtpengine", "none") into
what runs, `find_binary` finds rtpengine. `DtmfListener` receives the JSON datagrams
rtpengine sends to `--dtmf-log-dest` (one per DTMF event) and hands `DtmfEvent`s to a
callback; datagrams that are not such events are ignored and counted.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import shutil
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ippbx.media.child import SupervisedChild, describe_exit
from ippbx.media.rtpengine import MediaError, NgClient, parse_ng_address
from ippbx.sip.ratelog import RateLimitedLog

if TYPE_CHECKING:
    from ippbx.config import MediaSection

__all__ = [
    "DTMF_DIGITS", "DtmfEvent", "DtmfListener", "MediaEngine", "find_binary",
    "parse_dtmf_event", "resolve_engine",
]

log = logging.getLogger(__name__)

DTMF_DIGITS = "0123456789*#ABCD"  # RFC 4733 events 0-15
_MAX_DTMF_DATAGRAM = 4096
_SEVERE = ("WARNING", "ERR", "CRIT", "ALERT", "EMERG")


def find_binary() -> str | None:
    """The path of the rtpengine executable, or None when it is not installed."""
    return shutil.which("rtpengine")


def resolve_engine(engine: str, ng: Sequence[str] | str = "",
                   binary: str | None = None) -> Literal["rtpengine", "none"]:
    """What the `[media] engine` setting means here: "rtpengine" or "none".

    "auto" is rtpengine when engines are configured (`ng`) or the binary is installed,
    else "none" with one log line saying why. "rtpengine" without either is a
    MediaError. `binary` defaults to `find_binary()`.
    """
    external = bool(_ng_list(ng))
    if engine == "none":
        return "none"
    if engine not in ("auto", "rtpengine"):
        raise MediaError(f"unknown media engine {engine!r}")
    if external:
        return "rtpengine"
    found = binary if binary is not None else find_binary()
    if found:
        return "rtpengine"
    if engine == "rtpengine":
        raise MediaError("media engine is rtpengine but no rtpengine binary was found "
                         "(Debian package rtpengine-daemon) and no ng address is set")
    log.warning("media: rtpengine not found (Debian package rtpengine-daemon); calls run "
                "without a media engine (no anchoring, music on hold, prompts or recording)")
    return "none"


def _ng_list(ng: Sequence[str] | str) -> list[str]:
    items = [ng] if isinstance(ng, str) else list(ng)
    return [item.strip() for item in items if item.strip()]


async def _logged(awaitable: Awaitable[object], what: str) -> None:
    try:
        await awaitable
    except Exception:
        log.exception("media: %s failed", what)


# -- DTMF -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    """One DTMF event rtpengine saw in a call's RTP (RFC 4733 telephone-event)."""

    call_id: str
    source_tag: str  # the party that sent it
    tags: tuple[str, ...]  # the call's parties
    event: int  # 0-9, 10 = *, 11 = #, 12-15 = A-D, 16 = flash
    duration: int  # ms
    volume: int  # -dBm0
    timestamp: float  # seconds since the epoch (rtpengine's clock)
    source_ip: str

    @property
    def digit(self) -> str:
        """"0"-"9", "*", "#", "A"-"D"; "" for other events."""
        return DTMF_DIGITS[self.event] if 0 <= self.event < len(DTMF_DIGITS) else ""


def _int_field(data: dict[str, object], key: str, default: int | None = None) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key} is not an integer")
    return value


def _str_field(data: dict[str, object], key: str, default: str | None = None) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise ValueError(f"{key} is not a string")
    return value


def parse_dtmf_event(datagram: bytes) -> DtmfEvent:
    """A DtmfEvent from one `--dtmf-log-dest` datagram; ValueError when it is not one."""
    if len(datagram) > _MAX_DTMF_DATAGRAM:
        raise ValueError("datagram too large")
    try:
        data = json.loads(datagram)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    if data.get("type") != "DTMF":
        raise ValueError(f"not a DTMF event (type {data.get('type')!r})")
    tags = data.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ValueError("tags is not a list of strings")
    timestamp = data.get("timestamp", 0)
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        raise ValueError("timestamp is not a number")
    event = _int_field(data, "event")
    if not 0 <= event <= 255:
        raise ValueError(f"event {event} out of range")
    call_id = _str_field(data, "callid")
    if not call_id:
        raise ValueError("empty callid")
    return DtmfEvent(
        call_id=call_id,
        source_tag=_str_field(data, "source_tag", ""),
        tags=tuple(tags),
        event=event,
        duration=_int_field(data, "duration", 0),
        volume=_int_field(data, "volume", 0),
        timestamp=float(timestamp),
        source_ip=_str_field(data, "source_ip", ""),
    )


class _DtmfProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: DtmfListener) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.owner._received(data)


class DtmfListener:
    """A UDP endpoint for rtpengine's `--dtmf-log-dest`: `on_event(DtmfEvent)` per event.

    Bind it on loopback (the default) or an address only the engine can reach: the
    datagrams carry no authentication. `on_event` may be sync or async.
    """

    def __init__(self, on_event: Callable[[DtmfEvent], object], *,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.on_event = on_event
        self.host = host
        self.port = port
        self.events = 0
        self.ignored = 0  # datagrams that were not DTMF events
        self._transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ratelog = RateLimitedLog(log)

    async def start(self) -> tuple[str, int]:
        """Bind; returns the (host, port) to give rtpengine as `--dtmf-log-dest`."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _DtmfProtocol(self), local_addr=(self.host, self.port))
        self._transport = transport
        self.port = int(transport.get_extra_info("sockname")[1])
        return self.host, self.port

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        for task in self._tasks:
            task.cancel()

    def _received(self, data: bytes) -> None:
        try:
            event = parse_dtmf_event(data)
        except ValueError as exc:
            self.ignored += 1
            self._ratelog.warning("dtmf", "media: ignored a DTMF log datagram: %s", exc)
            return
        self.events += 1
        try:
            result = self.on_event(event)
        except Exception:
            log.exception("media: DTMF callback failed")
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(_logged(result, "DTMF callback"))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


# -- the engine -----------------------------------------------------------------------------


class MediaEngine(SupervisedChild):
    """ippbx's rtpengine: spawned and supervised (no `ng`), or external ones pinged.

    After `start()`, `client` is the NgClient for the engine(s).
    `on_restart(lost_call_ids: list[str])` (sync or async) runs after a restarted engine
    answers again. `on_dtmf(DtmfEvent)` starts a DtmfListener on 127.0.0.1 and points the
    spawned engine's `--dtmf-log-dest` at it (`dtmf_log_dest` instead names a listener of
    your own). External engines are configured by their owners: neither applies to them.
    The process and its supervision are `SupervisedChild`'s (ippbx.media.child).
    """

    _LOG = log
    _NAME = "rtpengine"
    _LABEL = "media: rtpengine"
    _PORT_LABEL = "media: ng port"
    _PORT_KIND = socket.SOCK_DGRAM
    _PORT_TAKEN = "already in use"
    _ERROR = MediaError
    _OUTPUT = "stderr"

    def __init__(
        self,
        *,
        ng: Sequence[str] | str = "",
        binary: str | None = None,
        interface: str = "127.0.0.1",
        port_min: int = 30000,
        port_max: int = 40000,
        recording_dir: str | os.PathLike[str] = "recordings",
        dtmf_log_dest: tuple[str, int] | None = None,
        on_dtmf: Callable[[DtmfEvent], object] | None = None,
        on_restart: Callable[[list[str]], object] | None = None,
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
        backoff: float = 0.25,
        backoff_max: float = 30.0,
        log_level: int = 5,
        extra_args: Sequence[str] = (),
        timeout: float = 0.5,
        tries: int = 3,
    ) -> None:
        self.external = _ng_list(ng)
        for name in self.external:
            parse_ng_address(name)
        if not 1 <= port_min < port_max <= 65535:
            raise ValueError("want 1 <= port_min < port_max <= 65535")
        super().__init__(on_restart=on_restart, start_timeout=start_timeout,
                         stop_timeout=stop_timeout, backoff=backoff, backoff_max=backoff_max)
        self.binary = binary
        self.interface = interface
        self.port_min = port_min
        self.port_max = port_max
        self.recording_dir = Path(recording_dir).resolve()
        self.dtmf_log_dest = dtmf_log_dest
        self.on_dtmf = on_dtmf
        self.log_level = log_level
        self.extra_args = list(extra_args)
        self.timeout = timeout
        self.tries = tries
        self.client: NgClient | None = None
        self.dtmf: DtmfListener | None = None  # ours, when on_dtmf was given

    @classmethod
    def from_config(cls, media: MediaSection, *,
                    on_restart: Callable[[list[str]], object] | None = None,
                    on_dtmf: Callable[[DtmfEvent], object] | None = None,
                    binary: str | None = None) -> MediaEngine | None:
        """The engine `[media]` asks for, or None when it resolves to "none"."""
        found = binary if binary is not None else find_binary()
        if resolve_engine(media.engine, media.ng, found) == "none":
            return None
        return cls(ng=media.ng, binary=found, interface=media.interface,
                   port_min=media.port_min, port_max=media.port_max,
                   recording_dir=media.recordings, on_restart=on_restart, on_dtmf=on_dtmf)

    # -- state ------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Can calls be anchored now: our rtpengine runs and answered (False while it is
        being restarted), or the engines are external (theirs to keep up)."""
        return bool(self.external) or (self._ready and self.pid is not None)

    @property
    def ng_addresses(self) -> list[str]:
        """The ng "host:port" of each engine."""
        if self.external:
            return list(self.external)
        return [f"127.0.0.1:{self._port}"] if self._port else []

    def command(self, ng_port: int) -> list[str]:
        """The rtpengine command line for a spawned engine on `ng_port`."""
        binary = self.binary or find_binary()
        if not binary:
            raise MediaError("rtpengine is not installed (Debian package rtpengine-daemon)")
        argv = [
            binary,
            "--config-file=none",
            "--table=-1",
            f"--interface={self.interface}",
            f"--listen-ng=127.0.0.1:{ng_port}",
            "--foreground",
            "--log-stderr",
            "--no-log-timestamps",
            f"--log-level={self.log_level}",
            f"--port-min={self.port_min}",
            f"--port-max={self.port_max}",
            f"--recording-dir={self.recording_dir}",
            "--recording-method=pcap",
        ]
        if self.dtmf_log_dest is not None:
            host, port = self.dtmf_log_dest
            argv.append(f"--dtmf-log-dest={host}:{port}")
        return argv + self.extra_args

    # -- start and stop ---------------------------------------------------------------------

    async def start(self) -> None:
        """Spawn our rtpengine (or open the external ones) and wait until it answers."""
        if self.client is not None:
            raise MediaError("media engine already started")
        self._stopping = False
        if self.external:
            await self._start_external()
            return
        if self.on_dtmf is not None and self.dtmf_log_dest is None:
            self.dtmf = DtmfListener(self.on_dtmf)
            self.dtmf_log_dest = await self.dtmf.start()
        self.recording_dir.mkdir(parents=True, exist_ok=True)
        try:
            await self._launch(first=True)
        except BaseException:
            await self.stop()
            raise
        self._supervisor = asyncio.create_task(self._supervise(), name="rtpengine-supervisor")

    async def _start_external(self) -> None:
        self.client = await NgClient.open(self.external, timeout=self.timeout,
                                          tries=self.tries)
        tries = max(1, int(self.start_timeout / self.timeout).bit_length())
        answers = await asyncio.gather(*(
            self.client.ping_engine(name, tries=tries) for name in self.external))
        silent = [name for name, ok in zip(self.external, answers, strict=True) if not ok]
        if silent:
            self.client.close()
            self.client = None
            raise MediaError(f"rtpengine at {', '.join(silent)} does not answer ping")
        log.info("media: using rtpengine at %s", ", ".join(self.external))

    async def stop(self) -> None:
        """Stop supervising and end our rtpengine (SIGTERM, then SIGKILL); idempotent."""
        await self._end_supervision()
        await self._terminate()
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.dtmf is not None:
            self.dtmf.close()
            self.dtmf = None
            self.dtmf_log_dest = None

    # -- the process: SupervisedChild's hooks -----------------------------------------------

    def _command_line(self) -> tuple[list[str], Path | None]:
        assert self._port is not None
        return self.command(self._port), None

    async def _wait_ready(self, proc: asyncio.subprocess.Process) -> None:
        """Until it answers ping on its ng port (the client is pointed there first)."""
        loop = asyncio.get_running_loop()
        name = f"127.0.0.1:{self._port}"
        if self.client is None:
            self.client = await NgClient.open(name, timeout=self.timeout, tries=self.tries)
        elif name not in self.client.engines:
            await self.client.replace_engine(self.client.engines[0], name)
        deadline = loop.time() + self.start_timeout
        while True:
            if proc.returncode is not None:
                await asyncio.sleep(0.05)  # let the stderr reader catch the last lines
                raise MediaError(f"rtpengine exited with {describe_exit(proc.returncode)} "
                                 f"at start: {self._last_lines()}")
            if await self.client.ping_engine(name, timeout=0.1, tries=1):
                return
            if loop.time() >= deadline:
                raise MediaError(f"rtpengine on {name} did not answer ping within "
                                 f"{self.start_timeout:.1f} s: {self._last_lines()}")

    def _announce(self, proc: asyncio.subprocess.Process) -> None:
        log.info("media: rtpengine (pid %d) answers on 127.0.0.1:%d; RTP on %s ports %d-%d",
                 proc.pid, self._port, self.interface, self.port_min, self.port_max)

    def _severe(self, line: str) -> bool:
        """rtpengine's lines start with their level: "WARNING: ...", "ERR: ..."."""
        return line.split(":", 1)[0].strip() in _SEVERE

    async def _died(self) -> tuple[object, ...]:
        """The calls it held are gone: the client forgets them; they go to on_restart."""
        lost: list[str] = []
        if self.client is not None:
            for name in self.client.engines:
                lost += self.client.forget_engine(name)
        return (lost,)
