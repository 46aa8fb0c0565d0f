"""The HTTP side of every API request, around `ippbx.api.dialects.dispatch`: the handler
`ippbx.api.http_server` calls with each whole request.

- `OPTIONS` on any path: 200, the two CORS headers and `Access-Control-Allow-Headers`.
- The pages (`pages`: a path prefix and its handler, e.g. `/metrics`, `/console`), each
  with the paths under it; a page under `/api/` (`/api/openapi.json`) is that path only.
- Any other path outside `/api/`: HTTP 404 (with the CORS headers).
- Anything else under `/api/`: HTTP 200 with the envelope from `dispatch`.

Each API request is counted by endpoint and errno in `requests` (a plain counter the
metrics read when scraped).

No framework sits in between: the path is matched as a string, the query string is split
only when the request has one, and the one header the API reads (`Authorization`) is
picked from the header list. A body over `codec.MAX_BODY` never reaches here (the server
drops it and says so); `dispatch` answers it with errno 10002.

Header names are written with the vendor's casing (`Access-control-allow-origin`). A call
query's answer (`codec.EncodedList`) is sent as its pieces when it is larger than
`STREAM_AT` bytes, without being joined.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from urllib.parse import parse_qsl

from ippbx.api import codec
from ippbx.api.dialects import API_PREFIX, Answer, dispatch
from ippbx.api.http_server import Handler, HttpRequest, HttpResponse
from ippbx.api.request import ApiContext

CORS_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"Access-control-allow-origin", b"*"),
    (b"Access-control-allow-methods", b"GET, POST, OPTIONS, PUT, DELETE"),
)
PREFLIGHT_HEADERS = (*CORS_HEADERS, (b"Access-Control-Allow-Headers", b"Content-Type"))

STREAM_AT = 256 * 1024
"""Answers larger than this (bytes) are sent in pieces."""
PIECE = 64 * 1024
"""About how large (bytes) each piece of a large answer is."""

_HEADERS = {
    fmt: (*CORS_HEADERS, (b"Content-Type", fmt.content_type.encode("latin-1")))
    for fmt in codec.Format
}
_PREFLIGHT = HttpResponse(200, PREFLIGHT_HEADERS, b"")
_NOT_FOUND = HttpResponse(404, (*CORS_HEADERS, (b"Content-Type", b"text/plain; charset=utf-8")),
                          b"Not Found")


def parse_query(raw: bytes) -> dict[str, str]:
    """`a=1&b=` as a dict (blank values kept; a repeated name: the last one wins)."""
    if not raw:
        return {}
    text = raw.decode("latin-1")
    if "%" not in text and "+" not in text:
        if "&" not in text:  # (one parameter, the token: the usual query)
            name, _, value = text.partition("=")
            return {name: value}
        out: dict[str, str] = {}
        for part in text.split("&"):
            if part:
                name, _, value = part.partition("=")
                out[name] = value
        return out
    return dict(parse_qsl(text, keep_blank_values=True))


def _authorization(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            return value.decode("latin-1")
    return None


def _response(answer: Answer) -> HttpResponse:
    listing = answer.listing
    if listing is not None:
        headers = _HEADERS[listing.fmt]
        if listing.size <= STREAM_AT:
            return HttpResponse(200, headers, listing.body())
        return HttpResponse(200, headers, list(listing.pieces(PIECE)), listing.size)
    file = answer.file
    if file is not None:
        disposition = f'attachment; filename="{file.filename}"'.encode("latin-1")
        return HttpResponse(200, (*CORS_HEADERS, (b"Content-Disposition", disposition),
                                  (b"Content-Type", file.content_type.encode("latin-1"))),
                            file.body)
    return HttpResponse(200, _HEADERS[answer.fmt], codec.encode(answer.payload, answer.fmt))


Page = tuple[str, Handler]
"""A path prefix (`/metrics`) and the handler of it and of every path under it."""


def _page_for(pages: Sequence[Page], path: str) -> Handler | None:
    for prefix, handler in pages:
        if prefix == "/" or path == prefix or path.startswith(prefix + "/"):
            return handler
    return None


class ApiApp:
    """The request handler serving both API dialects for `ctx`, and `pages` beside them
    (more specific prefixes first; `/` last catches what is left outside `/api/`)."""

    def __init__(self, ctx: ApiContext, pages: Sequence[Page] = ()) -> None:
        self.ctx = ctx
        # (an API path pays one dict lookup for the pages)
        self._api_pages = {p: h for p, h in pages if p.startswith(API_PREFIX)}
        self._other_pages = tuple(p for p in pages if not p[0].startswith(API_PREFIX))
        self.requests: defaultdict[tuple[str, int], int] = defaultdict(int)
        """API requests answered, by (endpoint, errno); errno 0 is Success."""

    def __call__(self, request: HttpRequest) -> HttpResponse:
        method = request.method
        path = request.path
        if method == "OPTIONS":
            return _PREFLIGHT
        if not path.startswith(API_PREFIX):
            page = _page_for(self._other_pages, path)
            return _NOT_FOUND if page is None else page(request)
        page = self._api_pages.get(path)
        if page is not None:
            return page(request)
        answer = dispatch(
            self.ctx,
            method=method,
            path=path,
            query=parse_query(request.query),
            authorization=_authorization(request.headers),
            client_ip=request.client,
            body=request.body,
            body_too_large=request.too_large,
        )
        self.requests[answer.endpoint, answer.errno] += 1
        return _response(answer)
