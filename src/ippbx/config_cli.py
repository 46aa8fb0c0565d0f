"""`ippbx config|ext|trunk|route …`: the runtime configuration from the command line.

Every subcommand takes `--config FILE` (default: the embedded demo configuration, as
`ippbx serve` does). The file says where the store is (`[store] path`, relative to the
current directory as for `serve`), where the API listens (`[api] listen`; a wildcard
host is reached on loopback) and who may change things (`[api] username`/`password`,
the first API user, always an admin).

Which way a change goes:

- Something answers at `[api] listen`: the server runs. The CLI logs in and uses the
  write API (the OpenVox dialect, `/api/v0.0.1/…`), so the running PBX validates,
  stores and applies the change at once. If the server refuses the login (wrong
  credentials, `allowed_ips`, lockout), that is an error: the store is never changed
  behind a running server's back, which would not see it.
- Nothing listens there (connection refused): the server is stopped. The CLI opens the
  store through `RunningConfig` (the same rules and validation as the server) and makes
  the change there; the next `ippbx serve` starts with it.

The output says which way it went. Lists read the same way (from the server they show
the live status of extensions and trunks); from the store they read without writing.

`config export` and `config import` work on the store whether the server runs or not.
Export writes the file's sections as the file has them (`${NAME}` references kept) and
the objects in force (what a start would take: `RunningConfig.open` over the store,
without writing to it), as TOML that `ippbx serve --config` accepts. Import validates
FILE as `serve` would and replaces every object of the store with FILE's (the sections
stay the `--config` file's); a running server keeps what it has until SIGHUP.

What the API cannot carry: a trunk's `transport` (the vendors' siptrunk endpoints have
no such field), so `--transport` is refused while the server runs (stop it, or export,
edit and import); `inroute/query` does not show an inbound route's `trunk`, so the
server's route list has no TRUNK column. The API answers a refusal with an errno only:
the CLI prints its meaning and, to say why, tries the same change on a copy of the
stored configuration.

With `[store] config = "toml"` the file is the configuration: changes and imports are
refused (edit the file, then SIGHUP); lists and export work.

Passwords: lists never show them. `ext add` without `--password` makes one (20 random
characters, as the API would) and prints it once. `config export` writes them all (it
is a backup); with `--output` the file is created readable by its owner only.

Exit codes: 0 done; 1 the change was refused (nothing changed) or the server could not
be used; 2 a bad configuration or import file, or a change that this mode cannot make.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sqlite3
import sys
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import tomli_w
from pydantic import ValidationError

from ippbx.api.sessions import md5_hex
from ippbx.config import Config, ConfigError, format_validation_error, load_config, parse_config
from ippbx.running_config import KINDS, ChangeRefused, RunningConfig, objects_of
from ippbx.store.config import ConfigTable, StoredConfig, StoredObject
from ippbx.store.sqlite import Store

__all__ = ["COMMANDS", "add_parsers", "main"]

COMMANDS = frozenset({"config", "ext", "trunk", "route"})
API_VERSION_PATH = "/api/v0.0.1/"
TIMEOUT = 5.0  # seconds for one API request (the server answers in milliseconds)
EXPORT_HEADER = ("# ippbx configuration written by `ippbx config export`: the sections of\n"
                 "# the configuration file and the objects in force. It holds passwords.\n")

# what the errno of a refused API request means, in a line
ERRNO_MEANINGS = {
    "10002": "the request was malformed",
    "10003": "not allowed for this API user, or an endpoint this server does not have",
    "10004": "a required field is missing or empty",
    "10006": "no such extension",
    "10017": "configuration change refused, nothing changed: a value that is not valid, a "
             "number or name that is taken, a trunk or route that does not exist, or "
             "something that would be left pointing at nothing",
    "20002": "this address is locked out after failed logins, or not in [api] allowed_ips",
    "20003": "wrong API username or password",
    "20004": "the session token is unknown",
    "20005": "no session token",
    "20006": "the session expired",
    "30001": "an internal error of the server (see its log)",
    "30003": "wrong API username or password",
}


class Failure(Exception):
    """What the command could not do, as one line for the operator, and its exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class ApiRefused(Failure):
    """The server answered `{"status":"Failed","errno":…}`."""

    def __init__(self, endpoint: str, errno: str) -> None:
        meaning = ERRNO_MEANINGS.get(errno, "see the server's API documentation")
        super().__init__(f"the server refused {endpoint}: errno {errno}: {meaning}")
        self.errno = errno


class _ServerDown(Exception):
    """Nothing listens at the API address: the server is not running."""


# -- the configuration file -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Target:
    """The configuration file the command was given, loaded."""

    path: str | None
    config: Config

    @classmethod
    def load(cls, path: str | None) -> Target:
        return cls(path, load_config(path))  # (ConfigError: exit 2)

    @property
    def source(self) -> str:
        return self.path or "the embedded demo configuration"

    @property
    def store_path(self) -> str:
        return self.config.store.path

    @property
    def api_address(self) -> tuple[str, int]:
        """Where to reach the API: a wildcard listen address is reached on loopback."""
        host, port = self.config.api.listen_address
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1", "[::]": "::1"}.get(
            host, host)
        return host, port

    @property
    def api_base(self) -> str:
        host, port = self.api_address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    def text(self) -> str:
        """The configuration file's TOML text."""
        if self.path is None:
            return resources.files("ippbx").joinpath("demo.toml").read_text(encoding="utf-8")
        return Path(self.path).read_text(encoding="utf-8")

    def refuse_toml_mode(self) -> None:
        if self.config.store.config == "toml":
            raise Failure(f"{self.source} has [store] config = \"toml\": the file is the "
                          "configuration; edit it and send the server SIGHUP", 2)


# -- the running server's API -----------------------------------------------------------------
class ApiSession:
    """A logged-in session with the running server's API (OpenVox dialect, JSON)."""

    def __init__(self, client: httpx.Client, base: str, token: str) -> None:
        self.client = client
        self.base = base
        self.token = token

    def call(self, endpoint: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """The answer of `endpoint`, a success (`ApiRefused` otherwise)."""
        try:
            answer = _post(self.client, f"{self.base}{API_VERSION_PATH}{endpoint}",
                           {"token": self.token, "type": "json"}, body)
        except _ServerDown:
            raise Failure(f"the server at {self.base} went away during {endpoint}") from None
        if answer.get("status") != "Success":
            raise ApiRefused(endpoint, str(answer.get("errno", "?")))
        return answer

    def close(self) -> None:
        try:
            self.client.post(f"{self.base}{API_VERSION_PATH}logout",
                             params={"token": self.token, "type": "json"})
        except httpx.HTTPError:
            pass  # (the token expires by itself)
        finally:
            self.client.close()


def _post(client: httpx.Client, url: str, params: Mapping[str, str],
          body: Mapping[str, Any]) -> dict[str, Any]:
    try:
        response = client.post(url, params=params, json=dict(body))
    except httpx.ConnectError as exc:
        raise _ServerDown(str(exc)) from None
    except httpx.HTTPError as exc:
        raise Failure(f"the server at {url} does not answer properly: "
                      f"{exc.__class__.__name__} {exc}") from None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise Failure(f"{url} answered HTTP {response.status_code} with something other "
                      "than the ippbx API's JSON")
    return answer


def connect(target: Target) -> ApiSession | None:
    """A session with the server running at `[api] listen`, or None when nothing listens
    there. A server that refuses the login is a `Failure` (never a reason to go to the
    store instead: the server would not see the change)."""
    api = target.config.api
    base = target.api_base
    # (trust_env off: an HTTP proxy set in the environment is not for our own server)
    client = httpx.Client(timeout=TIMEOUT, trust_env=False)
    try:
        answer = _post(client, f"{base}{API_VERSION_PATH}login", {"type": "json"},
                       {"username": api.username, "password": md5_hex(api.password)})
    except _ServerDown:
        client.close()
        return None
    except BaseException:
        client.close()
        raise
    token = answer.get("token")
    if answer.get("status") != "Success" or not isinstance(token, str) or not token:
        client.close()
        errno = str(answer.get("errno", "?"))
        meaning = ERRNO_MEANINGS.get(errno, "login failed")
        raise Failure(f"the server running at {base} refused the login of API user "
                      f"{api.username!r}: errno {errno} ({meaning}); check [api] username "
                      f"and password in {target.source}. Nothing was changed")
    return ApiSession(client, base, token)


def server_listening(target: Target) -> bool:
    """Does anything answer HTTP at the API address?"""
    try:
        with httpx.Client(timeout=1.0, trust_env=False) as client:
            client.get(target.api_base)
    except httpx.HTTPError:
        return False
    return True


# -- the store ----------------------------------------------------------------------------------
class _ReadOnly(ConfigTable):
    """A store seen through `RunningConfig` without writing to it: what `open` (an import
    of the file) or a change would save is dropped. Lists, export and the explanation of
    a refusal must not change a store a running server may be using."""

    def __init__(self, store: Store) -> None:
        self._inner = store
        self.path = store.path  # (named in RunningConfig.open's error messages)

    def config_load(self) -> StoredConfig | None:
        return self._inner.config_load()

    def config_save(self, objects: Mapping[str, Sequence[StoredObject]], *,
                    expected_revision: int, file_digest: str | None = None,
                    ) -> tuple[int, dict[str, list[int]]]:
        return expected_revision + 1, {kind: [item.id for item in items]
                                       for kind, items in objects.items()}


@contextmanager
def stored_config(target: Target, *, write: bool) -> Iterator[RunningConfig]:
    """The configuration in force by the store's rules (`RunningConfig.open`), changes
    going to the store with `write`, else nowhere. Reading a store that does not exist
    yet does not make one: a first start would take the file's objects."""
    path = target.store_path
    if not write and path != ":memory:" and not Path(path).exists():
        yield RunningConfig.open(target.config, None)
        return
    store = Store(path)
    try:
        yield RunningConfig.open(target.config, store if write else _ReadOnly(store))
    finally:
        store.close()


# -- one command's two ways ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Action:
    """What a command does through the API and on the store; each returns what to print
    (for a change: what was done, e.g. "extension 1006 added")."""

    via_api: Callable[[ApiSession], str]
    via_store: Callable[[RunningConfig], str]
    api_refusal: str = ""  # why this cannot go through the API ("": it can)


def apply_change(target: Target, action: Action) -> int:
    """Make a change through the running server, else in the store; say which."""
    target.refuse_toml_mode()
    session = connect(target)
    if session is not None:
        with closing(session):
            if action.api_refusal:
                raise Failure(action.api_refusal, 2)
            try:
                done = action.via_api(session)
            except ApiRefused as exc:
                why = _explain(target, action)
                raise Failure(exc.message + (f"; why (checked against the store): {why}"
                                             if why else "")) from None
        print(f"{done} via the running server at {session.base}")
        return 0
    host, port = target.api_address
    with stored_config(target, write=True) as running:
        try:
            done = action.via_store(running)
        except ChangeRefused as exc:
            raise Failure(f"refused, nothing changed: {exc}") from None
        revision = running.revision
    print(f"server not running (nothing answers at {host}:{port}): {done} in the store "
          f"{target.store_path} (revision {revision}); `ippbx serve` starts with it")
    return 0


def _explain(target: Target, action: Action) -> str:
    """Why the store's rules refuse `action` ("" when they do not, or cannot tell)."""
    try:
        with stored_config(target, write=False) as running:
            action.via_store(running)
    except ChangeRefused as exc:
        return str(exc)
    except Failure as exc:
        return exc.message
    except (ConfigError, sqlite3.Error):
        return ""
    return ""


def show(target: Target, action: Action) -> int:
    """Print a list from the running server, else from the store; say which on stderr."""
    session = connect(target)
    if session is not None:
        with closing(session):
            text = action.via_api(session)
        note = f"(from the running server at {session.base})"
    else:
        with stored_config(target, write=False) as running:
            text = action.via_store(running)
        note = f"(server not running: from the store {target.store_path})"
    print(text)
    print(note, file=sys.stderr)
    return 0


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain table, columns aligned, two spaces apart."""
    lines = [list(headers), *([str(cell) for cell in row] for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths,
                                                                       strict=True)).rstrip()
                     for line in lines)


# -- option → field tables -------------------------------------------------------------------
# (argparse dest, ippbx field, vendor API field)
Fields = Sequence[tuple[str, str, str]]
EXT_FIELDS: Fields = (
    ("password", "password", "registerpassword"),
    ("name", "name", "username"),
    ("callerid", "callerid", "callerid"),
    ("email", "email", "email"),
    ("mobile", "mobile", "mobile"),
    ("voicemail", "voicemail", "hasvoicemail"),
    ("vm_pin", "vm_pin", "vmsecret"),
    ("max_contacts", "max_contacts", "maxregistrations"),
    ("ring_timeout", "ring_timeout", "ringtimeout"),
    ("dnd", "dnd", "dnd"),
)
TRUNK_FIELDS: Fields = (
    ("type", "type", "trunktype"),
    ("host", "host", "host"),
    ("port", "port", "port"),
    ("username", "username", "username"),
    ("password", "password", "password"),
    ("from_user", "from_user", "fromuser"),
    ("transport", "transport", ""),  # (no vendor field)
)
OUTROUTE_FIELDS: Fields = (
    ("match", "match", "matchpattern"),
    ("trunks", "trunks", "trunks"),
    ("prefix", "prefix", "prefix"),
    ("prepend", "prepend", "prepend"),
    ("extensions", "extensions", "callerid"),
)
INROUTE_FIELDS: Fields = (
    ("did", "did", "did"),
    ("callerid", "callerid", "caller_id"),
    ("trunk", "trunk", "trunk"),
)


def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def fields_of(args: argparse.Namespace, table: Fields,
              lists: Iterable[str] = ()) -> tuple[dict[str, Any], dict[str, str]]:
    """The options given, as ippbx fields and as vendor API fields (flags as on/off;
    the dests in `lists` are comma lists, a list for ippbx, the text for the API)."""
    ours: dict[str, Any] = {}
    theirs: dict[str, str] = {}
    for dest, our_name, their_name in table:
        value = getattr(args, dest, None)
        if value is None:
            continue
        ours[our_name] = _comma_list(value) if dest in lists else value
        if their_name:
            theirs[their_name] = ("on" if value else "off") if isinstance(value, bool) \
                else ",".join(_comma_list(value)) if dest in lists else str(value)
    return ours, theirs


def _nothing_to_change(ours: Mapping[str, Any], what: str) -> None:
    if not ours:
        raise Failure(f"nothing to change for {what}: give at least one option", 2)


def _no_all(names: Sequence[str], what: str) -> None:
    if "all" in names:  # (the API's word for every one: never by accident)
        raise Failure(f"{what} 'all' is not accepted here: name each one", 2)


def _listed(names: Sequence[str]) -> str:
    return ", ".join(names)


# -- config export / import ------------------------------------------------------------------
def _toml_key(key: str) -> str:
    return tomli_w.dumps({key: 0}).rsplit(" = ", 1)[0]


def _toml_value(value: Any) -> str:
    """`value` as a one-line TOML literal (lists and tables inline)."""
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return f"{{ {inner} }}" if inner else "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return tomli_w.dumps({"v": value}).removeprefix("v = ").rstrip("\n")


def objects_toml(objects: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """The objects as the hand-written files have them: one `[[kind]]` table each, one
    `key = value` line per field. (tomli_w alone writes short ones as inline tables.)"""
    blocks = []
    for kind in KINDS:
        for fields in objects.get(kind, ()):
            lines = [f"[[{kind}]]", *(f"{_toml_key(key)} = {_toml_value(value)}"
                                      for key, value in fields.items())]
            blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def export_text(target: Target) -> str:
    """The configuration in force as TOML: the file's sections, the objects in force."""
    with stored_config(target, write=False) as running:
        objects = objects_of(running.config)
    sections = {name: value for name, value in tomllib.loads(target.text()).items()
                if name not in KINDS}
    text = EXPORT_HEADER + "\n" + tomli_w.dumps(sections)
    if any(objects.values()):
        text += "\n" + objects_toml(objects)
    parse_config(text, "the export")  # (what serve would say of it; ConfigError: a bug)
    return text


def cmd_export(target: Target, args: argparse.Namespace) -> int:
    text = export_text(target)
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        raise Failure(f"cannot write {args.output}: {exc.strerror}") from None
    print(f"wrote {args.output}: the sections of {target.source} and the objects of the "
          f"store {target.store_path}")
    return 0


def cmd_import(target: Target, args: argparse.Namespace) -> int:
    imported = load_config(args.file)  # (ConfigError: exit 2)
    target.refuse_toml_mode()
    with stored_config(target, write=True) as running:
        try:
            running.replace(imported, serving=target.config)
        except ChangeRefused as exc:
            raise Failure(f"not imported: {exc}", 2) from None
        except ValidationError as exc:
            raise Failure(f"{args.file}: {format_validation_error(exc)}", 2) from None
        revision = running.revision
    counts = ", ".join(f"{kind.replace('_', ' ')} {len(items)}"
                       for kind, items in objects_of(imported).items())
    print(f"imported the objects of {args.file} into the store {target.store_path} "
          f"(revision {revision}; {counts}); the sections ([sip], [api], …) stay those of "
          f"{target.source}")
    if server_listening(target):
        print(f"the server running at {target.api_base} goes on with its configuration "
              "until it gets SIGHUP (kill -HUP <its pid>): send it now to take this one (a "
              "change made through its API before then is refused once, errno 10017, and "
              "the server takes the import then)")
    else:
        print("no server is running: `ippbx serve` with this configuration starts with it "
              "(a server started meanwhile: send it SIGHUP)")
    return 0


# -- extensions ---------------------------------------------------------------------------------
def cmd_ext_list(target: Target, args: argparse.Namespace) -> int:
    def via_api(session: ApiSession) -> str:
        infos = session.call("extension/query", {}).get("extinfos") or []
        return table(("NUMBER", "NAME", "CALLERID", "VOICEMAIL", "STATUS"),
                     ((i.get("extnumber", ""), i.get("username", ""), i.get("callerid", ""),
                       i.get("hasvoicemail", ""), i.get("status", "")) for i in infos))

    def via_store(running: RunningConfig) -> str:
        return table(("NUMBER", "NAME", "CALLERID", "VOICEMAIL"),
                     ((e.number, e.name, e.callerid or e.number, "on" if e.voicemail else "off")
                      for e in running.config.extensions))

    return show(target, Action(via_api, via_store))


def cmd_ext_add(target: Target, args: argparse.Namespace) -> int:
    number: str = args.number
    ours, theirs = fields_of(args, EXT_FIELDS)
    done = f"extension {number} added"
    if "password" not in ours:
        made = secrets.token_urlsafe(15)  # (20 characters, as extension/add makes one)
        ours["password"] = theirs["registerpassword"] = made
        done += f" (SIP password made up for it: {made})"

    def via_api(session: ApiSession) -> str:
        session.call("extension/add", {"number": number, **theirs})
        return done

    def via_store(running: RunningConfig) -> str:
        running.add("extensions", {"number": number, **ours})
        return done

    return apply_change(target, Action(via_api, via_store))


def cmd_ext_update(target: Target, args: argparse.Namespace) -> int:
    number: str = args.number
    ours, theirs = fields_of(args, EXT_FIELDS)
    if args.new_number is not None:
        ours["number"] = theirs["extnumber"] = args.new_number
    _nothing_to_change(ours, f"extension {number}")
    done = f"extension {number} updated" + (
        f" (now {args.new_number})" if args.new_number not in (None, number) else "")

    def via_api(session: ApiSession) -> str:
        session.call("extension/update", {"extid": number, **theirs})
        return done

    def via_store(running: RunningConfig) -> str:
        running.update("extensions", number, ours)
        return done

    return apply_change(target, Action(via_api, via_store))


def cmd_ext_delete(target: Target, args: argparse.Namespace) -> int:
    numbers: list[str] = list(dict.fromkeys(args.numbers))
    done = f"extension{'s' if len(numbers) > 1 else ''} {_listed(numbers)} deleted"

    def via_api(session: ApiSession) -> str:
        session.call("extension/delete", {"number": ",".join(numbers)})
        return done

    def via_store(running: RunningConfig) -> str:
        running.delete("extensions", numbers)
        return done

    return apply_change(target, Action(via_api, via_store))


# -- trunks -----------------------------------------------------------------------------------
_TRANSPORT_VIA_API = ("--transport cannot be set through the API (the vendors' siptrunk "
                      "endpoints have no such field) and the server is running: stop it and "
                      "run this again, or set it with `ippbx config export`, an edit and "
                      "`ippbx config import`. Nothing was changed")


def cmd_trunk_list(target: Target, args: argparse.Namespace) -> int:
    def via_api(session: ApiSession) -> str:
        states = {t.get("trunkname"): t.get("status", "")
                  for t in session.call("trunklist/query", {}).get("trunkname") or []}
        trunks = session.call("siptrunk/query", {"trunkname": "all"}).get("trunks") or []
        return table(("NAME", "TYPE", "ADDRESS", "STATUS"),
                     ((t.get("trunkname", ""), t.get("trunktype", ""),
                       f"{t.get('host', '')}:{t.get('port', '')}",
                       states.get(t.get("trunkname"), "")) for t in trunks))

    def via_store(running: RunningConfig) -> str:
        return table(("NAME", "TYPE", "ADDRESS", "TRANSPORT"),
                     ((t.name, t.type, f"{t.host}:{t.port}", t.transport)
                      for t in running.config.trunks))

    return show(target, Action(via_api, via_store))


def cmd_trunk_add(target: Target, args: argparse.Namespace) -> int:
    name: str = args.name
    ours, theirs = fields_of(args, TRUNK_FIELDS)
    theirs.setdefault("trunktype", "peer")  # (required by siptrunk/add; ippbx's default)
    done = f"trunk {name} added"

    def via_api(session: ApiSession) -> str:
        session.call("siptrunk/add", {"trunkname": name, **theirs})
        return done

    def via_store(running: RunningConfig) -> str:
        running.add("trunks", {"name": name, **ours})
        return done

    refusal = _TRANSPORT_VIA_API if args.transport is not None else ""
    return apply_change(target, Action(via_api, via_store, refusal))


def _id_of(session: ApiSession, endpoint: str, body: Mapping[str, str], key: str,
           what: str) -> str:
    """The API id of the one object a query names (a `Failure` when there is none)."""
    found = session.call(endpoint, body).get(key) or []
    if not found:
        raise Failure(f"no {what}, nothing changed")
    return str(found[0].get("id", ""))


def cmd_trunk_update(target: Target, args: argparse.Namespace) -> int:
    name: str = args.name
    ours, theirs = fields_of(args, TRUNK_FIELDS)
    if args.rename is not None:
        ours["name"] = theirs["trunkname"] = args.rename
    _nothing_to_change(ours, f"trunk {name}")
    done = f"trunk {name} updated" + (
        f" (now {args.rename})" if args.rename not in (None, name) else "")

    def via_api(session: ApiSession) -> str:
        trunk_id = _id_of(session, "siptrunk/query", {"trunkname": name}, "trunks",
                          f"trunk {name!r}")
        session.call("siptrunk/update", {"id": trunk_id, **theirs})
        return done

    def via_store(running: RunningConfig) -> str:
        running.update("trunks", name, ours)
        return done

    refusal = _TRANSPORT_VIA_API if args.transport is not None else ""
    return apply_change(target, Action(via_api, via_store, refusal))


def cmd_trunk_delete(target: Target, args: argparse.Namespace) -> int:
    names: list[str] = list(dict.fromkeys(args.names))
    _no_all(names, "trunk")
    done = f"trunk{'s' if len(names) > 1 else ''} {_listed(names)} deleted"

    def via_api(session: ApiSession) -> str:
        session.call("siptrunk/delete", {"trunkname": ",".join(names)})
        return done

    def via_store(running: RunningConfig) -> str:
        running.delete("trunks", names)
        return done

    return apply_change(target, Action(via_api, via_store))


# -- routes -----------------------------------------------------------------------------------
_OUT_HEADERS = ("NAME", "PREFIX", "MATCH", "PREPEND", "TRUNKS", "EXTENSIONS")


def _routes_text(outbound: Iterable[Sequence[object]], inbound: Iterable[Sequence[object]],
                 in_headers: Sequence[str]) -> str:
    return (f"outbound routes:\n{table(_OUT_HEADERS, outbound)}\n\n"
            f"inbound routes:\n{table(in_headers, inbound)}")


def cmd_route_list(target: Target, args: argparse.Namespace) -> int:
    def via_api(session: ApiSession) -> str:
        out = session.call("outroute/query", {"name": "all"}).get("outroutes") or []
        inb = session.call("inroute/query", {"name": "all"}).get("inroutes") or []
        return _routes_text(
            ((r.get("name", ""), r.get("prefix", ""), r.get("matchpattern", ""),
              r.get("prepend", ""), r.get("trunks", ""), r.get("callerid") or "all")
             for r in out),
            ((r.get("name", ""), r.get("did", ""), r.get("caller_id", ""),
              ":".join(part for part in (r.get("desttype", ""), r.get("dest", "")) if part))
             for r in inb),
            ("NAME", "DID", "CALLERID", "DESTINATION"))

    def via_store(running: RunningConfig) -> str:
        config = running.config
        return _routes_text(
            ((r.name, r.prefix, r.match, r.prepend, ",".join(r.trunks),
              ",".join(r.extensions) or "all") for r in config.outbound_routes),
            ((r.name, r.did, r.callerid, r.destination, r.trunk or "any")
             for r in config.inbound_routes),
            ("NAME", "DID", "CALLERID", "DESTINATION", "TRUNK"))

    return show(target, Action(via_api, via_store))


def cmd_route_add_out(target: Target, args: argparse.Namespace) -> int:
    name: str = args.name
    ours, theirs = fields_of(args, OUTROUTE_FIELDS, lists=("trunks", "extensions"))
    done = f"outbound route {name} added"

    def via_api(session: ApiSession) -> str:
        session.call("outroute/add", {"name": name, **theirs})
        return done

    def via_store(running: RunningConfig) -> str:
        running.add("outbound_routes", {"name": name, **ours})
        return done

    return apply_change(target, Action(via_api, via_store))


def cmd_route_update_out(target: Target, args: argparse.Namespace) -> int:
    name: str = args.name
    ours, theirs = fields_of(args, OUTROUTE_FIELDS, lists=("trunks", "extensions"))
    if args.rename is not None:
        ours["name"] = theirs["name"] = args.rename
    _nothing_to_change(ours, f"outbound route {name}")
    done = f"outbound route {name} updated" + (
        f" (now {args.rename})" if args.rename not in (None, name) else "")

    def via_api(session: ApiSession) -> str:
        route_id = _id_of(session, "outroute/query", {"name": name}, "outroutes",
                          f"outbound route {name!r}")
        session.call("outroute/update", {"id": route_id, **theirs})
        return done

    def via_store(running: RunningConfig) -> str:
        running.update("outbound_routes", name, ours)
        return done

    return apply_change(target, Action(via_api, via_store))


def _destination_fields(args: argparse.Namespace, ours: dict[str, Any],
                        theirs: dict[str, str]) -> None:
    """`--destination KIND:NUMBER` (or `hangup`) as ippbx's `destination` and the API's
    `desttype` + `dest`."""
    if args.destination is None:
        return
    kind, _, number = args.destination.partition(":")
    ours["destination"] = args.destination
    theirs["desttype"], theirs["dest"] = kind, number


def cmd_route_add_in(target: Target, args: argparse.Namespace) -> int:
    name: str = args.name
    ours, theirs = fields_of(args, INROUTE_FIELDS)
    _destination_fields(args, ours, theirs)
    done = f"inbound route {name} added"

    def via_api(session: ApiSession) -> str:
        session.call("inroute/add", {"name": name, **theirs})
        return done

    def via_store(running: RunningConfig) -> str:
        running.add("inbound_routes", {"name": name, **ours})
        return done

    return apply_change(target, Action(via_api, via_store))


def cmd_route_update_in(target: Target, args: argparse.Namespace) -> int:
    name: str = args.name
    ours, theirs = fields_of(args, INROUTE_FIELDS)
    _destination_fields(args, ours, theirs)
    _nothing_to_change(ours, f"inbound route {name}")
    done = f"inbound route {name} updated"

    def via_api(session: ApiSession) -> str:
        session.call("inroute/update", {"name": name, **theirs})
        return done

    def via_store(running: RunningConfig) -> str:
        running.update("inbound_routes", name, ours)
        return done

    return apply_change(target, Action(via_api, via_store))


def split_routes(names: Sequence[str], outbound: Iterable[str], inbound: Iterable[str],
                 which: str | None) -> tuple[list[str], list[str]]:
    """`names` as (outbound routes, inbound routes); `which` ("out", "in") limits the
    search. A name of neither kind, or of both without `which`, is a `Failure`."""
    out_names, in_names = set(outbound), set(inbound)
    out: list[str] = []
    inb: list[str] = []
    missing: list[str] = []
    for name in names:
        is_out = name in out_names and which != "in"
        is_in = name in in_names and which != "out"
        if is_out and is_in:
            raise Failure(f"both an outbound and an inbound route are named {name!r}: say "
                          "which with --out or --in. Nothing was deleted", 2)
        (out if is_out else inb if is_in else missing).append(name)
    if missing:
        kind = {"out": "outbound ", "in": "inbound "}.get(which or "", "")
        raise Failure(f"no {kind}route named {_listed(missing)}: nothing was deleted")
    return out, inb


def _deleted_routes(out: Sequence[str], inb: Sequence[str]) -> str:
    parts = [f"{kind} route{'s' if len(names) > 1 else ''} {_listed(names)}"
             for kind, names in (("outbound", out), ("inbound", inb)) if names]
    return " and ".join(parts) + " deleted"


def cmd_route_delete(target: Target, args: argparse.Namespace) -> int:
    names: list[str] = list(dict.fromkeys(args.names))
    _no_all(names, "route")

    def via_api(session: ApiSession) -> str:
        out_known = [r.get("name", "") for r in session.call(
            "outroute/query", {"name": "all"}).get("outroutes") or []]
        in_known = [r.get("name", "") for r in session.call(
            "inroute/query", {"name": "all"}).get("inroutes") or []]
        out, inb = split_routes(names, out_known, in_known, args.which)
        if out:
            session.call("outroute/delete", {"name": ",".join(out)})
        if inb:
            session.call("inroute/delete", {"name": ",".join(inb)})
        return _deleted_routes(out, inb)

    def via_store(running: RunningConfig) -> str:
        config = running.config
        out, inb = split_routes(names, (r.name for r in config.outbound_routes),
                                (r.name for r in config.inbound_routes), args.which)
        if out:
            running.delete("outbound_routes", out)
        if inb:
            running.delete("inbound_routes", inb)
        return _deleted_routes(out, inb)

    return apply_change(target, Action(via_api, via_store))


# -- the parsers ------------------------------------------------------------------------------
Handler = Callable[[Target, argparse.Namespace], int]


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE",
                        help="the configuration file `ippbx serve` uses (default: the "
                             "embedded demo configuration)")
    return common


def _leaf(group: Any, name: str, handler: Handler, help_text: str,
          common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = group.add_parser(name, help=help_text, parents=[common],
                                                       description=help_text)
    parser.set_defaults(handler=handler)
    return parser


def _ext_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--password", help="SIP password (add: made up when left out)")
    parser.add_argument("--name", help="display name")
    parser.add_argument("--callerid", help="caller id number shown for its calls")
    parser.add_argument("--email")
    parser.add_argument("--mobile", help="a mobile number")
    parser.add_argument("--voicemail", action=argparse.BooleanOptionalAction, default=None,
                        help="a mailbox for unanswered calls")
    parser.add_argument("--vm-pin", metavar="PIN", help="the mailbox PIN (digits)")
    parser.add_argument("--max-contacts", type=int, metavar="N",
                        help="phones that may register at once")
    parser.add_argument("--ring-timeout", type=int, metavar="SECONDS",
                        help="how long it rings (0: [sip] no_answer_seconds)")
    parser.add_argument("--dnd", action=argparse.BooleanOptionalAction, default=None,
                        help="do not disturb")


def _trunk_options(parser: argparse.ArgumentParser, *, host_required: bool) -> None:
    parser.add_argument("--host", required=host_required, help="the carrier's host")
    parser.add_argument("--port", type=int, help="its SIP port (5060, or 5061 with tls)")
    parser.add_argument("--type", choices=("peer", "register"),
                        help="peer (default) or register (needs --username and --password)")
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument("--from-user", metavar="USER")
    parser.add_argument("--transport", choices=("udp", "tcp", "tls"),
                        help="(not through the API: only while the server is stopped)")


def _outroute_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument("--match", required=required, metavar="PATTERN",
                        help="the dialled number's pattern (after the prefix), e.g. X.")
    parser.add_argument("--trunks", required=required, metavar="A,B",
                        help="trunks in failover order")
    parser.add_argument("--prefix", help="digits dialled before the number, stripped")
    parser.add_argument("--prepend", help="digits put before the number sent")
    parser.add_argument("--extensions", metavar="A,B",
                        help="the extensions that may use it (\"\": all)")


def _inroute_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument("--destination", required=required, metavar="KIND:NUMBER",
                        help="extension:, voicemail:, ivr:, ringgroup:, queue: + number, "
                             "or hangup")
    parser.add_argument("--did", help="the called number it takes (empty: any)")
    parser.add_argument("--callerid", help="the calling number it takes (empty: any)")
    parser.add_argument("--trunk", help="the trunk whose calls it takes (empty: any)")


def add_parsers(sub: Any) -> None:
    """Add `config`, `ext`, `trunk` and `route` to the `ippbx` subcommands (`sub`: what
    `ArgumentParser.add_subparsers` returned)."""
    common = _common()

    config = sub.add_parser("config", help="export or import the runtime configuration")
    group = config.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    export = _leaf(group, "export", cmd_export, "write the configuration in force as TOML",
                   common)
    export.add_argument("--output", "-o", metavar="FILE",
                        help="write to FILE (mode 0600) instead of standard output")
    imp = _leaf(group, "import", cmd_import,
                "replace the store's objects by those of FILE (validated first)", common)
    imp.add_argument("file", metavar="FILE")

    ext = sub.add_parser("ext", help="list, add, update or delete extensions")
    group = ext.add_subparsers(dest="ext_command", required=True, metavar="COMMAND")
    _leaf(group, "list", cmd_ext_list, "list the extensions", common)
    add = _leaf(group, "add", cmd_ext_add, "add an extension", common)
    add.add_argument("number", metavar="NUMBER")
    _ext_options(add)
    update = _leaf(group, "update", cmd_ext_update,
                   "change some fields of an extension (the others keep theirs)", common)
    update.add_argument("number", metavar="NUMBER")
    update.add_argument("--number", dest="new_number", metavar="NEW", help="renumber it")
    _ext_options(update)
    delete = _leaf(group, "delete", cmd_ext_delete, "delete extensions", common)
    delete.add_argument("numbers", nargs="+", metavar="NUMBER")

    trunk = sub.add_parser("trunk", help="list, add, update or delete SIP trunks")
    group = trunk.add_subparsers(dest="trunk_command", required=True, metavar="COMMAND")
    _leaf(group, "list", cmd_trunk_list, "list the trunks", common)
    add = _leaf(group, "add", cmd_trunk_add, "add a SIP trunk", common)
    add.add_argument("name", metavar="NAME")
    _trunk_options(add, host_required=True)
    update = _leaf(group, "update", cmd_trunk_update,
                   "change some fields of a trunk (routes follow a rename)", common)
    update.add_argument("name", metavar="NAME")
    update.add_argument("--rename", metavar="NEW", help="rename it")
    _trunk_options(update, host_required=False)
    delete = _leaf(group, "delete", cmd_trunk_delete, "delete trunks", common)
    delete.add_argument("names", nargs="+", metavar="NAME")

    route = sub.add_parser("route", help="list, add, update or delete routes")
    group = route.add_subparsers(dest="route_command", required=True, metavar="COMMAND")
    _leaf(group, "list", cmd_route_list, "list the outbound and inbound routes", common)
    add = _leaf(group, "add-out", cmd_route_add_out, "add an outbound route (at the end)",
                common)
    add.add_argument("name", metavar="NAME")
    _outroute_options(add, required=True)
    update = _leaf(group, "update-out", cmd_route_update_out,
                   "change some fields of an outbound route", common)
    update.add_argument("name", metavar="NAME")
    update.add_argument("--rename", metavar="NEW", help="rename it")
    _outroute_options(update, required=False)
    add = _leaf(group, "add-in", cmd_route_add_in, "add an inbound route", common)
    add.add_argument("name", metavar="NAME")
    _inroute_options(add, required=True)
    update = _leaf(group, "update-in", cmd_route_update_in,
                   "change some fields of an inbound route", common)
    update.add_argument("name", metavar="NAME")
    _inroute_options(update, required=False)
    delete = _leaf(group, "delete", cmd_route_delete,
                   "delete routes by name (outbound or inbound: the output says which)",
                   common)
    delete.add_argument("names", nargs="+", metavar="NAME")
    which = delete.add_mutually_exclusive_group()
    which.add_argument("--out", dest="which", action="store_const", const="out",
                       help="outbound routes only")
    which.add_argument("--in", dest="which", action="store_const", const="in",
                       help="inbound routes only")


def main(args: argparse.Namespace) -> int:
    """Run the subcommand `args` names (parsed by the parsers `add_parsers` added)."""
    handler: Handler = args.handler
    try:
        return handler(Target.load(args.config), args)
    except ConfigError as exc:
        print(str(exc).replace("\n", " "), file=sys.stderr)
        return 2
    except Failure as exc:
        print(f"ippbx: {exc.message}", file=sys.stderr)
        return exc.code
