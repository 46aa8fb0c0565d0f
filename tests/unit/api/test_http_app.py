"""The HTTP side of the API (`ippbx.api.http_app`) without sockets: which handler a path
reaches (the pages beside the API, the API, 404), and the request counters."""

from __future__ import annotations

from collections.abc import Callable

from ippbx.api.http_app import ApiApp
from ippbx.api.http_server import HttpRequest, HttpResponse
from ippbx.api.request import ApiContext
from ippbx.api.sessions import SessionManager
from ippbx.config import parse_config
from ippbx.pbx.calls import CallRegistry


def page(name: bytes) -> Callable[[HttpRequest], HttpResponse]:
    def handler(request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, (), name + b" " + request.path.encode())
    return handler


def app() -> ApiApp:
    config = parse_config('[api]\npassword = "pw"\n')
    ctx = ApiContext(config=config, registry=CallRegistry(),
                     sessions=SessionManager(config.api))
    return ApiApp(ctx, [("/api/openapi.json", page(b"doc")), ("/metrics", page(b"metrics")),
                        ("/console", page(b"console")), ("/", page(b"root"))])


def get(api: ApiApp, path: str, method: str = "GET") -> HttpResponse:
    return api(HttpRequest(method, path, b"", [], b"", "127.0.0.1"))


def test_each_path_reaches_its_page_or_the_api() -> None:
    api = app()
    assert get(api, "/metrics").body == b"metrics /metrics"
    assert get(api, "/console/api/calls").body == b"console /console/api/calls"
    assert get(api, "/console").body == b"console /console"
    assert get(api, "/consoles").body == b"root /consoles"  # (not under /console)
    assert get(api, "/").body == b"root /"
    assert get(api, "/api/openapi.json").body == b"doc /api/openapi.json"
    envelope = get(api, "/api/v0.0.1/heartbeat", "POST")
    assert envelope.status == 200 and b'"errno":"20005"' in envelope.body  # (no token)
    assert get(api, "/metrics", "OPTIONS").status == 200  # (CORS preflight, as before)


def test_without_pages_outside_the_api_is_404() -> None:
    config = parse_config('[api]\npassword = "pw"\n')
    api = ApiApp(ApiContext(config=config, registry=CallRegistry(),
                            sessions=SessionManager(config.api)))
    assert get(api, "/").status == 404 and get(api, "/metrics").status == 404


def test_api_requests_are_counted_by_endpoint_and_errno() -> None:
    api = app()
    for path in ("/api/v0.0.1/heartbeat", "/api/v1.1.0/heartbeat", "/api/v0.0.1/nothing/here",
                 "/api/v0.0.1/made-up"):
        get(api, path, "POST")
    get(api, "/metrics")  # (pages are not API requests)
    assert api.requests == {("heartbeat", 20005): 2, ("unknown", 10003): 2}
