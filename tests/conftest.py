"""Shared test helpers: a fake clock, free ports, the demo config, and an in-process API
server on a free loopback port (real HTTP, uvicorn in the session event loop)."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio

from ippbx.api.request import ApiContext
from ippbx.api.server import ApiServer, build_app
from ippbx.api.sessions import SessionManager
from ippbx.config import Config, load_config
from ippbx.pbx.calls import CallRegistry

DEMO_API_PASSWORD_MD5 = hashlib.md5(b"apipass").hexdigest()


class FakeClock:
    """A clock the test moves by hand; call it to read the time."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def free_port() -> Callable[..., int]:
    """`free_port(kind=SOCK_STREAM)`: a port free on 127.0.0.1 now (for subprocess configs)."""
    return _free_port


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def demo_config() -> Config:
    return load_config(None)


@dataclass
class ApiHarness:
    """A running API server, its context and an httpx client pointed at it.

    One server serves the whole test session (in the session event loop: mark API test
    modules with `pytest.mark.asyncio(loop_scope="session")`); the `api` fixture gives
    each test a fresh context (demo config, empty call registry, new sessions on the
    test's fake clock), so tests do not see each other's calls or tokens.
    """

    server: ApiServer
    ctx: ApiContext
    client: httpx.AsyncClient
    clock: FakeClock

    @property
    def registry(self) -> CallRegistry:
        return self.ctx.registry

    def reset(self, config: Config, clock: FakeClock) -> None:
        """Serve `config` from now on, with no calls and no sessions."""
        self.clock = clock
        self.ctx.config = config
        self.ctx.registry = CallRegistry()
        self.ctx.sessions = SessionManager(config.api, clock=clock)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.post(path, **kwargs)

    async def login(self, version: str = "v0.0.1") -> str:
        body = {"username": "api", "password": DEMO_API_PASSWORD_MD5, "port": "8260"}
        answer = (await self.post(f"/api/{version}/login", json=body)).json()
        assert answer["status"] == "Success", answer
        return str(answer["token"])


WALL_TIME = 1589861167.0  # 2020-05-19 04:06:07 UTC
BOOT_TIME = 1584952402.0  # 2020-03-23 08:33:22 UTC


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def api_server() -> AsyncIterator[ApiHarness]:
    """The session's API server on a free loopback port; stopped at the end."""
    config = load_config(None)
    clock = FakeClock()
    ctx = ApiContext(
        config=config,
        registry=CallRegistry(),
        sessions=SessionManager(config.api, clock=clock),
        wall_clock=lambda: WALL_TIME,
        boot_time=BOOT_TIME,
    )
    server = ApiServer(build_app(ctx), "127.0.0.1", 0)
    await server.start()
    client = httpx.AsyncClient(base_url=server.url, timeout=5)
    try:
        yield ApiHarness(server, ctx, client, clock)
    finally:
        await client.aclose()
        await server.stop()


@pytest.fixture
def api(api_server: ApiHarness, clock: FakeClock, demo_config: Config) -> ApiHarness:
    api_server.reset(demo_config, clock)
    return api_server
