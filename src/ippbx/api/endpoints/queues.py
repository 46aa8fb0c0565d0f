"""The call-queue endpoints: settings, live state, agents signing in and out, pausing.

- `queue/query {queueid?}`: the queues (one, a comma list, or absent/`all` for every
  one, in config order), each with the vendor's keys in the vendor's order;
  `dynamicagents` lists the dynamic agents signed in now, `agents` the static ones.
  Values ippbx has no setting for are shown as the feature behaves: no hold-time
  announcement (`announceholdtime` `off`), no agent announcement (`agentannounce` "").
- `queuestatus/query {queueid}`: `{"queue": {"queuenumber", "queuestatus": {"members":
  [{"agent", "agentstatus"}], "callercount"}}}`, the agent codes of the vendors (1 idle,
  2 in a call, 5 unregistered, 6 ringing, 7 in a call and ringing, 8 on hold, 9 paused,
  10 wrapping up) and `callercount` a JSON number as in the vendor's example. After
  them, ippbx adds `callers`: each waiting call's `callid`, `from`, `waittime` (s) and
  `position`.
- `queue/add_dynamicagent {queueid, extid, password?}` and `queue/del_dynamicagent
  {queueid, extid, password}` (the password is optional to sign in and required to sign
  out, as the vendor's pages have it; when given it must be the queue's);
  `queue/pause_agent` / `queue/unpause_agent {queueid, extid}` for any agent.

Errors: 10013 no such queue, 10006 no such extension (or not an agent of the queue, not
one it lets sign in, or a static agent asked to sign out), 10032 a wrong password,
10004 a missing field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ippbx.api.codec import ItemList, JsonNumber
from ippbx.api.endpoints.calls import parse_ids
from ippbx.api.errors import ApiError, Errno
from ippbx.api.request import ApiRequest, Endpoint
from ippbx.pbx.queues import LiveQueue, QueueError, Queues

STRATEGY_NAMES = {"ringall": "Ring All", "roundrobin": "Rrmemory",
                  "leastrecent": "Least Recent", "fewestcalls": "Fewest Calls",
                  "random": "Random", "linear": "Linear"}
_ERRNOS = {QueueError.NO_QUEUE: Errno.QUEUE_NOT_FOUND,
           QueueError.WRONG_PASSWORD: Errno.WRONG_PASSWORD}


def _queues(req: ApiRequest) -> Queues:
    if req.ctx.queues is None:
        raise ApiError(Errno.QUEUE_NOT_FOUND)
    return req.ctx.queues


def _on_off(value: bool) -> str:
    return "on" if value else "off"


def queue_view(live: LiveQueue) -> dict[str, Any]:
    q = live.config
    return {
        "queuenumber": q.number,
        "queuename": q.name,
        "password": q.password,
        "agents": ",".join(q.agents),
        "announcefreq": str(q.announce_seconds if q.announce_position else 0),
        "announceholdtime": "off",
        "announcepos": _on_off(q.announce_position),
        "joinempty": _on_off(q.join_empty),
        "leavewhenempty": _on_off(q.leave_when_empty),
        "retry": str(q.retry_seconds),
        "ringstrategy": STRATEGY_NAMES[q.strategy],
        "agenttimeout": str(q.ring_seconds),
        "wrapuptime": str(q.wrapup_seconds),
        "dynamicagents": ",".join(a.extension for a in live.agents.values() if a.dynamic),
        "agentannounce": "",
        "musiconhold": q.moh or "default",
        "maxwaittime": str(q.max_wait),
    }


def query(req: ApiRequest) -> Mapping[str, Any]:
    queues = _queues(req).queues
    ids = parse_ids(req.text("queueid"))
    if ids is None:
        chosen = list(queues.values())
    else:
        chosen = [queues[i] for i in dict.fromkeys(ids) if i in queues]
        if not chosen:
            raise ApiError(Errno.QUEUE_NOT_FOUND)
    return {"queues": ItemList(queue_view(live) for live in chosen)}


def status(req: ApiRequest) -> Mapping[str, Any]:
    number = req.require("queueid").strip()
    try:
        state = _queues(req).state(number)
    except QueueError as exc:
        raise _error(exc) from None
    return {"queue": {
        "queuenumber": state.number,
        "queuestatus": {
            "members": ItemList({"agent": agent, "agentstatus": str(int(code))}
                                for agent, code in state.agents),
            "callercount": JsonNumber(len(state.callers)),
            "callers": ItemList({"callid": c.callid, "from": c.from_number,
                                 "waittime": str(c.waited), "position": str(c.position)}
                                for c in state.callers),
        },
    }}


def _error(exc: QueueError) -> ApiError:
    return ApiError(_ERRNOS.get(exc.reason, Errno.EXTENSION_NOT_FOUND), exc.reason)


def _agent_change(req: ApiRequest, what: str) -> Mapping[str, Any]:
    queues = _queues(req)
    number = req.require("queueid").strip()
    ext = req.require("extid").strip()
    try:
        if what == "in":
            queues.sign_in(number, ext, req.text("password"))
        elif what == "out":
            queues.sign_out(number, ext, req.require("password"))
        else:
            queues.pause(number, ext, what == "pause")
    except QueueError as exc:
        raise _error(exc) from None
    return {}


def add_dynamicagent(req: ApiRequest) -> Mapping[str, Any]:
    return _agent_change(req, "in")


def del_dynamicagent(req: ApiRequest) -> Mapping[str, Any]:
    return _agent_change(req, "out")


def pause_agent(req: ApiRequest) -> Mapping[str, Any]:
    return _agent_change(req, "pause")


def unpause_agent(req: ApiRequest) -> Mapping[str, Any]:
    return _agent_change(req, "unpause")


ENDPOINTS = [
    Endpoint("queue/query", query),
    Endpoint("queuestatus/query", status),
    Endpoint("queue/add_dynamicagent", add_dynamicagent),
    Endpoint("queue/del_dynamicagent", del_dynamicagent),
    Endpoint("queue/pause_agent", pause_agent),
    Endpoint("queue/unpause_agent", unpause_agent),
]
