"""ippbx's rtpengine seen from a benchmark: find it, ask it over ng, lengthen its timeout.

With `[media] engine = "rtpengine"` ippbx spawns its own rtpengine (a child process, which
inherits ippbx's `taskset` core) on a free ng port. `find_engine(ippbx_pid)` finds it
among ippbx's children (/proc) and reads the ng port from its command line
(`--listen-ng=127.0.0.1:PORT`). `NgProbe` asks it `list` (the call-ids it holds) and
`statistics` (current sessions, sessions ended by its RTP timeout, packets relayed) over
the ng protocol: one UDP datagram `<cookie> <bencoded dict>` each way. The bencode here
is a small one of the bench's own (the scripts import nothing from ippbx).

The RTP port range must stay clear of the ports the bench gives ippbx and sipp
(`free_port()`: the kernel's ephemeral range, /proc/sys/net/ipv4/ip_local_port_range):
rtpengine binds its media sockets with SO_REUSEADDR, and so does uvloop on ippbx's SIP
UDP socket (`create_datagram_endpoint(sock=...)`), so rtpengine can bind ippbx's SIP port
as an RTP or RTCP port, after which the kernel hands the SIP datagrams to rtpengine and
ippbx hears nothing (seen: a step stalled for 30 s). `parse_media_ports()` refuses such a range.

rtpengine drops a call that carried no RTP for `--timeout` seconds (60 by default) without
telling anyone; ippbx's configuration has no key for it. `timeout_wrapper()` writes a
`rtpengine` script that runs /usr/bin/rtpengine with the same arguments plus
`--timeout=N` (and `--silent-timeout=N`), for the bench to put first on ippbx's PATH: ippbx
finds its engine with `shutil.which("rtpengine")`, and the script `exec`s, so the engine
is still ippbx's child under the same pid.
"""

from __future__ import annotations

import collections
import os
import re
import secrets
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

# -- bencode ------------------------------------------------------------------------------


def bencode(value: object) -> bytes:
    """int, str/bytes, list, dict (str keys) → bencode."""
    if isinstance(value, bool):
        raise TypeError("bool is not bencode")
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list | tuple):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    if isinstance(value, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, v) for k, v in value.items())
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in items) + b"e"
    raise TypeError(f"cannot bencode {type(value).__name__}")


def bdecode(data: bytes) -> object:
    """bencode → int, bytes, list, dict (str keys); ValueError when malformed."""
    value, end = _bdecode(data, 0)
    if end != len(data):
        raise ValueError("trailing bytes after bencode value")
    return value


def _bdecode(data: bytes, i: int) -> tuple[object, int]:
    if i >= len(data):
        raise ValueError("truncated bencode")
    head = data[i:i + 1]
    if head == b"i":
        end = data.index(b"e", i)
        return int(data[i + 1:end]), end + 1
    if head in (b"l", b"d"):
        items: list[object] = []
        i += 1
        while data[i:i + 1] != b"e":
            item, i = _bdecode(data, i)
            items.append(item)
        if head == b"l":
            return items, i + 1
        keys = [k.decode() if isinstance(k, bytes) else str(k) for k in items[0::2]]
        return dict(zip(keys, items[1::2], strict=True)), i + 1
    colon = data.index(b":", i)
    size = int(data[i:colon])
    return data[colon + 1:colon + 1 + size], colon + 1 + size


# -- the engine -----------------------------------------------------------------------------


@dataclass
class Engine:
    """ippbx's rtpengine: its pid and ng port."""

    pid: int
    ng_port: int


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


_NG = re.compile(r"--listen-ng=(?:[\d.]+:)?(\d+)")


def find_engine(ippbx_pid: int, timeout: float = 15.0) -> Engine:
    """ippbx's rtpengine child (waits up to `timeout` s for it); RuntimeError if none."""
    deadline = time.monotonic() + timeout
    while True:
        for child in _children(ippbx_pid):
            try:
                comm = Path(f"/proc/{child}/comm").read_text().strip()
                argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if comm != "rtpengine":
                continue
            for arg in argv:
                if (m := _NG.fullmatch(arg.decode(errors="replace"))) is not None:
                    return Engine(child, int(m.group(1)))
        if time.monotonic() > deadline:
            raise RuntimeError(f"no rtpengine child of ippbx (pid {ippbx_pid}) within "
                               f"{timeout:g} s")
        time.sleep(0.2)


class NgProbe:
    """Blocking ng requests to one engine (list, statistics), retransmitted on loss."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.address = (host, port)

    def request(self, command: str, timeout: float = 2.0, tries: int = 3,
                **params: object) -> dict[str, object]:
        cookie = secrets.token_hex(8).encode()
        datagram = cookie + b" " + bencode({"command": command, **params})
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            for _ in range(tries):
                sock.sendto(datagram, self.address)
                try:
                    while True:
                        data = sock.recv(1 << 17)
                        got, _, body = data.partition(b" ")
                        if got == cookie:
                            break
                except TimeoutError:
                    continue
                answer = bdecode(body)
                if not isinstance(answer, dict):
                    raise RuntimeError(f"ng {command}: malformed answer")
                if answer.get("result") == b"error":
                    raise RuntimeError(f"ng {command}: {answer.get('error-reason')!r}")
                return answer
        raise RuntimeError(f"ng {command}: no answer from {self.address} "
                           f"({tries} tries of {timeout:g} s)")

    def list_calls(self, limit: int = 2000) -> list[str]:
        """The call-ids the engine holds (at most `limit`: the answer is one datagram)."""
        calls = self.request("list", limit=limit).get("calls", [])
        assert isinstance(calls, list)
        return [c.decode(errors="replace") if isinstance(c, bytes) else str(c) for c in calls]

    def statistics(self) -> dict[str, int]:
        """A few of `statistics`' counters: sessions now, sessions managed (ended) so far,
        those ended by the RTP timeout, RTP packets relayed."""
        stats = self.request("statistics").get("statistics", {})
        assert isinstance(stats, dict)
        current, total = stats.get("currentstatistics", {}), stats.get("totalstatistics", {})
        assert isinstance(current, dict) and isinstance(total, dict)
        keys = {"sessions": current.get("sessionsown"),
                "managed": total.get("managedsessions"),
                "timeouts": total.get("timeoutsessions"),
                "silent_timeouts": total.get("silenttimeoutsessions"),
                "final_timeouts": total.get("finaltimeoutsessions"),
                "relayed_packets": total.get("relayedpackets"),
                "zeroway_streams": total.get("zerowaystreams")}
        return {k: int(v) if isinstance(v, int) else -1 for k, v in keys.items()}

    def wait_empty(self, timeout: float) -> int:
        """Poll `statistics` until the engine holds no call (or `timeout` s); calls left."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.statistics()["sessions"]
            if left == 0 or time.monotonic() > deadline:
                return left
            time.sleep(0.25)


def find_courier(ippbx_pid: int, timeout: float = 10.0) -> int | None:
    """The pid of ippbx's report courier (`[reports] own_process`), waiting up to
    `timeout` s for it; None if ippbx has none (an older commit, or the option off)."""
    deadline = time.monotonic() + timeout
    while True:
        for child in _children(ippbx_pid):
            try:
                argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(b"ippbx.api.reports.courier" in arg for arg in argv):
                return child
        if time.monotonic() > deadline:
            return None
        time.sleep(0.1)


def pin_threads(pid: int, cpus: set[int]) -> int:
    """Move every thread of `pid` to `cpus` (sched_setaffinity works per thread: the ones
    a process already started keep their own mask); how many were moved."""
    moved = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:  # (a thread that just ended)
            continue
        moved += 1
    return moved


DEFAULT_PORTS = "10000-32000"  # below Linux's default ephemeral range (32768-60999)


def parse_media_ports(text: str) -> tuple[int, int]:
    """"MIN-MAX" → (MIN, MAX); SystemExit when malformed or overlapping the ephemeral
    range (see the module's docstring)."""
    low, _, high = text.partition("-")
    try:
        ports = int(low), int(high)
    except ValueError:
        raise SystemExit(f"media ports {text!r}: want MIN-MAX") from None
    if not 1024 <= ports[0] < ports[1] <= 65535:
        raise SystemExit(f"media ports {text}: want MIN-MAX within 1024-65535")
    try:
        eph = [int(x) for x in
               Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()]
    except (OSError, ValueError):
        eph = [32768, 60999]
    if ports[0] <= eph[1] and eph[0] <= ports[1]:
        raise SystemExit(f"media ports {text} overlap the ephemeral ports {eph[0]}-{eph[1]} "
                         "the bench gives ippbx's SIP socket: rtpengine could take it over")
    return ports


# -- a longer RTP timeout ---------------------------------------------------------------------


def timeout_wrapper(directory: Path, seconds: int) -> dict[str, str]:
    """A `rtpengine` script in `directory` adding `--timeout=seconds` (and the silent
    timeout); the environment that puts it first on PATH for ippbx."""
    real = shutil.which("rtpengine")
    if real is None:
        raise RuntimeError("rtpengine is not installed (Debian package rtpengine-daemon)")
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "rtpengine"
    script.write_text(f'#!/bin/sh\nexec {real} "$@" --timeout={seconds} '
                      f"--silent-timeout={seconds}\n")
    script.chmod(0o755)
    return {"PATH": f"{directory}:{os.environ.get('PATH', '/usr/bin:/bin')}"}


# -- ippbx's log ------------------------------------------------------------------------------

_LEVEL = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) (\S+): (.*)$")


def log_problems(stderr: Path) -> collections.Counter[str]:
    """WARNING and worse lines of ippbx's log, counted by "LEVEL logger: first words"."""
    counts: collections.Counter[str] = collections.Counter()
    try:
        lines = stderr.read_text(errors="replace").splitlines()
    except OSError:
        return counts
    for line in lines:
        if (m := _LEVEL.match(line)) is not None:
            words = re.sub(r"[0-9a-f]{8,}|\d+", "N", m.group(3))[:60]
            counts[f"{m.group(1)} {m.group(2)}: {words}"] += 1
    return counts
