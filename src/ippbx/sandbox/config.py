"""The sandbox's PBX configuration and what the simulators need to know of it.

`sandbox_config()` is the embedded demo configuration (`ippbx/demo.toml`) with the few
things a sandbox run changes: the SIP, API (HTTP and HTTPS) and carrier ports (tests pass
free ones; the self-signed HTTPS certificate is made beside the store), the
SQLite path (a temporary directory by default, so `make run`'s `ippbx.sqlite3` is never
touched) and a shorter no-answer timer, so calls the simulated carrier never answers end
after seconds, not a minute.

`Topology.from_config()` reads the simulators' side of that configuration: the
extensions with their passwords (the phones), the peer trunk on a loopback address (the
carrier), the outbound route prefix that leads to it and the DIDs it may call. The
simulators learn nothing else about the PBX: they reach it through SIP only.
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from pydantic import ValidationError

from ippbx.config import Config, ConfigError, Trunk

__all__ = ["Topology", "sandbox_config", "DEMO_NO_ANSWER_SECONDS"]

DEMO_NO_ANSWER_SECONDS = 10


def sandbox_config(
    *,
    sip_port: int = 5060,
    api_port: int = 9011,
    https_port: int = 8088,
    tls_port: int = 5061,
    carrier_port: int = 5080,
    store_path: str = "ippbx-demo.sqlite3",
    no_answer_seconds: int = DEMO_NO_ANSWER_SECONDS,
    host: str = "127.0.0.1",
) -> Config:
    """The demo configuration with these ports (0: any free port), store and timer."""
    text = resources.files("ippbx").joinpath("demo.toml").read_text(encoding="utf-8")
    data: dict[str, Any] = tomllib.loads(text)
    data.setdefault("sip", {})["listen"] = f"{host}:{sip_port}"
    data["sip"]["tls_listen"] = f"{host}:{tls_port}"
    data["sip"]["no_answer_seconds"] = no_answer_seconds
    data.setdefault("api", {})["listen"] = f"{host}:{api_port}"
    data["api"]["https_listen"] = f"{host}:{https_port}"
    data.setdefault("store", {})["path"] = store_path
    trunk = _carrier_table(data.get("trunks", []))
    trunk["host"] = host
    trunk["port"] = carrier_port
    try:
        return Config.model_validate(data)
    except ValidationError as exc:  # only if demo.toml itself is broken
        raise ConfigError(f"sandbox config: {exc.errors()[0]['msg']}") from None


def _carrier_table(trunks: list[dict[str, Any]]) -> dict[str, Any]:
    for trunk in trunks:
        if trunk.get("type", "peer") == "peer":
            return trunk
    raise ConfigError("sandbox config: the demo configuration has no peer trunk")


@dataclass(frozen=True, slots=True)
class Topology:
    """What the simulated endpoints know about the PBX, as a real installer would."""

    pbx_host: str
    pbx_port: int
    domain: str
    extensions: dict[str, str]  # number -> SIP password
    names: dict[str, str]  # number -> display name ("" if none)
    trunk: Trunk  # the carrier's trunk (a peer on a loopback address)
    prefix: str  # dial this before an external number
    dids: tuple[str, ...]  # numbers the carrier may call that ring an extension

    @classmethod
    def from_config(cls, config: Config, pbx_port: int | None = None) -> Topology:
        """Read the topology; `pbx_port` is the bound SIP port when the config says 0."""
        trunk = next((t for t in config.trunks if t.type == "peer" and _loopback(t.host)),
                     None)
        if trunk is None:
            raise ConfigError("sandbox: no peer trunk on a loopback address to simulate")
        prefix = next((r.prefix for r in config.outbound_routes if trunk.name in r.trunks),
                      None)
        if prefix is None:
            raise ConfigError(f"sandbox: no outbound route uses trunk {trunk.name!r}")
        dids = tuple(r.did for r in config.inbound_routes
                     if r.trunk == trunk.name and r.did and r.destination != "hangup")
        host, port = config.sip.listen_address
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        return cls(
            pbx_host=host,
            pbx_port=pbx_port if pbx_port is not None else port,
            domain=config.sip.domain,
            extensions={e.number: e.password for e in config.extensions},
            names={e.number: e.name for e in config.extensions},
            trunk=trunk,
            prefix=prefix,
            dids=dids,
        )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
