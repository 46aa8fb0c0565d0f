"""`ippbx.media.child.SupervisedChild` with a shell script for the child: its output in
logging, the start that finds its port taken, the restart after a death, SIGKILL for a
child deaf to SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Literal

import pytest

from ippbx.media.child import SupervisedChild, describe_exit

pytestmark = pytest.mark.timeout(30)

LOGGER = "tests.media.child"

# the child gets its port as $1; "ready" on its output means it is ready
SERVE = "echo hello; echo 'ERR: something broke'; echo ready; exec sleep 60"


class FakeError(Exception):
    pass


class Fake(SupervisedChild):
    _LOG = logging.getLogger(LOGGER)
    _NAME = "fake"
    _LABEL = "fake"
    _PORT_LABEL = "fake: port"
    _PORT_KIND = socket.SOCK_DGRAM
    _PORT_TAKEN = "port taken"
    _ERROR = FakeError
    _OUTPUT: Literal["stderr", "output"] = "output"
    _LOSES = "its state is lost"

    def __init__(self, script: str, on_restart: Callable[..., object] | None = None,
                 stop_timeout: float = 2.0) -> None:
        super().__init__(on_restart=on_restart, start_timeout=2.0, stop_timeout=stop_timeout,
                         backoff=0.05, backoff_max=0.2)
        self.script = script
        self.ports: list[int | None] = []
        self.deaths = 0

    def _command_line(self) -> tuple[list[str], Path | None]:
        self.ports.append(self._port)
        return ["/bin/sh", "-c", self.script, "fake", str(self._port)], None

    async def _wait_ready(self, proc: asyncio.subprocess.Process) -> None:
        deadline = time.monotonic() + self.start_timeout
        while "ready" not in self._recent:
            if proc.returncode is not None:
                await asyncio.sleep(0.05)
                raise FakeError(f"fake exited with {describe_exit(proc.returncode)} at "
                                f"start: {self._last_lines()}")
            if time.monotonic() >= deadline:
                raise FakeError(f"fake did not answer: {self._last_lines()}")
            await asyncio.sleep(0.01)

    def _announce(self, proc: asyncio.subprocess.Process) -> None:
        self._LOG.info("fake (pid %d) is ready", proc.pid)

    def _severe(self, line: str) -> bool:
        return line.startswith("ERR")

    async def _died(self) -> tuple[object, ...]:
        self.deaths += 1
        return ("lost", self.deaths)

    async def start(self) -> None:
        await self._launch(first=True)
        self._supervisor = asyncio.create_task(self._supervise())

    async def stop(self) -> None:
        await self._end_supervision()
        await self._terminate()


class StderrFake(Fake):
    _OUTPUT: Literal["stderr", "output"] = "stderr"


def pid_gone(pid: int) -> bool:
    """No process `pid`, not even a zombie (reaped)."""
    return not Path(f"/proc/{pid}").exists()


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll `predicate` every 20 ms until it holds or `timeout` passes; its last value."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.02)
    return predicate()


@pytest.fixture
def caplog_debug(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    return caplog


@pytest.fixture
async def served() -> AsyncIterator[tuple[Fake, list[tuple[object, ...]]]]:
    calls: list[tuple[object, ...]] = []
    child = Fake(SERVE, on_restart=lambda *args: calls.append(args))
    await child.start()
    try:
        yield child, calls
    finally:
        await child.stop()


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


async def test_output_goes_to_logging(caplog_debug: pytest.LogCaptureFixture) -> None:
    child = Fake(SERVE)
    async with child:
        pid = child.pid
        assert pid is not None and child._ready and child._port is not None
        assert await until(lambda: f"fake[{pid}]: ready" in messages(caplog_debug,
                                                                       logging.DEBUG))
        assert child._last_lines() == "hello | ERR: something broke | ready"
    assert child.pid is None and pid_gone(pid)
    assert f"fake[{pid}]: hello" in messages(caplog_debug, logging.DEBUG)
    assert messages(caplog_debug, logging.WARNING) == [f"fake[{pid}]: ERR: something broke"]
    await child.stop()  # twice is fine


async def test_stderr_only(caplog_debug: pytest.LogCaptureFixture) -> None:
    child = StderrFake("echo on-stdout; echo ready >&2; exec sleep 60")
    async with child:
        assert child._last_lines() == "ready"
    child = StderrFake("echo on-stdout; exit 2")
    with pytest.raises(FakeError, match=r"status 2 at start: \(nothing on stderr\)"):
        await child.start()
    assert not any("on-stdout" in m for m in messages(caplog_debug, logging.DEBUG))
    child = Fake("exit 2")
    with pytest.raises(FakeError, match=r"status 2 at start: \(no output\)"):
        await child.start()


async def test_a_start_whose_port_was_taken_tries_another(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    marker = tmp_path / "once"
    child = Fake(f"if [ ! -e {marker} ]; then touch {marker}; echo 'port taken'; exit 1; "
                 f"fi; echo ready; exec sleep 60")
    async with child:
        assert child.pid is not None
        first, second = child.ports
        assert first is not None and second is not None and first != second
        assert child._port == second
        assert f"fake: port {first} taken; trying another" in messages(caplog, logging.INFO)


async def test_three_tries_at_first() -> None:
    child = Fake("echo 'port taken'; exit 1")
    with pytest.raises(FakeError, match="port taken"):
        await child.start()
    assert len(child.ports) == 3 and len(set(child.ports)) == 3
    other = Fake("echo 'it broke'; exit 3")
    with pytest.raises(FakeError, match="exited with status 3 at start: it broke"):
        await other.start()
    assert len(other.ports) == 1  # not a taken port: no other try


async def test_restart_after_a_death(served: tuple[Fake, list[tuple[object, ...]]],
                                     caplog: pytest.LogCaptureFixture) -> None:
    child, calls = served
    old, port = child.pid, child._port
    assert old is not None
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        os.kill(old, signal.SIGKILL)
        assert await until(lambda: bool(calls))
    assert calls == [("lost", 1)] and child.restarts == 1
    assert child.pid not in (None, old) and child._ready and child._port == port
    assert (f"fake (pid {old}) exited with signal SIGKILL; its state is lost; restarting "
            f"it in 0.05 s") in messages(caplog, logging.WARNING)
    old = child.pid
    assert old is not None
    os.kill(old, signal.SIGTERM)
    assert await until(lambda: len(calls) == 2)
    assert calls[1] == ("lost", 2) and child.restarts == 2


async def test_a_failed_restart_is_tried_again(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    calls: list[tuple[object, ...]] = []
    flag = tmp_path / "broken"
    child = Fake(f"if [ -e {flag} ]; then rm {flag}; echo 'it broke'; exit 4; fi; "
                 f"echo ready; exec sleep 60", on_restart=lambda *args: calls.append(args))
    async with child:
        old = child.pid
        assert old is not None
        flag.touch()
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            os.kill(old, signal.SIGKILL)
            assert await until(lambda: bool(calls))
        assert child.restarts == 1 and child.pid not in (None, old)
        assert any(m.startswith("fake restart failed: fake exited with status 4 at start: "
                                "it broke; next try in 0.10 s")
                   for m in messages(caplog, logging.WARNING))


async def test_sigkill_for_a_child_deaf_to_sigterm(caplog: pytest.LogCaptureFixture) -> None:
    child = Fake("trap '' TERM; echo ready; exec sleep 60", stop_timeout=0.3)
    await child.start()
    proc = child._proc
    assert proc is not None
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        await child.stop()
    assert proc.returncode == -signal.SIGKILL and pid_gone(proc.pid)
    assert (f"fake (pid {proc.pid}) ignored SIGTERM for 0.3 s; killing it"
            in messages(caplog, logging.WARNING))
    assert child._reader is None and child._supervisor is None


async def test_a_program_that_cannot_run(tmp_path: Path) -> None:
    class Missing(Fake):
        def _command_line(self) -> tuple[list[str], Path | None]:
            return [str(tmp_path / "nothing-here")], None

    with pytest.raises(FakeError, match="cannot run .*nothing-here"):
        await Missing("").start()
