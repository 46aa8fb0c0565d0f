"""`login`, `heartbeat` and `logout`: thin wrappers over `ippbx.api.sessions`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ippbx.api.request import ApiRequest, Endpoint


def login(req: ApiRequest) -> Mapping[str, Any]:
    session = req.ctx.sessions.login(
        req.text("username"),
        req.text("password"),
        req.client_ip,
        req.dialect.name,
        port=req.text("port"),
        url=req.text("url"),
        urltag=req.text("urltag", "urlflag"),
        version=req.text("version"),
    )
    return {"token": session.token}


def heartbeat(req: ApiRequest) -> Mapping[str, Any]:
    req.ctx.sessions.heartbeat(
        req.token,
        ipaddr=req.text("ipaddr"),
        port=req.text("port"),
        url=req.text("url"),
        urltag=req.text("urltag", "urlflag"),
    )
    return {}


def logout(req: ApiRequest) -> Mapping[str, Any]:
    req.ctx.sessions.logout(req.token)
    return {}


ENDPOINTS = [
    Endpoint("login", login, auth=False, body_required=True),
    Endpoint("heartbeat", heartbeat),
    Endpoint("logout", logout),
]
