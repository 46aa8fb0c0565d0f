"""Fixtures shared by the integration tests (real sockets, real peers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sipp_harness import SippFactory, free_port, sipp_available


@pytest.fixture
def sipp(tmp_path: Path) -> Iterator[SippFactory]:
    """Make sipp runs (`sipp("uac.xml", remote=…, calls=…)`); all are killed afterwards."""
    if not sipp_available():
        pytest.skip("sipp not installed (Debian package sip-tester; `make debs`)")
    factory = SippFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def fresh_port() -> int:
    """A fresh loopback port free for both UDP and TCP."""
    return free_port()
