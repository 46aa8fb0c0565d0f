"""ippbx and sipp as benchmark peers: config, process, API session, sipp runs, registration.

Builds on `benchlib` (processes, ports, /proc). `Ippbx` starts ippbx as its own process
pinned to core 0 and talks to its API; `Sipp` runs one sipp scenario from
bench/scenarios/ on core 1 and reads its -trace_stat CSV by column name. `register` is
one extension's REGISTER by a short sipp run; `register_many` REGISTERs many extensions
from one port with the bench's own digest client (MD5), faster than a sipp run each.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib import (
    API_PASSWORD,
    BUFF_SIZE,
    IPPBX_CPU,
    LOAD_CPU,
    SCENARIOS,
    VENV_BIN,
    Procs,
    free_port,
    ippbx_source,
    log,
    pinned,
    wait_bound,
)

# -- ippbx ---------------------------------------------------------------------------------------


def ext_password(number: str) -> str:
    return f"bench-secret-{number}"


@dataclass
class PbxConfig:
    """What goes into the generated TOML (extensions 1001-1005 always exist)."""

    sip_port: int
    api_port: int
    store: Path
    trunks: list[tuple[str, int]] = field(default_factory=list)  # (name, port) on 127.0.0.1
    outbound_trunks: list[str] = field(default_factory=list)  # prefix 9 → these trunks
    inbound: list[tuple[str, str, str]] = field(default_factory=list)  # (trunk, did, ext)
    sip_extra: list[str] = field(default_factory=list)  # more [sip] lines (only when set:
    # a benchmarked older commit rejects keys it does not know)
    media: dict[str, str | int] | None = None  # the [media] section; None: engine "none"
    # when the ippbx that runs has a media engine (else no [media] at all), so SIP
    # figures stay SIP only (ippbx's default "auto" anchors every call on rtpengine)
    extra_toml: list[str] = field(default_factory=list)  # more TOML lines at the end
    # (arrays of tables: more [[extensions]], [[queues]], …)

    def toml(self) -> str:
        lines = [
            "[pbx]", 'sn = "ippbxbench01"', 'name = "ippbx bench"',
            "[sip]", f'listen = "127.0.0.1:{self.sip_port}"', 'domain = "ippbx.bench"',
            "max_expires = 3600", *self.sip_extra,
            "[api]", f'listen = "127.0.0.1:{self.api_port}"', f'password = "{API_PASSWORD}"',
            "[store]", f'path = "{self.store}"',
            # the load comes from one address: no rate limit there; sipp's digest uri
            # names the server only (docs/testing.md)
            "[security]", 'trusted = ["127.0.0.0/8"]', 'digest_uri = "host"',
        ]
        media = self.media if self.media is not None else \
            ({"engine": "none"} if media_supported() else {})
        if media:
            lines.append("[media]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in media.items()]
        for n in range(1001, 1006):
            lines += ["[[extensions]]", f'number = "{n}"', f'password = "{ext_password(str(n))}"']
        for name, port in self.trunks:
            lines += ["[[trunks]]", f'name = "{name}"', 'type = "peer"', 'host = "127.0.0.1"',
                      f"port = {port}", 'callerid = "66666"']
        if self.outbound_trunks:
            names = ", ".join(f'"{t}"' for t in self.outbound_trunks)
            lines += ["[[outbound_routes]]", 'name = "external"', 'prefix = "9"',
                      'match = "X."', f"trunks = [{names}]"]
        for i, (trunk, did, ext) in enumerate(self.inbound):
            lines += ["[[inbound_routes]]", f'name = "in{i}"', f'trunk = "{trunk}"',
                      f'did = "{did}"', f'destination = "extension:{ext}"']
        lines += self.extra_toml
        return "\n".join(lines) + "\n"


def media_supported() -> bool:
    """Whether the ippbx that runs (see `ippbx_source`) has a `[media]` section."""
    src, _ = ippbx_source()
    try:
        return "class MediaSection" in (src / "ippbx" / "config.py").read_text()
    except OSError:
        return False


class Ippbx:
    """One ippbx process on loopback, pinned to IPPBX_CPU, and an API session on it."""

    def __init__(self, procs: Procs, wd: Path, config: PbxConfig,
                 wrap: Sequence[str] = (), env: Mapping[str, str] | None = None) -> None:
        self.procs, self.wd, self.config = procs, wd, config
        self.wrap = list(wrap)  # e.g. a profiler command prefix
        self.env = dict(env or {})  # more environment (PYTHONPATH is put first)
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""

    @property
    def sip_address(self) -> str:
        return f"127.0.0.1:{self.config.sip_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> Ippbx:
        path = self.wd / "ippbx.toml"
        path.write_text(self.config.toml())
        src, _ = ippbx_source()
        default = [str(VENV_BIN / "python"), "-m", "ippbx.cli"]  # = .venv/bin/ippbx
        command = os.environ.get("IPPBX_BENCH_COMMAND", "").split() or default
        argv = [*self.wrap, *command, "serve", "--config", str(path), "--log-level", "warning"]
        env = {**self.env, "PYTHONPATH": ":".join(
            p for p in (self.env.get("PYTHONPATH", ""), str(src) if src else "") if p)}
        if not env["PYTHONPATH"]:
            del env["PYTHONPATH"]
        self.proc = self.procs.spawn(pinned(IPPBX_CPU, argv), self.wd, "ippbx", env=env)
        ok = (wait_bound(self.config.sip_port, "udp", timeout, self.proc)
              and wait_bound(self.config.api_port, "tcp", timeout, self.proc))
        if not ok:
            raise RuntimeError("ippbx did not start:\n" + self.stderr_tail())
        return self

    def stderr_tail(self, limit: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return (self.wd / "ippbx.stderr").read_text(errors="replace")[-limit:]
        return ""

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.config.api_port}/api/v0.0.1"

    def _post(self, url: str, body: object, timeout: float) -> dict[str, Any]:
        data = json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())

    def login(self, **fields: str) -> None:
        """Open an API session (done on first use by `post`); `fields` are more login
        fields, e.g. `port` (and `url`) for where reports go.

        While a session is live, ippbx builds a call report for it on every call event and
        queues it in its SQLite outbox for delivery (by default to 127.0.0.1:8260, where
        nothing listens here). The benchmarks therefore log in only around their API
        queries and log out before placing calls, so SIP figures do not include
        undeliverable reports, except `sip_cps.py --with-session`, which logs in with its
        `report_sink.py` as the receiver to measure what reports cost.
        """
        body = {"username": "api", "password": hashlib.md5(API_PASSWORD.encode()).hexdigest(),
                **fields}
        answer = self._post(f"{self.api_base}/login?type=json", body, 10)
        if answer.get("status") != "Success":
            raise RuntimeError(f"API login failed: {answer}")
        self.token = answer["token"]

    def logout(self) -> None:
        if self.token:
            with contextlib.suppress(OSError, ValueError):
                self._post(self.query_url("logout"), {}, 10)
            self.token = ""

    def query_url(self, endpoint: str) -> str:
        if not self.token:
            self.login()
        return f"{self.api_base}/{endpoint}?token={self.token}&type=json"

    def post(self, endpoint: str, body: object, timeout: float = 30.0) -> dict[str, Any]:
        return self._post(self.query_url(endpoint), body, timeout)

    def outbound(self, ids: str = "", timeout: float = 30.0) -> list[dict[str, str]]:
        answer = self.post("outbound/query", {"outboundid": ids}, timeout)
        if answer.get("status") != "Success":
            raise RuntimeError(f"outbound/query failed: {answer}")
        return answer["outbound"]

    def inbound(self, ids: str = "", timeout: float = 30.0) -> list[dict[str, Any]]:
        answer = self.post("inbound/query", {"inboundid": ids}, timeout)
        if answer.get("status") != "Success":
            raise RuntimeError(f"inbound/query failed: {answer}")
        return answer["inbound"]

    def wait_empty(self, query: Callable[[], list[Any]], timeout: float) -> list[Any]:
        """Poll `query` until it returns [] (or `timeout` s pass); the last answer."""
        deadline = time.monotonic() + timeout
        while True:
            left = query()
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.25)

    def stop(self) -> int:
        if self.proc is None:
            return 0
        code = self.procs.stop(self.proc, signal.SIGTERM, 20)
        self.proc = None
        return code


# -- sipp ----------------------------------------------------------------------------------------


@dataclass
class SippResult:
    returncode: int
    rows: list[dict[str, str]]
    errors: str

    @property
    def last(self) -> dict[str, str]:
        return self.rows[-1] if self.rows else {}

    def counter(self, name: str, row: Mapping[str, str] | None = None) -> int:
        value = (row if row is not None else self.last).get(name)
        return int(float(value)) if value not in (None, "") else 0

    @property
    def successful(self) -> int:
        return self.counter("SuccessfulCall(C)")

    @property
    def failed(self) -> int:
        return self.counter("FailedCall(C)")

    @property
    def retransmissions(self) -> int:
        return self.counter("Retransmissions(C)")

    @property
    def unexpected(self) -> int:
        return self.counter("OutOfCallMsgs(C)") + self.counter("DeadCallMsgs(C)")

    @property
    def created(self) -> int:
        return self.counter("TotalCallCreated")

    def response_time_ms(self) -> float:
        """Mean INVITE→200 time (sipp's rtd ResponseTime1(C), "HH:MM:SS:usec")."""
        value = self.last.get("ResponseTime1(C)", "")
        parts = value.split(":")
        if len(parts) != 4:
            return float("nan")
        h, m, s, us = (int(p) for p in parts)
        return ((h * 60 + m) * 60 + s) * 1000 + us / 1000


def row_elapsed(row: Mapping[str, str]) -> float:
    """Seconds between a stat row's StartTime and CurrentTime (their epoch fields)."""
    def epoch(text: str) -> float:
        return float(text.split("\t")[-1])
    return epoch(row["CurrentTime"]) - epoch(row["StartTime"])


def achieved_rate(result: SippResult, total: int) -> float:
    """Calls created per second while sipp was still creating them.

    sipp writes cumulative counters once a second; the last row before all `total` calls
    were created (or the first row, if creation ended within a second) gives
    created / elapsed. A throttled sipp (limit reached because answers lag) shows here.
    """
    rows = [r for r in result.rows if r.get("CurrentTime") and r.get("StartTime")]
    if not rows:
        return 0.0
    during = [r for r in rows if result.counter("TotalCallCreated", r) < total
              and row_elapsed(r) >= 1.0]
    row = during[-1] if during else rows[0]
    elapsed = row_elapsed(row)
    return result.counter("TotalCallCreated", row) / elapsed if elapsed > 0 else 0.0


class Sipp:
    """One sipp process (scenario file from bench/scenarios/), pinned to LOAD_CPU."""

    def __init__(
        self, procs: Procs, wd: Path, name: str, scenario: str, *,
        remote: str | None = None, port: int | None = None, calls: int | None = None,
        rate: float | None = None, limit: int | None = None, hold_ms: int | None = None,
        auth: tuple[str, str] | None = None, keys: Mapping[str, str] | None = None,
        service: str | None = None, recv_timeout_ms: int | None = 10000,
        timeout_s: float | None = None, rtp_pcap: Path | None = None,
        pcma: bool = False, rtp_echo: bool = False,
    ) -> None:
        self.procs, self.name = procs, name
        self.wd = wd / name
        self.wd.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        shutil.copyfile(SCENARIOS / scenario, self.wd / scenario)
        if rtp_pcap is not None:  # RTP from the answer on: the pcap played to the callee
            with_rtp(self.wd / scenario, rtp_pcap)
        if pcma:
            sdp_pcma(self.wd / scenario)
        argv = ["sipp", "-sf", scenario]
        if remote:
            argv.append(remote)
        argv += ["-i", "127.0.0.1", "-p", str(self.port), "-t", "u1",
                 "-buff_size", str(BUFF_SIZE), "-nostdin",
                 "-trace_stat", "-stf", "stats.csv", "-fd", "1",
                 "-trace_err", "-error_file", "errors.log"]
        for flag, value in (("-m", calls), ("-l", limit), ("-d", hold_ms),
                            ("-recv_timeout", recv_timeout_ms)):
            if value is not None:
                argv += [flag, str(value)]
        if rate is not None:
            argv += ["-r", f"{rate:g}"]
        if timeout_s is not None:
            argv += ["-timeout", f"{int(timeout_s)}s", "-timeout_error"]
        if auth:
            argv += ["-au", auth[0], "-ap", auth[1]]
        if service:
            argv += ["-s", service]
        for k, v in (keys or {}).items():
            argv += ["-key", k, v]
        if rtp_echo:
            argv.append("-rtp_echo")
        self.argv = argv
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, uas: bool = False) -> Sipp:
        self.proc = self.procs.spawn(pinned(LOAD_CPU, self.argv), self.wd, "sipp")
        if uas and not wait_bound(self.port, "udp", 10, self.proc):
            raise RuntimeError(f"sipp {self.name} did not bind {self.port}: "
                               + (self.wd / "sipp.stderr").read_text(errors="replace")[-2000:])
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rows(self) -> list[dict[str, str]]:
        path = self.wd / "stats.csv"
        if not path.exists():
            return []
        with path.open(newline="", errors="replace") as f:
            return [r for r in csv.DictReader(f, delimiter=";") if r]

    def result(self) -> SippResult:
        errors = ""
        with contextlib.suppress(OSError):
            errors = (self.wd / "errors.log").read_text(errors="replace")[-2000:]
        code = self.proc.returncode if self.proc and self.proc.returncode is not None else -1
        return SippResult(code, self.rows(), errors)

    def wait(self, timeout: float, on_tick: Callable[[], None] | None = None) -> SippResult:
        """Wait for sipp to exit (killed after `timeout` s), calling `on_tick` every 0.5 s."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            if on_tick:
                on_tick()
            time.sleep(0.5)
        if self.proc.poll() is None:
            log(f"  sipp {self.name} still running after {timeout:.0f} s: killed")
            self.procs.stop(self.proc, signal.SIGKILL, 5)
        return self.result()

    def stop(self, timeout: float = 10.0) -> SippResult:
        """SIGUSR1: sipp stops taking calls and exits, writing its final statistics."""
        if self.proc is not None:
            self.procs.stop(self.proc, signal.SIGUSR1, timeout)
        return self.result()

    def kill(self) -> SippResult:
        if self.proc is not None:
            self.procs.stop(self.proc, signal.SIGKILL, 5)
        return self.result()


def with_rtp(scenario: Path, pcap: Path) -> None:
    """Make a UAC scenario send RTP once its call is up: before its `<pause/>` (after the
    ACK), sipp plays `pcap`'s RTP (sipp's `play_pcap_audio`, a thread per call) to the
    media address of the answer's SDP, for as long as the pcap lasts or the call does.
    sipp's g711a.pcap is PCMA: give both ends `pcma` SDP."""
    text = scenario.read_text()
    if text.count("<pause/>") != 1:
        raise ValueError(f"{scenario.name}: want exactly one <pause/> to send RTP from")
    play = (f'<nop><action><exec play_pcap_audio="{pcap}"/></action></nop>\n'
            "  <pause/>")
    scenario.write_text(text.replace("<pause/>", play))


def sdp_pcma(scenario: Path) -> None:
    """The scenario's SDP offers (or answers) PCMA, payload type 8, instead of PCMU."""
    text = scenario.read_text()
    scenario.write_text(text.replace("RTP/AVP 0", "RTP/AVP 8")
                        .replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000"))


def register(procs: Procs, wd: Path, pbx: Ippbx, ext: str, port: int) -> None:
    """REGISTER extension `ext` from 127.0.0.1:`port` (one short sipp run) or raise."""
    reg = Sipp(procs, wd, f"register-{ext}-{port}", "register.xml", remote=pbx.sip_address,
               port=port, calls=1, auth=(ext, ext_password(ext)), keys={"user": ext},
               recv_timeout_ms=5000, timeout_s=15).start()
    result = reg.wait(20)
    if result.returncode != 0 or result.successful != 1:
        raise RuntimeError(f"REGISTER of {ext} failed (sipp exit {result.returncode}): "
                           f"{result.errors}")


# -- many registrations from one port (no sipp) -----------------------------------------------

_AUTH_PARAM = re.compile(r'([A-Za-z-]+)\s*=\s*(?:"([^"]*)"|([^,\s]+))')


def _digest(method: str, uri: str, user: str, password: str, challenge: str) -> str:
    """An Authorization value answering one `Digest` challenge (MD5, qop auth or none)."""
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
              for m in _AUTH_PARAM.finditer(challenge)}
    realm, nonce = params.get("realm", ""), params.get("nonce", "")

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1, ha2 = md5(f"{user}:{realm}:{password}"), md5(f"{method}:{uri}")
    fields = [f'username="{user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"',
              "algorithm=MD5"]
    if "auth" in [q.strip() for q in params.get("qop", "").split(",")]:
        cnonce, nc = secrets.token_hex(8), "00000001"
        response = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        fields += ["qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
    else:
        response = md5(f"{ha1}:{nonce}:{ha2}")
    fields.append(f'response="{response}"')
    if "opaque" in params:
        fields.append(f'opaque="{params["opaque"]}"')
    return "Digest " + ", ".join(fields)


def register_many(pbx: Ippbx, extensions: Sequence[str], port: int,
                  expires: int = 3600, timeout: float = 2.0) -> None:
    """REGISTER each extension with Contact `sip:EXT@127.0.0.1:port`, sent from that port
    (digest with ext_password, MD5), one after the other, so a sipp UAS started on `port`
    afterwards receives all their calls; RuntimeError unless every one gets a 200."""
    host, sip_port = "127.0.0.1", pbx.config.sip_port
    uri = f"sip:{host}:{sip_port}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, port))
        sock.settimeout(timeout)
        for ext in extensions:
            call_id, tag = secrets.token_hex(10), secrets.token_hex(6)
            authorization = ""
            for cseq in range(1, 4):
                branch = "z9hG4bK" + secrets.token_hex(8)
                lines = [f"REGISTER {uri} SIP/2.0",
                         f"Via: SIP/2.0/UDP {host}:{port};branch={branch};rport",
                         f"From: <sip:{ext}@{host}:{sip_port}>;tag={tag}",
                         f"To: <sip:{ext}@{host}:{sip_port}>", f"Call-ID: {call_id}",
                         f"CSeq: {cseq} REGISTER", f"Contact: <sip:{ext}@{host}:{port}>",
                         f"Expires: {expires}", "Max-Forwards: 70"]
                if authorization:
                    lines.append(f"Authorization: {authorization}")
                data = ("\r\n".join([*lines, "Content-Length: 0"]) + "\r\n\r\n").encode()
                status, challenges = _transaction(sock, data, call_id, cseq,
                                                  (host, sip_port))
                if status == 200:
                    break
                if status != 401 or not challenges:
                    raise RuntimeError(f"REGISTER of {ext}: {status}")
                md5 = [c for c in challenges if "sha-256" not in c.lower()] or challenges
                authorization = _digest("REGISTER", uri, ext, ext_password(ext), md5[0])
            else:
                raise RuntimeError(f"REGISTER of {ext}: still challenged after 3 tries")


def _transaction(sock: socket.socket, data: bytes, call_id: str, cseq: int,
                 to: tuple[str, int]) -> tuple[int, list[str]]:
    """Send `data` (again every `sock` timeout, 4 times at most) until its final response:
    (status, its WWW-Authenticate values)."""
    for _ in range(4):
        sock.sendto(data, to)
        try:
            while True:
                text = sock.recv(65536).decode(errors="replace")
                head = text.split("\r\n\r\n", 1)[0].split("\r\n")
                fields = [line.split(":", 1) for line in head[1:] if ":" in line]
                values = {k.strip().lower(): v.strip() for k, v in fields}
                parts = head[0].split()
                if len(parts) < 2 or not parts[1].isdigit() or int(parts[1]) < 200 \
                        or values.get("call-id") != call_id \
                        or values.get("cseq", "").split()[:1] != [str(cseq)]:
                    continue
                return int(parts[1]), [v.strip() for k, v in fields
                                       if k.strip().lower() == "www-authenticate"]
        except TimeoutError:
            continue
    raise RuntimeError("REGISTER: no final response")
