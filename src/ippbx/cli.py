"""The `ippbx` command: `serve [--config FILE]`, `check-config FILE`, `demo` (sandbox),
and the runtime configuration's `config export|import`, `ext`, `trunk` and `route`
(`ippbx.config_cli`).

A bad configuration prints its one-line reason to stderr and exits with 2 (every
command); a listen address that cannot be bound exits with 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ippbx import __version__, config_cli
from ippbx.config import Config, ConfigError, load_config
from ippbx.sandbox.cli import add_arguments as add_demo_arguments
from ippbx.sandbox.cli import main as demo_main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ippbx", description="An IP-PBX with an OpenVox/Yeastar compatible HTTP API."
    )
    parser.add_argument("--version", action="version", version=f"ippbx {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the PBX (embedded demo config by default)")
    serve.add_argument("--config", metavar="FILE", help="TOML configuration file")
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="logging threshold (default: info)",
    )
    check = sub.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("file", metavar="FILE")
    demo = sub.add_parser(
        "demo", help="the demo PBX with simulated phones and carrier placing calls (sandbox)"
    )
    add_demo_arguments(demo)
    config_cli.add_parsers(sub)
    return parser


def _load(path: str | None) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(str(exc).replace("\n", " "), file=sys.stderr)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        if _load(args.file) is None:
            return 2
        print(f"{args.file}: OK")
        return 0
    if args.command == "demo":
        return demo_main(args)
    if args.command in config_cli.COMMANDS:
        return config_cli.main(args)
    config = _load(args.config)
    if config is None:
        return 2
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # httpx says every request at INFO: the mixer's REST calls (a long poll every 30 s,
    # one per join) would fill the log; its warnings still show
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    from ippbx.app import App

    try:
        return App(config, config_path=args.config).run()
    except ConfigError as exc:  # (the store's configuration no longer validates)
        print(str(exc).replace("\n", " "), file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ippbx: cannot start: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
