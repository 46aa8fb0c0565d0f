"""The OpenAPI 3.1 description of both API dialects, served at `/api/openapi.json`.

`document()` builds it from the endpoints the server serves (`ippbx.api.dialects.ENDPOINTS`,
each on both version prefixes, with its methods) and what each takes and answers
(`ippbx.api.api_schemas.DOCS`); an endpoint without a description there is an error, so
a new endpoint cannot be served undescribed without a test failing. The errnos of each
operation are those of the dispatch steps it goes through (`ippbx.api.dialects`: format,
body size, token, body) plus the handler's own, as the dialect shows them.

Every answer is HTTP 200: `oneOf` the success envelope (a component per endpoint, and per
dialect where the dialects differ) and the failed one with the errnos that operation can
answer. v0.0.1 takes and answers XML too (`application/xml`, root `<xml>`); the schemas
carry OpenAPI `xml` hints for the lists (`wrapped` with `<item>` entries for configuration
lists, repeated elements for the call lists), and `from_xml` turns a decoded XML answer
into the JSON shape by them, so one schema checks both.

`page` serves the document (built once, the bytes kept); `python -m ippbx.api.openapi`
prints it, and with `--index` the endpoint table of docs/api.md.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from functools import cache
from importlib import metadata
from typing import Any

from ippbx.api.api_schemas import DOCS, ERRNO_TEXT, EndpointDoc, Param, Schema, obj, text
from ippbx.api.dialects import API_PREFIX, DIALECTS, ENDPOINTS, OPENVOX, Dialect
from ippbx.api.errors import Errno
from ippbx.api.http_server import HttpRequest, HttpResponse
from ippbx.api.request import Endpoint

PATH = "/api/openapi.json"
JSON = "application/json"
XML = "application/xml"

TAGS: dict[str, tuple[str, str]] = {
    # handler module → (tag, its description)
    "auth": ("Authentication", "Log in for a token, keep it alive, log out."),
    "calls": ("Calls", "The live calls on the trunks."),
    "control": ("Call control", "Hang up, hold, mute, transfer, click-to-call, prompts, "
                                "monitoring."),
    "inbound": ("Inbound call control", "Accept or refuse an inbound call held for a "
                                        "decision (Yeastar's)."),
    "ivr": ("IVR, ring group and queue", "The IVR query; calls into an IVR, a ring group "
                                         "or a queue."),
    "queues": ("Queues", "Queue settings, live state, agents."),
    "paging": ("Paging groups", "The paging groups."),
    "conferences": ("Conferences", "Conference rooms: settings, who is in them, invite, "
                                   "mute, kick."),
    "system": ("System", "The PBX itself."),
    "config": ("Configuration queries", "Extensions, trunks and routes, with live status."),
    "config_changes": ("Configuration changes", "Add, change, delete (admin API users; "
                                                "applied live, stored)."),
    "cdr": ("CDR", "Call detail records as CSV, behind a one-time key."),
    "recording": ("Recordings", "Call recordings, behind a one-time key."),
    "voicemail": ("Voicemail", "The messages in the mailboxes."),
}

_CORS_HEADERS = {
    "Access-control-allow-origin": {
        "required": True, "schema": {"type": "string", "const": "*"},
        "description": "on every answer (with this casing)"},
    "Access-control-allow-methods": {
        "required": True, "schema": {"type": "string",
                                     "const": "GET, POST, OPTIONS, PUT, DELETE"},
        "description": "on every answer (with this casing)"},
}
_SECURITY = [{"token": []}, {"access_token": []}, {"bearer": []}]

_OVERVIEW = """\
ippbx serves two vendor dialects of one API on one port: `/api/v0.0.1/…` is OpenVox UC \
(JSON, or XML), `/api/v1.1.0/…` is Yeastar S-Series (JSON only). Every endpoint is \
served under both prefixes.

- Every answer is **HTTP 200**: `{"status":"Success", …}` or \
`{"status":"Failed","errno":"N"}`; every scalar is a string (one exception: \
`queuestatus/query`'s `callercount`). Each operation lists the errnos it can answer.
- `?type=json|xml` (v0.0.1) picks the request and answer format; without it a body \
starting with `<` is XML. v1.1.0 takes `json` only (20000 otherwise). XML is `<xml>` \
with one element per field; a configuration list is `<key><item id="N">…</item></key>`, \
a call list one `<outbound>`/`<inbound>` element per call.
- Request fields are text (numbers are taken as their source text; `null` is absent); \
an object, array or boolean where text is expected is 10004. Unknown fields are ignored.
- Log in (`login`, the MD5 of the password) for a token, then send it as `?token=`, \
`?access_token=` or `Authorization: Bearer`.
- Methods: POST; the downloads also GET (a plain link). Any other method: 20001.
- Paths outside `/api/`: HTTP 404. `OPTIONS` on any path: 200 with the CORS headers.
"""


def _camel(name: str) -> str:
    """`outbound/query` → `OutboundQuery`."""
    return "".join(part.capitalize() for part in name.replace("/", "_").split("_"))


def _version() -> str:
    try:
        return metadata.version("ippbx")
    except metadata.PackageNotFoundError:  # (run from the source tree, not installed)
        return "0.0.0"


def errnos(dialect: Dialect, endpoint: Endpoint, doc: EndpointDoc) -> list[int]:
    """The errnos an operation of `endpoint` can answer in `dialect`, as it shows them."""
    found = {dialect.malformed, Errno.BAD_PACKET, Errno.INTERNAL, *doc.errnos}
    if Errno.BAD_PACKET is not dialect.malformed:  # an XML body where only JSON is taken
        found.add(Errno.ONLY_JSON)
    if endpoint.auth:
        found |= {Errno.IP_LOCKED, Errno.TOKEN_MISSING, Errno.NO_SUCH_TOKEN,
                  Errno.TOKEN_EXPIRED}
    if endpoint.body_required:
        found.add(Errno.EMPTY_BODY)
    return sorted({dialect.errno(errno) for errno in found})


def _failed(numbers: list[int]) -> Schema:
    return {
        "title": "Failed",
        "type": "object",
        "properties": {
            "status": {"type": "string", "const": "Failed"},
            "errno": {"type": "string", "enum": [str(n) for n in numbers],
                      "description": "see the operation's description"},
        },
        "required": ["status", "errno"],
        "additionalProperties": False,
        "xml": {"name": "xml"},
    }


def _request_schema(fields: Mapping[str, Param]) -> Schema:
    properties = {name: _field_schema(p) for name, p in fields.items()}
    schema: Schema = {"type": "object", "properties": properties, "xml": {"name": "xml"}}
    required = [name for name, p in fields.items() if p.required]
    if required:
        schema["required"] = required
    return schema


def _field_schema(param: Param) -> Schema:
    schema: Schema = {"type": "string", "description": param.description}
    if param.required:
        schema["minLength"] = 1
    if param.enum:
        schema["enum"] = list(param.enum)
    if param.example is not None:
        schema["examples"] = [param.example]
    return schema


def _example(fields: Mapping[str, Param]) -> dict[str, str] | None:
    example = {name: p.example for name, p in fields.items() if p.example is not None}
    if any(p.required and p.example is None for p in fields.values()):
        return None  # (no example rather than one without a required field)
    return example or None


def _type_parameter(dialect: Dialect) -> Schema:
    if len(dialect.formats) > 1:
        return {"name": "type", "in": "query", "required": False,
                "description": "format of the body and of the answer (case-insensitive; "
                               "absent: a body starting with `<` is XML, anything else "
                               "JSON; anything but json/xml: 10002)",
                "schema": {"type": "string", "enum": ["json", "xml"]}}
    return {"name": "type", "in": "query", "required": False,
            "description": "only `json` (anything else: 20000)",
            "schema": {"type": "string", "enum": ["json"]}}


class _Builder:
    """The document under construction: paths, and the components they refer to."""

    def __init__(self) -> None:
        self.schemas: dict[str, Schema] = {}
        self.paths: dict[str, Any] = {}

    def component(self, name: str, schema: Schema) -> Schema:
        known = self.schemas.setdefault(name, schema)
        if known != schema:
            raise ValueError(f"two different schemas named {name}")
        return {"$ref": f"#/components/schemas/{name}"}

    def success(self, name: str, dialect: Dialect, doc: EndpointDoc) -> Schema:
        answer = doc.answer_for(dialect)
        same = all(doc.answer_for(d) == answer for d in DIALECTS.values())
        suffix = "" if same else dialect.name.capitalize()
        schema = obj({"status": text(const="Success"), **answer}, optional=doc.optional)
        schema = {"title": "Success", **schema, "xml": {"name": "xml"}}
        return self.component(f"{_camel(name)}Answer{suffix}", schema)

    def operation(self, dialect: Dialect, name: str, endpoint: Endpoint, method: str,
                  doc: EndpointDoc) -> Schema:
        module = endpoint.handler.__module__.rpartition(".")[2]
        numbers = errnos(dialect, endpoint, doc)
        media = [JSON, XML] if len(dialect.formats) > 1 else [JSON]
        envelope = self.component(
            f"{_camel(name)}Result{dialect.name.capitalize()}",
            {"oneOf": [self.success(name, dialect, doc), _failed(numbers)]})
        content: dict[str, Any] = {m: {"schema": envelope} for m in media}
        headers = dict(_CORS_HEADERS)
        what = "`Success` with the payload, or `Failed` with an errno"
        if doc.file is not None:
            kind, description = doc.file
            content[kind] = {"schema": {"type": "string", "description": description}} \
                if kind.startswith("text/") else {}
            headers["Content-Disposition"] = {
                "schema": {"type": "string"},
                "description": "`attachment; filename=\"…\"` with the file"}
            what = f"the file ({kind}: {description}), or `Failed` with an errno"
        description = doc.description + ("\n\n" if doc.description else "") + \
            "Errnos:\n" + "\n".join(f"- {n}: {ERRNO_TEXT[Errno(n)]}" for n in numbers)
        operation: Schema = {
            "operationId": f"{dialect.name}.{name.replace('/', '.')}"
                           + (".get" if method == "GET" else ""),
            "tags": [TAGS[module][0]],
            "summary": doc.summary,
            "description": description,
            "parameters": [_type_parameter(dialect)],
            "responses": {"200": {"description": f"HTTP 200 always: {what}",
                                  "headers": headers, "content": content}},
        }
        if not endpoint.auth:
            operation["security"] = []
        if method == "GET":
            operation["parameters"] += [
                {"name": field, "in": "query", "required": p.required,
                 "description": p.description,
                 "schema": {k: v for k, v in _field_schema(p).items()
                            if k != "description"}}
                for field, p in doc.fields.items()]
        elif doc.fields or endpoint.body_required:
            body = self.component(f"{_camel(name)}Request", _request_schema(doc.fields))
            example = _example(doc.fields)
            operation["requestBody"] = {
                "required": endpoint.body_required,
                "content": {m: {"schema": body} | ({"example": example} if example and
                                                   m == JSON else {})
                            for m in media},
            }
        return operation

    def endpoint(self, dialect: Dialect, name: str, endpoint: Endpoint) -> None:
        doc = DOCS[name]
        self.paths[f"{API_PREFIX}{dialect.version}/{name}"] = {
            method.lower(): self.operation(dialect, name, endpoint, method, doc)
            for method in sorted(endpoint.methods, reverse=True)  # (POST, then GET)
        }


def undescribed() -> list[str]:
    """Endpoints served without a description in `api_schemas.DOCS`."""
    return sorted(set(ENDPOINTS) - set(DOCS))


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of every endpoint on both dialects (built anew)."""
    missing = undescribed()
    if missing:
        raise LookupError(f"no description in ippbx.api.api_schemas.DOCS for {missing}")
    builder = _Builder()
    for dialect in DIALECTS.values():
        for name, endpoint in ENDPOINTS.items():
            builder.endpoint(dialect, name, endpoint)
    builder.paths[PATH] = {"get": {
        "operationId": "openapi",
        "tags": ["Description"],
        "summary": "This description",
        "security": [],
        "responses": {"200": {"description": "the OpenAPI 3.1 document",
                              "content": {JSON: {"schema": {"type": "object"}}}}},
    }}
    used = {TAGS[e.handler.__module__.rpartition(".")[2]] for e in ENDPOINTS.values()}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ippbx HTTP API (OpenVox v0.0.1 and Yeastar v1.1.0 dialects)",
            "version": _version(),
            "description": _OVERVIEW + "\nErrnos:\n\n" + "\n".join(
                f"- {int(e)}: {text}" for e, text in sorted(ERRNO_TEXT.items())),
        },
        "tags": [{"name": tag, "description": about}
                 for tag, about in TAGS.values() if (tag, about) in used]
        + [{"name": "Description", "description": "This document."}],
        "security": _SECURITY,
        "paths": builder.paths,
        "components": {
            "schemas": builder.schemas,
            "securitySchemes": {
                "token": {"type": "apiKey", "in": "query", "name": "token",
                          "description": "the token from login"},
                "access_token": {"type": "apiKey", "in": "query", "name": "access_token",
                                 "description": "the token from login"},
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "the token from login"},
            },
        },
    }


@cache
def body() -> bytes:
    """The document as served (built on first use, then kept)."""
    return json.dumps(document(), ensure_ascii=False, separators=(",", ":")).encode()


_HEADERS = ((b"Content-Type", b"application/json"), (b"Access-control-allow-origin", b"*"))
_NOT_FOUND = HttpResponse(404, ((b"Content-Type", b"text/plain; charset=utf-8"),),
                          b"Not Found")


def page(request: HttpRequest) -> HttpResponse:
    """`GET /api/openapi.json` (and HEAD): the document; other methods 405."""
    if request.path != PATH:
        return _NOT_FOUND
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(405, ((b"Allow", b"GET, HEAD"),
                                  (b"Content-Type", b"text/plain; charset=utf-8")),
                            b"Method Not Allowed")
    return HttpResponse(200, _HEADERS, body())


# -- reading answers against the document -----------------------------------------------------
def resolve(doc: Mapping[str, Any], schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """`schema` with a local `$ref` followed."""
    while "$ref" in schema:
        node: Any = doc
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def answer_schema(doc: Mapping[str, Any], path: str, method: str = "post",
                  media: str = JSON) -> Mapping[str, Any]:
    """The answer schema of an operation (the `oneOf` of its two envelopes)."""
    return doc["paths"][path][method]["responses"]["200"]["content"][media]["schema"]


def envelope(doc: Mapping[str, Any], schema: Mapping[str, Any], value: Any
             ) -> Mapping[str, Any]:
    """Of an answer schema (`oneOf` Success, Failed), the envelope `value` claims to be by
    its `status` (the whole schema when it claims neither)."""
    schema = resolve(doc, schema)
    status = value.get("status") if isinstance(value, dict) else None
    for option in schema.get("oneOf", ()):
        option = resolve(doc, option)
        if option.get("properties", {}).get("status", {}).get("const") == status:
            return option
    return schema


def from_xml(doc: Mapping[str, Any], schema: Mapping[str, Any], value: Any) -> Any:
    """A decoded XML answer (`codec.decode_xml`) in the shape its JSON twin has, read by
    the `xml` hints of `schema` (an answer schema: the envelope is picked by `status`).
    What does not fit the schema is left as it is, for the validator to refuse."""
    schema = resolve(doc, schema)
    if "oneOf" in schema:
        option = envelope(doc, schema, value)
        return value if option is schema else from_xml(doc, option, value)
    kind = schema.get("type")
    if kind == "object":
        if value == "":  # (an element with nothing inside)
            value = {}
        if not isinstance(value, dict):
            return value
        properties = schema.get("properties", {})
        out = {}
        for name, item in value.items():
            sub = properties.get(name)
            out[name] = item if sub is None else from_xml(doc, sub, item)
        for name, sub in properties.items():  # a plain list with no entry: no element
            sub = resolve(doc, sub)
            if name not in out and sub.get("type") == "array" and \
                    not sub.get("xml", {}).get("wrapped") and name in schema.get("required", ()):
                out[name] = []
        return out
    if kind == "array":
        entries: Any = value
        if schema.get("xml", {}).get("wrapped"):
            if entries == "":
                return []
            if not isinstance(entries, dict) or set(entries) != {"item"}:
                return value
            entries = entries["item"]
        if not isinstance(entries, list):
            entries = [entries]
        return [from_xml(doc, schema.get("items", {}), entry) for entry in entries]
    if kind == "integer" and isinstance(value, str) and value.isdigit():
        return int(value)
    return value


# -- the endpoint table of docs/api.md --------------------------------------------------------
def markdown_index(doc: Mapping[str, Any] | None = None) -> str:
    """The table of every endpoint (one row per name, both prefixes) for docs/api.md."""
    doc = document() if doc is None else doc
    prefix = f"{API_PREFIX}{OPENVOX.version}/"
    rows = ["| Endpoint | Methods | What |", "|---|---|---|"]
    for path, item in doc["paths"].items():
        if not path.startswith(prefix):
            continue
        methods = ", ".join(m.upper() for m in item)
        first = next(iter(item.values()))
        rows.append(f"| `{path.removeprefix(prefix)}` | {methods} | {first['summary']} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print the document (or, with `--index`, the endpoint table of docs/api.md)."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["--index"]:
        sys.stdout.write(markdown_index())
    elif not args:
        sys.stdout.write(json.dumps(document(), ensure_ascii=False, indent=2) + "\n")
    else:
        sys.stderr.write("usage: python -m ippbx.api.openapi [--index]\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
