"""The `ippbx demo` subcommand's options and entry point (wired into `ippbx.cli`).

Exit codes: 0 after a clean stop (Ctrl-C, SIGTERM or `--duration`), 1 when an address
cannot be bound or the phones cannot register, 2 for bad option values.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from ippbx.sandbox.config import DEMO_NO_ANSWER_SECONDS

__all__ = ["add_arguments", "main"]


def _positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1: {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port: {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `ippbx demo`."""
    traffic = parser.add_argument_group("traffic")
    traffic.add_argument("--calls-per-minute", type=_positive(float), default=20.0,
                         metavar="N", help="average rate of new calls (default: 20)")
    traffic.add_argument("--concurrent-max", type=_positive(int), default=10, metavar="N",
                         help="never more calls than this at once (default: 10)")
    traffic.add_argument("--seed", type=int, default=None, metavar="N",
                         help="repeat a run: the same seed dials the same numbers "
                              "(default: random, printed at start)")
    traffic.add_argument("--duration", type=_positive(float), default=None, metavar="SECONDS",
                         help="stop after this long (default: run until Ctrl-C)")
    traffic.add_argument("--busy-rate", type=_rate, default=0.15, metavar="P",
                         help="share of outbound calls the carrier answers busy (0.15)")
    traffic.add_argument("--no-answer-rate", type=_rate, default=0.10, metavar="P",
                         help="share of outbound calls the carrier never answers (0.10)")
    traffic.add_argument("--no-answer-seconds", type=_positive(int),
                         default=DEMO_NO_ANSWER_SECONDS, metavar="SECONDS",
                         help="the PBX's ring timeout in the demo "
                              f"(default: {DEMO_NO_ANSWER_SECONDS})")
    out = parser.add_argument_group("output")
    out.add_argument("--status-interval", type=_positive(float), default=5.0,
                     metavar="SECONDS", help="one status line this often (default: 5)")
    out.add_argument("-v", "--verbose", action="store_true",
                     help="also one line per call placed, per call over and per report")
    out.add_argument("--receiver", type=_port, default=None, metavar="PORT",
                     help="receive the call reports on this port: the demo logs in to its "
                          "API with it (default: no receiver)")
    out.add_argument("--log-level", default="warning",
                     choices=["debug", "info", "warning", "error"],
                     help="the PBX's logging threshold (default: warning)")
    net = parser.add_argument_group("addresses (all on 127.0.0.1; 0 = any free port)")
    net.add_argument("--sip-port", type=_port, default=5060, metavar="PORT",
                     help="PBX SIP (default: 5060)")
    net.add_argument("--api-port", type=_port, default=9011, metavar="PORT",
                     help="PBX API (default: 9011)")
    net.add_argument("--https-port", type=_port, default=8088, metavar="PORT",
                     help="PBX API over HTTPS, self-signed certificate (default: 8088)")
    net.add_argument("--tls-port", type=_port, default=5061, metavar="PORT",
                     help="PBX SIP over TLS, self-signed certificate (default: 5061)")
    net.add_argument("--carrier-port", type=_port, default=5080, metavar="PORT",
                     help="the simulated carrier, i.e. the trunk's port (default: 5080)")
    net.add_argument("--store", metavar="FILE", default=None,
                     help="SQLite file for the PBX (default: a temporary one, removed at "
                          "exit; never make run's ippbx.sqlite3)")


def main(args: argparse.Namespace) -> int:
    """Run the sandbox as `args` say; the exit code."""
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from ippbx.sandbox.runner import Sandbox, SandboxError, SandboxOptions

    try:
        options = SandboxOptions(
            calls_per_minute=args.calls_per_minute,
            concurrent_max=args.concurrent_max,
            seed=args.seed,
            duration=args.duration,
            status_interval=args.status_interval,
            sip_port=args.sip_port,
            api_port=args.api_port,
            https_port=args.https_port,
            tls_port=args.tls_port,
            carrier_port=args.carrier_port,
            store=args.store,
            no_answer_seconds=args.no_answer_seconds,
            busy_rate=args.busy_rate,
            no_answer_rate=args.no_answer_rate,
            receiver_port=args.receiver,
            verbose=args.verbose,
        )
    except ValueError as exc:
        print(f"ippbx demo: {exc}", file=sys.stderr)
        return 2
    try:
        return Sandbox(options).run()
    except (OSError, SandboxError) as exc:
        print(f"ippbx demo: cannot start: {exc}", file=sys.stderr)
        return 1
