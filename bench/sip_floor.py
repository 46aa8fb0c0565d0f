"""The floor under a SIP call's CPU: what one datagram in and one out cost before any PBX.

Goal (b) asks ippbx for 6.7 x sippy's calls per CPU-second. A call of scenario (b) is 13
datagrams through ippbx (6 in, 7 out: INVITE, 100, INVITE, 180 twice, 200 twice, ACK
twice, BYE twice, 200 twice). Whatever the PBX above does, each of them costs at least
the event loop's receive and send and the kernel's, and, for SIP, the parse of what came
and the serialization of what goes. This measures that floor on this machine, in two
servers (each pinned to core 0, the load on core 1, loopback only):

- `echo`: a uvloop datagram endpoint that sends every datagram straight back (the loop
  and the kernel, no SIP);
- `sip`: ippbx's own `SipTransport` (the one the PBX runs) whose handler answers every
  request with `make_response(request, 200)`: the transport's receive path, the parse
  (`read_datagram`, with the checks the transport applies), the response built from the
  request and serialized, and the send to where the PBX would send it
  (`response_destination`).

The load: the 922-byte INVITE of bench/sip_parse.py with a fresh Call-ID, branch and
tag in every datagram (so no parse memo is reused), sent at --rate per second for
--seconds, its answers read and counted. Reported per server: exchanges answered, the
server's CPU over the window (/proc/PID/stat), µs per exchange (one in, one out), and
the calls per CPU-second a server could not exceed if each of a call's 13 datagrams cost
no more than half an exchange (6.5 exchanges a call), against the goal's figure from
--sippy-calls-per-cpu-second (sippy's, measured by bench/sip_cps.py --scenario b).

    .venv/bin/python bench/sip_floor.py [--rate 4000] [--seconds 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchlib import (  # noqa: E402
    IPPBX_CPU,
    LOAD_CPU,
    VENV_BIN,
    cpu_seconds,
    free_port,
    machine_info,
    pinned,
    print_machine,
    table,
)
from sip_parse import INVITE  # noqa: E402

EXCHANGES_PER_CALL = 6.5  # scenario (b): 13 datagrams through ippbx per call
GOAL_RATIO = 6.7  # goal (b): ippbx >= 6.7 x sippy in calls per CPU-second


def invite(n: int) -> bytes:
    """bench/sip_parse.py's INVITE with the Call-ID, branch and From tag of exchange `n`
    (each the length it replaces: the message keeps its size)."""
    out = INVITE
    for old, new in ((b"8a1c3f9d2b7e4a11", f"{n:016x}"), (b"tag=8d3c2f1a", f"tag={n:08x}"),
                     (b"5f0a3c2e9b8d47a1b6c0e2f4a8d1c3b5", f"{n:032x}")):
        assert out.count(old) == 1
        out = out.replace(old, new.encode())
    return out


# -- the servers (a child process each) ------------------------------------------------
class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)


async def _serve(mode: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    if mode == "echo":
        await loop.create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", port))
    else:
        from ippbx.sip.message import Request, make_response
        from ippbx.sip.transport import SipTransport
        from ippbx.sip.wire import Peer

        transport: SipTransport | None = None

        def answer(message: object, peer: Peer) -> None:
            if isinstance(message, Request):  # (answered where the PBX would answer it)
                assert transport is not None
                response = make_response(message, 200, to_tag="floor")
                transport.send(response, transport.response_destination(response, peer))

        transport = SipTransport("127.0.0.1", port, answer)
        await transport.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


def serve(mode: str, port: int) -> None:
    import uvloop

    from ippbx.native import compiled_modules

    if mode == "sip":
        import ippbx.sip.message  # noqa: F401  (loads the compiled stack where built)
        print("compiled" if compiled_modules() else "python", flush=True)
    else:
        print("-", flush=True)
    uvloop.run(_serve(mode, port))


# -- the load (this process, on core 1) ------------------------------------------------
def load(port: int, rate: float, seconds: float, start_at: int) -> tuple[int, int, float]:
    """Send `rate`/s INVITEs for `seconds`; (sent, answered, wall seconds)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    dest = ("127.0.0.1", port)
    datagrams = [invite(start_at + i) for i in range(int(rate * seconds))]
    sent = answered = 0
    start = time.perf_counter()
    end = start + seconds
    while True:
        now = time.perf_counter()
        due = min(len(datagrams), int((now - start) * rate))
        while sent < due:
            sock.sendto(datagrams[sent], dest)
            sent += 1
        while True:
            try:
                sock.recv(65536)
            except BlockingIOError:
                break
            answered += 1
        if now >= end and sent >= len(datagrams):
            break
        time.sleep(0.0005)
    grace = time.perf_counter() + 1.0  # the last answers
    while answered < sent and time.perf_counter() < grace:
        try:
            sock.recv(65536)
            answered += 1
        except BlockingIOError:
            time.sleep(0.001)
    sock.close()
    return sent, answered, time.perf_counter() - start


def measure(mode: str, rate: float, seconds: float, start_at: int) -> dict[str, object]:
    port = free_port()
    argv = [str(VENV_BIN / "python"), str(Path(__file__).resolve()), "--serve", mode,
            "--port", str(port)]
    proc = subprocess.Popen(pinned(IPPBX_CPU, argv), stdout=subprocess.PIPE, bufsize=0)
    try:
        assert proc.stdout is not None
        # which stack, then "ready"; a server that hangs is given 30 s
        out, deadline = b"", time.monotonic() + 30.0
        while out.count(b"\n") < 2 and time.monotonic() < deadline:
            if select.select([proc.stdout], [], [], 1.0)[0]:
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break  # it exited
                out += chunk
        lines = out.decode(errors="replace").split("\n")
        if len(lines) < 3 or lines[1].strip() != "ready":
            raise RuntimeError(f"the {mode} server did not start")
        stack = lines[0].strip()
        load(port, rate / 10, 1.0, start_at + 10_000_000)  # warm-up
        cpu0 = cpu_seconds(proc.pid)
        sent, answered, wall = load(port, rate, seconds, start_at)
        cpu = cpu_seconds(proc.pid) - cpu0
    finally:
        proc.kill()
        proc.wait()
    per = cpu / answered * 1e6 if answered else float("nan")
    return {"mode": mode, "stack": stack, "sent": sent, "answered": answered,
            "cpu_percent": 100 * cpu / wall, "us_per_exchange": per}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=4000.0, help="INVITEs per second")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sippy-calls-per-cpu-second", type=float, default=438.0,
                   help="sippy's figure in scenario (b) (BENCHMARKS.md, goal (b) row)")
    p.add_argument("--serve", choices=["echo", "sip"], help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return 0
    if not 0 < args.rate <= 20000 or not 0 < args.seconds <= 60 or not 0 < args.repeats <= 10:
        p.error("--rate in (0, 20000], --seconds in (0, 60], --repeats in (1, 10]")
    os.sched_setaffinity(0, {int(LOAD_CPU)})
    print_machine(machine_info(), f"bench/sip_floor.py {' '.join(sys.argv[1:])}")
    results: dict[str, list[dict[str, object]]] = {"echo": [], "sip": []}
    start_at = 0
    for repeat in range(args.repeats):
        for mode in ("echo", "sip"):  # alternated, so drift hits both
            r = measure(mode, args.rate, args.seconds, start_at)
            start_at += int(args.rate * args.seconds) + 1
            results[mode].append(r)
            print(f"  {mode:4} #{repeat + 1}: {r['answered']}/{r['sent']} answered, "
                  f"cpu {r['cpu_percent']:.1f} %, {r['us_per_exchange']:.1f} µs per "
                  f"exchange ({r['stack']})", flush=True)
    goal = GOAL_RATIO * args.sippy_calls_per_cpu_second
    rows = []
    for mode, runs in results.items():
        per = statistics.median(float(r["us_per_exchange"]) for r in runs)  # type: ignore[arg-type]
        bound = 1e6 / (per * EXCHANGES_PER_CALL)
        rows.append([mode, f"{per:.1f}", f"{per * EXCHANGES_PER_CALL:.0f}", f"{bound:,.0f}",
                     f"{bound / args.sippy_calls_per_cpu_second:.2f}x"])
    print(table(["server", "µs per exchange (median)", "µs per call of (b)",
                 "calls per CPU-second at most", "x sippy"], rows))
    print(f"goal (b): {goal:,.0f} calls per CPU-second "
          f"({GOAL_RATIO} x sippy's {args.sippy_calls_per_cpu_second:g})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
