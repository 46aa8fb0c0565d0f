"""The HTTP side of the API: a Starlette app with one catch-all route, served by uvicorn
(httptools) inside the caller's running asyncio loop, so SIP can share that loop.

- `OPTIONS` on any path: 200, the two CORS headers and `Access-Control-Allow-Headers`.
- A path outside `/api/`: HTTP 404 (with the CORS headers).
- Anything under `/api/`: HTTP 200 with the envelope from `ippbx.api.dialects.dispatch`.

Header names are written with the vendor's casing (`Access-control-allow-origin`), which
Starlette would lowercase; note that uvicorn's httptools protocol lowercases every header
name on the wire anyway (legal: HTTP header names are case-insensitive).

Request bodies are streamed and cut at `codec.MAX_BODY`, checked against Content-Length
first. The access log is off because URLs carry tokens.

`ApiServer` serves plain HTTP, or HTTPS when given an `ssl.SSLContext` (or a function
making one at `start()`, see `ippbx.api.tls`); the app runs one of each on the same
Starlette app when `[api] https_listen` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable, Iterable

import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ippbx.api import codec
from ippbx.api.codec import MAX_BODY
from ippbx.api.dialects import API_PREFIX, dispatch
from ippbx.api.errors import ApiError, Errno
from ippbx.api.guard import HttpGuard
from ippbx.api.request import ApiContext, ClientGone

log = logging.getLogger(__name__)

CORS_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"Access-control-allow-origin", b"*"),
    (b"Access-control-allow-methods", b"GET, POST, OPTIONS, PUT, DELETE"),
)
PREFLIGHT_HEADERS = (*CORS_HEADERS, (b"Access-Control-Allow-Headers", b"Content-Type"))


class RawResponse(Response):
    """A response whose header names are sent exactly as given, plus Content-Length."""

    def __init__(
        self,
        body: bytes,
        headers: Iterable[tuple[bytes, bytes]],
        status_code: int = 200,
        content_type: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.background = None
        raw = list(headers)
        if content_type is not None:
            raw.append((b"Content-Type", content_type.encode("latin-1")))
        raw.append((b"Content-Length", str(len(body)).encode("ascii")))
        self.raw_headers = raw


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The request body, refused with 10002 past `limit` bytes without reading it all."""
    length = request.headers.get("content-length")
    if length is not None and (len(length) > 20 or not length.strip().isdigit()
                               or int(length) > limit):
        raise ApiError(Errno.BAD_PACKET, f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with contextlib.aclosing(request.stream()) as stream:
            async for chunk in stream:
                size += len(chunk)
                if size > limit:
                    raise ApiError(Errno.BAD_PACKET, f"body larger than {limit} bytes")
                chunks.append(chunk)
    except ClientDisconnect:
        raise ClientGone from None
    return b"".join(chunks)


class _Entry:
    """The ASGI endpoint behind the catch-all route (every method, every path)."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        response = await self.respond(request)
        await response(scope, receive, send)

    async def respond(self, request: Request) -> Response:
        path = request.url.path
        if request.method == "OPTIONS":
            return RawResponse(b"", PREFLIGHT_HEADERS)
        if not path.startswith(API_PREFIX):
            return RawResponse(b"Not Found", CORS_HEADERS, 404, "text/plain; charset=utf-8")
        try:
            answer = await dispatch(
                self.ctx,
                method=request.method,
                path=path,
                query=request.query_params,
                headers=request.headers,
                client_ip=request.client.host if request.client else "",
                read_body=lambda: read_body(request),
            )
        except ClientGone:
            return RawResponse(b"", CORS_HEADERS)
        if answer.file is not None:
            disposition = f'attachment; filename="{answer.file.filename}"'.encode("latin-1")
            headers = (*CORS_HEADERS, (b"Content-Disposition", disposition))
            return RawResponse(answer.file.body, headers, 200, answer.file.content_type)
        body = codec.encode(answer.payload, answer.fmt)
        return RawResponse(body, CORS_HEADERS, 200, answer.fmt.content_type)


def build_app(ctx: ApiContext) -> Starlette:
    """The ASGI application serving both API dialects for `ctx`."""
    return Starlette(routes=[Route("/{path:path}", endpoint=_Entry(ctx))])


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


def _drop_idle_tls(server: uvicorn.Server) -> None:
    """Close the idle connections of a TLS server at once (abort), the busy ones after
    their response, as uvicorn's shutdown does. A TLS close waits for the peer's
    close_notify, which an idle keep-alive client never sends: uvicorn would wait for it
    past its graceful-shutdown timeout and log an error."""
    for connection in list(server.server_state.connections):
        connection.shutdown()  # idle: close (TLS: starts the close_notify exchange)
        transport = getattr(connection, "transport", None)  # uvloop's is no BaseTransport
        if transport is not None and transport.is_closing():
            transport.abort()


class ApiServer:
    """Runs an ASGI app with uvicorn in the current event loop; `start()` binds, `stop()` ends.

    `port` is the bound port (useful after binding port 0). uvicorn's own `serve()` is not
    used because it installs process signal handlers; the app owns those. With
    `ssl_context` (a context, or a function called by `start()` that returns one) the
    server speaks HTTPS only on its port; with `guard` (`ippbx.api.guard`) idle and
    half-sent requests are cut and connections capped.
    """

    def __init__(
        self,
        app: ASGIApp,
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
        self.guard = guard  # request deadline and connection caps (None: uvicorn's own)
        self._sock: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._ticker: asyncio.Task[None] | None = None

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
        if self._server is not None:
            raise RuntimeError("ApiServer already started")
        context: ssl.SSLContext | None = None
        if self.ssl_context is not None:
            source = self.ssl_context
            context = source if isinstance(source, ssl.SSLContext) else source()
        sock = _bind(self.host, self.requested_port)
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.requested_port,
            http="httptools" if self.guard is None else self.guard.protocol(),
            ws="none",
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=3,
        )
        config.load()
        # uvicorn builds its context from certificate files in load(); startup() hands
        # config.ssl to create_server(), so a ready context goes there.
        config.ssl = context
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        try:
            await server.startup(sockets=[sock])
        except BaseException:
            sock.close()
            raise
        self._sock, self._server = sock, server
        # main_loop refreshes the Date header every second and returns once should_exit.
        self._ticker = asyncio.create_task(server.main_loop(), name="ippbx-api-ticker")
        log.info("API listening on %s", self.url)

    async def stop(self) -> None:
        server, sock, ticker = self._server, self._sock, self._ticker
        if server is None or sock is None:
            return
        url = self.url
        server.should_exit = True
        if ticker is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ticker, timeout=2)
        if self.tls:
            _drop_idle_tls(server)
        await server.shutdown(sockets=[sock])
        self._server = self._ticker = self._sock = None
        log.info("API on %s stopped", url)
