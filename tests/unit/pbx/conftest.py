"""Fixtures of the PBX unit tests: `world`, an in-memory network for one PBX and the
phones and carriers a test makes (tests/pbx_stack.py), stopped after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pbx_stack import World


@pytest.fixture
async def world() -> AsyncIterator[World]:
    made = World()
    try:
        yield made
    finally:
        await made.stop()
