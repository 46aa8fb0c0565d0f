"""The API's listener: the handler of `ippbx.api.http_app` served by the HTTP/1.1 server
of `ippbx.api.http_server` inside the caller's running asyncio loop, so SIP shares it.

`ApiServer` serves plain HTTP, or HTTPS when given an `ssl.SSLContext` (or a function
making one at `start()`, see `ippbx.api.tls`); the app runs one of each on the same
handler when `[api] https_listen` is set. The access log is off because URLs carry
tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable, Sequence

from ippbx.api.codec import MAX_BODY
from ippbx.api.guard import HttpGuard
from ippbx.api.http_app import ApiApp, Page
from ippbx.api.http_server import Handler, HttpServer, serve
from ippbx.api.request import ApiContext

log = logging.getLogger(__name__)


def build_app(ctx: ApiContext, pages: Sequence[Page] = ()) -> ApiApp:
    """The handler serving both API dialects for `ctx`, and `pages` beside them."""
    return ApiApp(ctx, pages)


def _bind(host: str, port: int) -> socket.socket:
    infos = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


SslContextSource = ssl.SSLContext | Callable[[], ssl.SSLContext]


class ApiServer:
    """Serves a handler in the current event loop; `start()` binds, `stop()` ends.

    `port` is the bound port (useful after binding port 0). With `ssl_context` (a context,
    or a function called by `start()` that returns one) the server speaks HTTPS only on
    its port; with `guard` (`ippbx.api.guard`) idle and half-sent requests are cut and
    connections capped.
    """

    def __init__(
        self,
        app: Handler,
        host: str = "127.0.0.1",
        port: int = 9011,
        *,
        ssl_context: SslContextSource | None = None,
        guard: HttpGuard | None = None,
    ) -> None:
        self.app = app
        self.host = host
        self.requested_port = port
        self.ssl_context = ssl_context
        self.guard = guard  # request deadline and connection caps (None: keep-alive only)
        self._sock: socket.socket | None = None
        self._server: HttpServer | None = None
        self._listener: asyncio.AbstractServer | None = None

    @property
    def port(self) -> int:
        if self._sock is None:
            raise RuntimeError("ApiServer is not started")
        return int(self._sock.getsockname()[1])

    @property
    def tls(self) -> bool:
        """True when this server speaks HTTPS."""
        return self.ssl_context is not None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    async def start(self) -> None:
        if self._listener is not None:
            raise RuntimeError("ApiServer already started")
        context: ssl.SSLContext | None = None
        if self.ssl_context is not None:
            source = self.ssl_context
            context = source if isinstance(source, ssl.SSLContext) else source()
        sock = _bind(self.host, self.requested_port)
        server = HttpServer(self.app, MAX_BODY, self.guard)
        try:
            listener = await serve(server, sock, context)
        except BaseException:
            sock.close()
            raise
        self._sock, self._server, self._listener = sock, server, listener
        log.info("API listening on %s", self.url)

    async def stop(self) -> None:
        server, listener = self._server, self._listener
        if server is None or listener is None:
            return
        url = self.url
        listener.close()
        server.close_all(tls=self.tls)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(listener.wait_closed(), timeout=3)
        if self._sock is not None:
            self._sock.close()
        self._server = self._listener = self._sock = None
        log.info("API on %s stopped", url)
