"""IP address lists from the configuration (`allowed_ips`, `trusted`): CIDRs, and whether
an address is in them (an IPv4-mapped IPv6 address counts as its IPv4 one)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(cidrs: Iterable[str]) -> list[Network]:
    """The networks of `cidrs` (host bits allowed: "10.0.0.1/8" is 10.0.0.0/8)."""
    return [ipaddress.ip_network(cidr, strict=False) for cidr in cidrs]


def in_networks(address: str, nets: list[Network]) -> bool:
    """Is `address` in one of `nets`? False for anything that is not an address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in nets)
