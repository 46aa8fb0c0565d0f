"""Fixtures shared by the integration tests (real sockets, real peers)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pbx_harness import PbxHarness, Start, TrunkSpec
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


@pytest.fixture
async def start_pbx(tmp_path: Path) -> AsyncIterator[Start]:
    """`await start_pbx(trunks, **kw)`: a PbxHarness; stopped (without the leak checks)
    after a test that failed before its own `await pbx.stop()`."""
    started: list[PbxHarness] = []

    async def start(trunks: list[TrunkSpec], **kwargs: Any) -> PbxHarness:
        base = tmp_path / f"pbx{len(started)}"
        base.mkdir()
        pbx = await PbxHarness.start(base, trunks, **kwargs)
        started.append(pbx)
        return pbx

    yield start
    for pbx in started:
        await pbx.stop(check_leaks=False)
