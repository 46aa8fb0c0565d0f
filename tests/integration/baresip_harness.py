"""Run baresip (Debian `baresip`) headless as a real softphone from async tests.

The configuration follows the measured one in docs/testing.md (ausine at 48 kHz
stereo, aufile to /dev/null, g711, ctrl_tcp). baresip is our child process (stdin
/dev/null, killed with the parent, killed in `stop()`); it is driven over `ctrl_tcp`:
commands and answers are netstrings holding JSON, and events (`REGISTER_OK`,
`CALL_ESTABLISHED`, `CALL_CLOSED`, …) stream back on the same connection.

The account is not put in the `accounts` file but created with the `uanew` command once
the ctrl connection is up: baresip registers the accounts of the file at startup, before
a ctrl_tcp client can connect, and ctrl_tcp sends events only to connected clients, so the
REGISTER_OK of a file account is usually lost (baresip 1.0.0 has no `uareg` command to
register again). `uanew` with the same account line registers deterministically.

    phone = Baresip.configure(tmp_path / "baresip", account="<sip:1003@…>;auth_user=…")
    await phone.start()
    try:
        await phone.add_account(timeout=10)  # uanew, then waits for REGISTER_OK
        await phone.command("dial", "95551234")
    finally:
        await phone.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sipp_harness import _die_with_parent, _handed_out, await_bound, free_port

BARESIP = shutil.which("baresip") or "/usr/bin/baresip"
MODULE_PATH = "/usr/lib/baresip/modules"


def baresip_available() -> bool:
    return os.access(BARESIP, os.X_OK) and Path(MODULE_PATH, "ctrl_tcp.so").exists()


def rtp_port_range(size: int = 20) -> tuple[int, int]:
    """A random even-based RTP range away from the ephemeral ports free_port() hands out."""
    low = random.randrange(20000, 30000 - size, 2)
    return low, low + size


def _bindable(port: int, host: str = "127.0.0.1") -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def sip_port_pair() -> int:
    """A port P for `sip_listen` with P+1 free too: baresip 1.0.0 always opens SIP/TLS on
    TCP P+1 (whatever `sip_transports` says) and aborts startup if that port is taken."""
    for _ in range(100):
        port = free_port()
        if port + 1 < 65536 and port + 1 not in _handed_out and _bindable(port + 1):
            _handed_out.add(port + 1)
            return port
    raise RuntimeError("no free port pair for baresip")


def write_config(directory: Path, sip_port: int, ctrl_port: int, rtp: tuple[int, int],
                 account: str, extra: list[str] | None = None) -> None:
    """The `config` and `accounts` files of the working setup in docs/testing.md, plus
    the `extra` config lines."""
    directory.mkdir(parents=True, exist_ok=True)
    config = [
        "poll_method epoll",
        f"sip_listen 127.0.0.1:{sip_port}",
        "sip_transports udp",
        "audio_player aufile,/dev/null",
        "audio_source ausine,440",
        "audio_alert aufile,/dev/null",
        "ausrc_srate 48000",  # ausine only produces 48 kHz stereo
        "ausrc_channels 2",
        "auplay_channels 1",
        f"rtp_ports {rtp[0]}-{rtp[1]}",
        "video_size 0x0",
        f"module_path {MODULE_PATH}",
        "module g711.so",
        "module ausine.so",
        "module aufile.so",
        "module_app account.so",
        "module_app menu.so",
        "module ctrl_tcp.so",
        f"ctrl_tcp_listen 127.0.0.1:{ctrl_port}",
        *(extra or []),
    ]
    (directory / "config").write_text("\n".join(config) + "\n")
    (directory / "accounts").write_text(account + "\n" if account else "")


@dataclass
class Baresip:
    """One baresip process and its ctrl_tcp connection."""

    directory: Path
    sip_port: int
    ctrl_port: int
    account: str
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    events: list[dict[str, Any]] = field(default_factory=list, init=False)
    _reader: asyncio.StreamReader | None = field(default=None, init=False)
    _writer: asyncio.StreamWriter | None = field(default=None, init=False)
    _token: int = field(default=0, init=False)

    @classmethod
    def configure(cls, directory: Path, account: str, extra: list[str] | None = None
                  ) -> Baresip:
        sip_port, ctrl_port = sip_port_pair(), free_port()
        write_config(directory, sip_port, ctrl_port, rtp_port_range(), account="", extra=extra)
        return cls(directory, sip_port, ctrl_port, account)

    @property
    def log_path(self) -> Path:
        return self.directory / "stdout.txt"

    def log(self, limit: int = 6000) -> str:
        """baresip's stdout+stderr (tail), for assertion messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text if len(text) <= limit else "…" + text[-limit:]

    async def start(self, ready_timeout: float = 5.0) -> None:
        """Spawn baresip, wait for its ctrl_tcp listener, and connect to it."""
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [BARESIP, "-f", str(self.directory)], cwd=self.directory,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        if not await await_bound(self.ctrl_port, "tcp", ready_timeout, self.proc):
            raise AssertionError(f"baresip did not open ctrl_tcp port {self.ctrl_port}\n"
                                 f"{self.log()}")
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", self.ctrl_port), ready_timeout)

    async def add_account(self, timeout: float = 10.0) -> dict[str, Any]:
        """Create the account's user agent (`uanew`); return its REGISTER_OK event."""
        answer = await self.command("uanew", self.account)
        if not answer.get("ok"):
            raise AssertionError(f"baresip refused uanew: {answer}\n{self.log()}")
        return await self.wait_event("REGISTER_OK", timeout)

    async def _read_message(self) -> dict[str, Any]:
        """One netstring (`<len>:<json>,`) from the ctrl connection."""
        assert self._reader is not None
        length = int((await self._reader.readuntil(b":"))[:-1])
        payload = await self._reader.readexactly(length + 1)
        if payload[-1:] != b",":
            raise AssertionError(f"bad netstring from baresip: {payload!r}")
        message: dict[str, Any] = json.loads(payload[:-1])
        return message

    async def command(self, name: str, params: str = "", timeout: float = 5.0) -> dict[str, Any]:
        """Send a command; return its response (events read meanwhile are kept)."""
        assert self._writer is not None, "baresip not started"
        self._token += 1
        token = f"t{self._token}"
        body = json.dumps({"command": name, "params": params, "token": token}).encode()
        self._writer.write(b"%d:%s," % (len(body), body))
        await self._writer.drain()

        async def response() -> dict[str, Any]:
            while True:
                message = await self._read_message()
                if message.get("response") and message.get("token") == token:
                    return message
                if message.get("event"):
                    self.events.append(message)

        try:
            return await asyncio.wait_for(response(), timeout)
        except (TimeoutError, asyncio.IncompleteReadError):
            raise AssertionError(f"no answer to {name!r} from baresip\n{self.log()}") from None

    async def wait_event(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        """The first event of type `kind` (already received or arriving within `timeout`).

        Consumed events are removed from `events`; events of other types stay there.
        """
        for i, event in enumerate(self.events):
            if event.get("type") == kind:
                return self.events.pop(i)

        async def arrival() -> dict[str, Any]:
            while True:
                message = await self._read_message()
                if not message.get("event"):
                    continue
                if message.get("type") == kind:
                    return message
                self.events.append(message)

        try:
            return await asyncio.wait_for(arrival(), timeout)
        except (TimeoutError, asyncio.IncompleteReadError):
            seen = [e.get("type") for e in self.events]
            raise AssertionError(f"baresip: no {kind} event within {timeout} s "
                                 f"(other events: {seen})\n{self.log()}") from None

    async def stop(self) -> None:
        """Close the ctrl connection and kill baresip. Safe to call any time."""
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer.wait_closed(), 2)
            self._writer = None
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
