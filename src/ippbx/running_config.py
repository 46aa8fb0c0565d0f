"""The running configuration: the objects the PBX works with (extensions, trunks, routes,
IVRs, ring groups, queues, paging groups), changed while it runs, validated, persisted and
announced.

Two modes (`[store] config`):

- `"sqlite"` (the default): the objects live in the store (`ippbx.store.config`). The TOML
  file seeds them at the first start; later starts take the store's, unless the file's
  objects changed since they were last imported *and* nothing was changed through the
  API or the CLI since (then the file is imported again: an admin who only edits the file
  loses nothing). When both changed, the store wins and the log says how to take the
  file's (`ippbx config import FILE`). Changes are made with `add` / `update` / `delete`;
  `refresh` (SIGHUP) takes what another process wrote to the store.
- `"toml"`: the file is the truth (for configurations kept in git). Changes through the
  API are refused; `reload` (SIGHUP) reads the file again.

Every change builds a whole new `Config` through the same pydantic validation as the file
(so a change that would make an invalid file is refused and changes nothing), saves the
changed kinds in one transaction, then tells the listeners `(old, new, change)`; the app
applies the new configuration to the running parts (the next call or registration sees
it; calls in progress go on). The sections (`[sip]`, `[api]`, …) always come from the file.

Ids: each object keeps the id the store gave it (the API's `id` of trunks and routes); in
TOML mode an object's id is its 1-based place in its list.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from ippbx.config import Config, ConfigError, format_validation_error
from ippbx.store.config import ConfigTable, StaleConfig, StoredConfig, StoredObject

log = logging.getLogger(__name__)

# the configuration's object lists and the field that names an object in each
KEYS: dict[str, str] = {
    "extensions": "number",
    "trunks": "name",
    "outbound_routes": "name",
    "inbound_routes": "name",
    "ivrs": "number",
    "ring_groups": "number",
    "queues": "number",
    "paging_groups": "number",
    "conferences": "number",
}
KINDS = tuple(KEYS)
SECTIONS = tuple(name for name in Config.model_fields if name not in KEYS)
# a field dumped even at its default, because its default depends on another field
_ALWAYS = {"trunks": ("port",)}

Operation = Literal["add", "update", "delete"]


class Refusal(StrEnum):
    """Why a change was refused."""

    DUPLICATE = "duplicate"  # the number or name is taken
    NOT_FOUND = "not found"  # no object by that key or id
    INVALID = "invalid"  # a value (or what it refers to) is not valid
    READ_ONLY = "read only"  # TOML mode: the file is the configuration
    STALE = "stale"  # another process changed the store; its configuration is taken


class ChangeRefused(Exception):
    """A change that was not made; the configuration is as it was."""

    def __init__(self, reason: Refusal, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Change:
    """What one change did: the kind, the operation and the keys it touched (for an
    update that renamed, the new key). Kind `config`: every object at once, `keys` saying
    where from."""

    kind: str
    operation: Operation
    keys: tuple[str, ...]
    revision: int = 0


Listener = Callable[[Config, Config, Change], None]


def dump(kind: str, item: BaseModel) -> dict[str, Any]:
    """An object's fields as the TOML would write them: the key, what differs from the
    defaults, and the fields whose default depends on others."""
    fields = item.model_dump(mode="json", exclude_defaults=True)
    fields[KEYS[kind]] = getattr(item, KEYS[kind])
    for name in _ALWAYS.get(kind, ()):
        fields[name] = getattr(item, name)
    return fields


def objects_of(config: Config) -> dict[str, list[dict[str, Any]]]:
    """Every object of `config`, dumped, by kind."""
    return {kind: [dump(kind, item) for item in getattr(config, kind)] for kind in KINDS}


def digest(objects: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """A digest of the objects' values (layout and comments of a file do not count)."""
    text = json.dumps({kind: list(objects.get(kind, ())) for kind in KINDS},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def lists_of(config: Config) -> dict[str, list[Any]]:
    """Every object list of `config`, its model instances as they are (for `build`)."""
    return {kind: list(getattr(config, kind)) for kind in KINDS}


def stored_lists(stored: StoredConfig) -> tuple[dict[str, list[Any]], dict[str, list[int]]]:
    """The stored objects' fields and ids, by kind, in list order."""
    rows = {kind: stored.objects.get(kind, ()) for kind in KINDS}
    return ({kind: [row.fields for row in items] for kind, items in rows.items()},
            {kind: [row.id for row in items] for kind, items in rows.items()})


def build(sections: Config, objects: Mapping[str, Sequence[Any]]) -> Config:
    """A whole `Config`: the sections of `sections`, the objects given as fields or as
    model instances (kept as they are; kinds not given: those of `sections`). Raises
    `ValidationError` as the file would."""
    data: dict[str, Any] = {name: getattr(sections, name) for name in SECTIONS}
    for kind in KINDS:
        data[kind] = list(objects[kind]) if kind in objects else getattr(sections, kind)
    return Config.model_validate(data)


def _refusal_of(message: str) -> Refusal:
    return Refusal.DUPLICATE if ("duplicate" in message or "is already" in message) \
        else Refusal.INVALID


@dataclass(slots=True)
class RunningConfig:
    """The configuration in force, and the one way to change it."""

    config: Config
    ids: dict[str, list[int]]
    store: ConfigTable | None = None
    mode: Literal["sqlite", "toml"] = "sqlite"
    revision: int = 0
    listeners: list[Listener] = field(default_factory=list)

    # -- opening ----------------------------------------------------------------------------
    @classmethod
    def open(cls, file_config: Config, store: ConfigTable | None) -> RunningConfig:
        """The configuration to start with (see the module docstring for the rules)."""
        if file_config.store.config == "toml" or store is None:
            return cls(file_config, _positions(file_config), store,
                       mode="toml" if file_config.store.config == "toml" else "sqlite")
        file_objects = objects_of(file_config)
        file_digest = digest(file_objects)
        stored = store.config_load()
        if stored is None or stored.file_digest != file_digest and (
                stored.revision == stored.file_revision):
            if stored is not None:
                log.info("configuration: the file's objects changed and the store has no "
                         "change of its own since: importing the file again")
            running = cls(file_config, {}, store,
                          revision=stored.revision if stored is not None else 0)
            running._save(file_config, _unstored(file_config), file_digest=file_digest)
            return running
        if stored.file_digest != file_digest:
            log.warning("configuration: the file's objects changed since they were imported, "
                        "and the store was changed since too; the store's configuration is "
                        "used (`ippbx config import FILE` takes the file's)")
        objects, ids = stored_lists(stored)
        try:
            config = build(file_config, objects)
        except ValidationError as exc:
            raise ConfigError(f"{getattr(store, 'path', 'store')}: stored configuration: "
                              f"{format_validation_error(exc)}") from None
        return cls(config, ids, store, revision=stored.revision)

    # -- reading ----------------------------------------------------------------------------
    def find(self, kind: str, key: str) -> Any | None:
        """The object of `kind` named `key`, or None."""
        attr = KEYS[kind]
        return next((item for item in getattr(self.config, kind)
                     if getattr(item, attr) == key), None)

    def id_of(self, kind: str, key: str) -> int:
        """The id of the object of `kind` named `key` (0: none)."""
        attr = KEYS[kind]
        for item, item_id in zip(getattr(self.config, kind), self.ids[kind], strict=True):
            if getattr(item, attr) == key:
                return item_id
        return 0

    def key_of(self, kind: str, item_id: int) -> str | None:
        """The key of the object of `kind` with id `item_id`, or None."""
        for item, known in zip(getattr(self.config, kind), self.ids[kind], strict=True):
            if known == item_id:
                return str(getattr(item, KEYS[kind]))
        return None

    # -- changing ---------------------------------------------------------------------------
    def add(self, kind: str, fields: Mapping[str, Any]) -> Change:
        """Add one object (at the end of its list)."""
        key = str(fields.get(KEYS[kind], ""))
        if self.find(kind, key) is not None:
            raise ChangeRefused(Refusal.DUPLICATE, f"{kind}: {key!r} exists")
        objects: list[Any] = [*getattr(self.config, kind), dict(fields)]
        return self._change(kind, objects, [*self.ids[kind], 0], "add", (key,))

    def update(self, kind: str, key: str, fields: Mapping[str, Any]) -> Change:
        """Change some fields of the object named `key` (the others keep their values;
        a field set to None goes back to its default). Renaming is allowed."""
        attr = KEYS[kind]
        items = getattr(self.config, kind)
        index = next((i for i, item in enumerate(items) if getattr(item, attr) == key), None)
        if index is None:
            raise ChangeRefused(Refusal.NOT_FOUND, f"{kind}: no {key!r}")
        objects: list[Any] = list(items)
        merged = {**dump(kind, items[index]), **fields}
        objects[index] = {name: value for name, value in merged.items() if value is not None}
        new_key = str(objects[index].get(attr, ""))
        if new_key != key and self.find(kind, new_key) is not None:
            raise ChangeRefused(Refusal.DUPLICATE, f"{kind}: {new_key!r} exists")
        also = self._renamed_trunk(key, new_key) if kind == "trunks" else {}
        return self._change(kind, objects, list(self.ids[kind]), "update", (new_key,),
                            also=also)

    def delete(self, kind: str, keys: Iterable[str] | None) -> Change:
        """Delete the objects named `keys` (None: all of this kind). Every key must exist.
        A deleted extension leaves the member lists that named it (`_without_extensions`)."""
        self._refuse_read_only()
        attr = KEYS[kind]
        items = getattr(self.config, kind)
        present = [str(getattr(item, attr)) for item in items]
        wanted = list(dict.fromkeys(present if keys is None else keys))
        missing = [key for key in wanted if key not in present]
        if missing:
            raise ChangeRefused(Refusal.NOT_FOUND, f"{kind}: no {', '.join(missing)}")
        gone = set(wanted)
        kept = [(item, item_id)
                for item, item_id, key in zip(items, self.ids[kind], present, strict=True)
                if key not in gone]
        also = self._without_extensions(gone) if kind == "extensions" else {}
        return self._change(kind, [obj for obj, _ in kept], [i for _, i in kept], "delete",
                            tuple(wanted), also=also)

    def replace(self, file_config: Config, serving: Config | None = None) -> Change:
        """Take every object of `file_config` (`ippbx config import FILE`); ids start
        anew. `serving`: the configuration file the server starts with (its objects may
        differ): the store is marked as agreeing with it, so the next start keeps what
        was imported instead of importing that file again."""
        self._refuse_read_only()
        old = self.config
        config = build(self.config, lists_of(file_config))
        self._save_or_refresh(config, _unstored(config),
                              file_digest=digest(objects_of(serving or file_config)))
        change = Change("config", "update", ("an imported file",), self.revision)
        self._announce(old, change)
        return change

    def refresh(self) -> Change | None:
        """Store mode: take the store's objects if another process changed them (`ippbx
        config import`, or the CLI while this server was thought stopped); None if the
        store is at this revision."""
        if self.store is None or self.mode != "sqlite":
            return None
        stored = self.store.config_load()
        if stored is None or stored.revision == self.revision:
            return None
        objects, ids = stored_lists(stored)
        old = self.config
        self.config, self.ids = build(self.config, objects), ids
        self.revision = stored.revision
        change = Change("config", "update", ("the store, changed by another process",),
                        self.revision)
        self._announce(old, change)
        return change

    def reload(self, file_config: Config) -> Change:
        """TOML mode: the file read again (SIGHUP) is the configuration."""
        old = self.config
        self.config = build(self.config, lists_of(file_config))
        self.ids = _positions(self.config)
        self.revision += 1
        change = Change("config", "update", ("the file, read again",), self.revision)
        self._announce(old, change)
        return change

    # -- inside -----------------------------------------------------------------------------
    def _refuse_read_only(self) -> None:
        if self.mode == "toml":
            raise ChangeRefused(Refusal.READ_ONLY, "the configuration is the TOML file "
                                "([store] config = \"toml\"): edit it and send SIGHUP")

    def _without_extensions(self, gone: set[str]) -> dict[str, list[Any]]:
        """The member lists that named the deleted extensions `gone`, without them (ring
        groups, queue agents, paging groups, the extensions an outbound route is limited
        to). A list left empty is refused by validation, and a route limited to deleted
        extensions only is refused here (empty, it would be open to every extension).
        Destinations (forwards, IVR keys, inbound routes) are not rewritten: deleting an
        extension one still names is refused."""
        lists = {"ring_groups": ("members",), "queues": ("agents", "dynamic_agents"),
                 "paging_groups": ("members",), "outbound_routes": ("extensions",)}
        also: dict[str, list[Any]] = {}
        for kind, fields in lists.items():
            items: list[Any] = list(getattr(self.config, kind))
            touched = False
            for index, item in enumerate(items):
                if not any(gone.intersection(getattr(item, name)) for name in fields):
                    continue
                touched = True
                changed = dump(kind, item)
                for name in fields:
                    members = getattr(item, name)
                    changed[name] = [m for m in members if m not in gone]
                    if kind == "outbound_routes" and members and not changed[name]:
                        raise ChangeRefused(Refusal.INVALID, (
                            f"outbound route {item.name!r} is limited to "
                            f"{', '.join(members)}: without them it would be open to "
                            "every extension; change the route first"))
                items[index] = changed
            if touched:
                also[kind] = items
        return also

    def _renamed_trunk(self, old: str, new: str) -> dict[str, list[Any]]:
        """The routes naming trunk `old`, made to name `new` (a rename carries over to
        them in the same change, as the vendors' id-keyed routes do)."""
        if old == new:
            return {}
        outbound: list[Any] = [
            {**dump("outbound_routes", r),
             "trunks": [new if name == old else name for name in r.trunks]}
            if old in r.trunks else r for r in self.config.outbound_routes]
        inbound: list[Any] = [{**dump("inbound_routes", r), "trunk": new}
                              if r.trunk == old else r for r in self.config.inbound_routes]
        return {"outbound_routes": outbound, "inbound_routes": inbound}

    def _change(self, kind: str, objects: list[Any], ids: list[int],
                operation: Operation, keys: tuple[str, ...], *,
                also: Mapping[str, list[Any]] | None = None) -> Change:
        """Make `kind`'s list `objects` (ids parallel; `also`: other kinds' whole lists,
        ids unchanged), validated as a whole, stored in one transaction. An object given
        as the model instance in force is kept as it is (neither validated nor written
        again); one given as fields is new or changed."""
        self._refuse_read_only()
        also = also or {}
        try:
            config = build(self.config, {**also, kind: objects})
        except ValidationError as exc:
            message = format_validation_error(exc)
            raise ChangeRefused(_refusal_of(message), message) from None
        old = self.config
        ids_by_kind = {other: list(self.ids[other]) for other in also}
        self._save_or_refresh(config, {**ids_by_kind, kind: ids}, kinds=(*also, kind))
        change = Change(kind, operation, keys, self.revision)
        self._announce(old, change)
        return change

    def _save_or_refresh(self, config: Config, ids: Mapping[str, list[int]], *,
                         kinds: Sequence[str] = KINDS, file_digest: str | None = None) -> None:
        """`_save`; if another process changed the store meanwhile, take its
        configuration instead and refuse this change (made against an older one)."""
        try:
            self._save(config, ids, kinds=kinds, file_digest=file_digest)
        except StaleConfig:
            self.refresh()
            raise ChangeRefused(Refusal.STALE, "the stored configuration was changed by "
                                "another process; it is in force now: try again") from None

    def _save(self, config: Config, ids: Mapping[str, list[int]], *,
              kinds: Sequence[str] = KINDS, file_digest: str | None = None) -> None:
        """Store `config`'s objects of `kinds` (ids parallel to each list), then make it
        the configuration in force."""
        new_ids = dict(self.ids)
        if self.store is not None:
            rows = {}
            for kind in kinds:
                # (an object still the very instance in force is unchanged: not written)
                same = {id(item) for item in getattr(self.config, kind)}
                rows[kind] = [
                    StoredObject(item_id, str(getattr(item, KEYS[kind])),
                                 None if item_id and id(item) in same else dump(kind, item))
                    for item, item_id in zip(getattr(config, kind), ids[kind], strict=True)]
            self.revision, saved = self.store.config_save(
                rows, expected_revision=self.revision, file_digest=file_digest)
            new_ids.update(saved)
        else:
            self.revision += 1
            new_ids.update(_positions(config))
        self.config, self.ids = config, new_ids

    def _announce(self, old: Config, change: Change) -> None:
        log.info("configuration: %s %s %s (revision %d)", change.operation, change.kind,
                 ",".join(change.keys), change.revision)
        for listener in list(self.listeners):
            try:
                listener(old, self.config, change)
            except Exception:
                log.exception("applying configuration revision %d failed", change.revision)


def _positions(config: Config) -> dict[str, list[int]]:
    """Ids in TOML mode: each object's 1-based place in its list."""
    return {kind: list(range(1, len(getattr(config, kind)) + 1)) for kind in KINDS}


def _unstored(config: Config) -> dict[str, list[int]]:
    """Ids for objects the store has not seen yet (it gives them theirs)."""
    return {kind: [0] * len(getattr(config, kind)) for kind in KINDS}
