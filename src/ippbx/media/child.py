"""What ippbx's supervisors of child processes share (rtpengine in `engine`, janus in
`janus`): a free port to give the child, the parent-death signal, an exit status in
words, calling back the owner without its errors reaching the supervisor, and
`SupervisedChild`, the supervision itself.

`SupervisedChild` owns the process: it spawns it (in a session of its own, so a Ctrl-C
at the terminal reaches ippbx only; SIGTERM to it when ippbx dies), reads its output line
by line into logging (severe lines as rate-limited WARNING lines, the rest at DEBUG; the
last few kept for the error when it fails to start), waits until it is ready, and on a
first start whose port was taken meanwhile tries another port (twice more; once more
on a restart). Its supervision loop notices when the child exits, says so in one WARNING
line, and starts it again after a backoff (doubling up to `backoff_max`, reset after a
minute of good run), then counts the restart and calls `on_restart`. Ending it is SIGTERM,
then SIGKILL after `stop_timeout`, reaping, and reading its output to the end.

A subclass says what the child is (its name in log lines, its error type, how a line of
its output is judged severe, how a taken port shows in its error) and supplies the hooks:
its command line, how to wait until it is ready, what a death loses before the restart.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import inspect
import logging
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Literal, Self

from ippbx.sip.ratelog import RateLimitedLog

__all__ = ["Callback", "SupervisedChild", "call_back", "describe_exit", "die_with_parent",
           "free_port"]

Callback = Callable[..., object]

_KEEP = 20  # lines of output kept for the error when the child fails to start
_LINE_KEEP = 300  # characters kept of each such line
_GOOD_RUN = 60.0  # a process that lived this long resets the restart backoff


def free_port(host: str, kind: socket.SocketKind = socket.SOCK_DGRAM) -> int:
    """A port free on `host` now (UDP by default, `socket.SOCK_STREAM` for TCP)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:  # pragma: no cover - runs in the child
    """SIGTERM the child when ippbx dies without stopping it (Linux PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def describe_exit(code: int | None) -> str:
    """A child's return code in words: `status 1`, `signal SIGKILL`."""
    if code is None:
        return "an unknown status"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"status {code}"


async def call_back(callback: Callback | None, log: logging.Logger, *args: object) -> None:
    """Call a sync or async callback; its exceptions are logged, never raised."""
    if callback is None:
        return
    try:
        result = callback(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("callback %r failed", callback)


class SupervisedChild:
    """A child process of ippbx listening on a port of its own, kept running; see the
    module docstring.

    The subclass sets the class attributes and implements `_command_line`, `_wait_ready`,
    `_announce` and `_died`; its `start()` calls `_launch(first=True)` and then runs
    `_supervise()` as a task in `_supervisor`, its `stop()` calls `_end_supervision()` and
    `_terminate()`.
    """

    _LOG: ClassVar[logging.Logger]  # where its lines go
    _NAME: ClassVar[str]  # the program, in "name[pid]: line"
    _LABEL: ClassVar[str]  # how log lines about it start: "media: rtpengine", "janus"
    _PORT_LABEL: ClassVar[str]  # its port in log lines: "media: ng port", "janus: HTTP port"
    _PORT_KIND: ClassVar[socket.SocketKind]  # SOCK_DGRAM or SOCK_STREAM
    _PORT_TAKEN: ClassVar[str]  # in the error of a start that found its port taken
    _ERROR: ClassVar[type[Exception]]  # what a failed start raises (with one message)
    # which output is read: "stderr" alone (stdout to /dev/null), or "output" (both)
    _OUTPUT: ClassVar[Literal["stderr", "output"]]
    _LOSES: ClassVar[str] = ""  # what its death loses, for the WARNING: "its rooms are lost"

    def __init__(self, *, on_restart: Callback | None, start_timeout: float,
                 stop_timeout: float, backoff: float, backoff_max: float) -> None:
        self.on_restart = on_restart
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.restarts = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._port: int | None = None  # on 127.0.0.1; kept across restarts when free
        self._reader: asyncio.Task[None] | None = None  # its output into logging
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._ready = False  # it runs and has answered
        self._recent: collections.deque[str] = collections.deque(maxlen=_KEEP)
        self._ratelog = RateLimitedLog(self._LOG)

    # -- the hooks --------------------------------------------------------------------------

    def _command_line(self) -> tuple[list[str], Path | None]:
        """The argv to run on `_port`, and the working directory (None: ours)."""
        raise NotImplementedError

    async def _wait_ready(self, proc: asyncio.subprocess.Process) -> None:
        """Return once the child answers on `_port`; `_ERROR` when it exits first
        (with `_last_lines()`) or does not answer within `start_timeout`."""
        raise NotImplementedError

    def _announce(self, proc: asyncio.subprocess.Process) -> None:
        """Log that the child is ready (it is: `_ready` is set)."""
        raise NotImplementedError

    async def _died(self) -> tuple[object, ...]:
        """What follows the child's death, before its restart; the arguments for
        `on_restart` once it is back."""
        raise NotImplementedError

    def _severe(self, line: str) -> bool:
        """Does this line of its output deserve a WARNING (else DEBUG)?"""
        raise NotImplementedError

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    # -- state ------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The child's pid while it runs."""
        if self._proc is None or self._proc.returncode is not None:
            return None
        return self._proc.pid

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the process ------------------------------------------------------------------------

    async def _launch(self, *, first: bool) -> None:
        """Spawn the child and wait until it is ready; `_ERROR` when it is not.

        A first start whose port is taken tries a new port (twice more), a restart (on
        the same port as before) once more.
        """
        attempts = 3 if first or self._port is None else 2
        for attempt in range(attempts):
            if self._port is None or attempt > 0:
                self._port = free_port("127.0.0.1", self._PORT_KIND)
            try:
                await self._spawn_and_wait()
                return
            except self._ERROR as exc:
                if attempt == attempts - 1 or self._PORT_TAKEN not in str(exc):
                    raise
                self._LOG.info("%s %d taken; trying another", self._PORT_LABEL, self._port)

    async def _spawn_and_wait(self) -> None:
        argv, cwd = self._command_line()
        self._recent.clear()
        proc = await self._spawn(argv, cwd)
        try:
            await self._wait_ready(proc)
        except BaseException:
            await self._terminate()
            raise
        self._ready = True
        self._announce(proc)

    async def _spawn(self, argv: list[str], cwd: Path | None) -> asyncio.subprocess.Process:
        """Run `argv`, its output read into logging by `_reader`; `_ERROR` when it cannot
        be run."""
        both = self._OUTPUT == "output"
        pipe, devnull = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=devnull, stdout=pipe if both else devnull,
                stderr=asyncio.subprocess.STDOUT if both else pipe,
                cwd=None if cwd is None else str(cwd), preexec_fn=die_with_parent,
                start_new_session=True)  # a Ctrl-C at the terminal is ippbx's to handle
        except OSError as exc:
            raise self._ERROR(f"cannot run {argv[0]}: {exc}") from None
        self._proc = proc
        stream = proc.stdout if both else proc.stderr
        assert stream is not None
        self._reader = asyncio.create_task(self._drain(stream, proc.pid),
                                           name=f"{self._NAME}-{self._OUTPUT}")
        return proc

    async def _terminate(self) -> None:
        """End the child (SIGTERM, SIGKILL after `stop_timeout`), reap it, and let the
        reader finish its output (for a second at most)."""
        proc = self._proc
        if proc is not None:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), self.stop_timeout)
                except TimeoutError:
                    self._LOG.warning("%s (pid %d) ignored SIGTERM for %.1f s; killing it",
                                      self._LABEL, proc.pid, self.stop_timeout)
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
            else:
                await proc.wait()
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, 1.0)
            except (TimeoutError, asyncio.CancelledError):
                self._reader.cancel()
            self._reader = None

    def _last_lines(self) -> str:
        """The child's last lines of output, for an error message."""
        nothing = "(nothing on stderr)" if self._OUTPUT == "stderr" else "(no output)"
        return " | ".join(self._recent) or nothing

    async def _drain(self, stream: asyncio.StreamReader, pid: int) -> None:
        """The child's output into logging, line by line, until EOF."""
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line over the reader's limit: dropped
                continue
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            self._recent.append(line[:_LINE_KEEP])
            if self._severe(line):
                self._ratelog.warning(self._OUTPUT, "%s[%d]: %s", self._NAME, pid, line)
            else:
                self._LOG.debug("%s[%d]: %s", self._NAME, pid, line)

    # -- supervision ------------------------------------------------------------------------

    async def _supervise(self) -> None:
        """Restart the child whenever it exits, until `stop()`."""
        loop = asyncio.get_running_loop()
        backoff = self.backoff
        while not self._stopping:
            proc = self._proc
            assert proc is not None
            started = loop.time()
            code = await proc.wait()
            self._ready = False
            if self._stopping:
                return
            if loop.time() - started >= _GOOD_RUN:
                backoff = self.backoff
            self._LOG.warning("%s (pid %d) exited with %s; %srestarting it in %.2f s",
                              self._LABEL, proc.pid, describe_exit(code),
                              f"{self._LOSES}; " if self._LOSES else "", backoff)
            args = await self._died()
            while not self._stopping:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max)
                try:
                    await self._launch(first=False)
                    break
                except self._ERROR as exc:
                    self._LOG.warning("%s restart failed: %s; next try in %.2f s",
                                      self._LABEL, exc, backoff)
            if self._stopping:
                return
            self.restarts += 1
            await call_back(self.on_restart, self._LOG, *args)

    async def _end_supervision(self) -> None:
        """Mark the child as stopping and end the `_supervisor` task."""
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
