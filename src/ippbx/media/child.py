"""What ippbx's supervisors of child processes share (rtpengine in `engine`, janus in
`janus`): a free port to give the child, the parent-death signal, an exit status in
words, and calling back the owner without its errors reaching the supervisor."""

from __future__ import annotations

import contextlib
import ctypes
import inspect
import logging
import signal
import socket
from collections.abc import Callable

Callback = Callable[..., object]


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
