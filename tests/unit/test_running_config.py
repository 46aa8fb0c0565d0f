"""The running configuration over a real SQLite file: seeding, changes, ids, restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from ippbx.config import Config, ConfigError, parse_config
from ippbx.running_config import ChangeRefused, Refusal, RunningConfig, digest, objects_of
from ippbx.store.sqlite import Store

BASE = """
[api]
password = "x"
[store]
path = "{store}"
config = "{mode}"
[[extensions]]
number = "1001"
password = "pw1001"
[[extensions]]
number = "1002"
password = "pw1002"
name = "Bob"
[[trunks]]
name = "carrier"
host = "127.0.0.1"
port = 5080
[[outbound_routes]]
name = "out"
prefix = "9"
match = "X."
trunks = ["carrier"]
[[inbound_routes]]
name = "did"
trunk = "carrier"
destination = "extension:1001"
"""


def file_config(tmp_path: Path, extra: str = "", mode: str = "sqlite") -> Config:
    text = BASE.format(store=tmp_path / "pbx.sqlite3", mode=mode) + extra
    return parse_config(text)


def open_running(config: Config) -> tuple[RunningConfig, Store]:
    store = Store(config.store.path)
    return RunningConfig.open(config, store), store


def test_the_file_seeds_the_store_and_a_restart_reads_it_back(tmp_path: Path) -> None:
    config = file_config(tmp_path)
    running, store = open_running(config)
    assert running.config == config
    assert running.ids["trunks"] == [running.id_of("trunks", "carrier")] != [0]
    store.close()
    again, store = open_running(config)
    assert again.config == config
    assert again.ids == running.ids and again.revision == running.revision
    store.close()


def test_changes_survive_a_restart_and_keep_their_ids(tmp_path: Path) -> None:
    config = file_config(tmp_path)
    running, store = open_running(config)
    seen: list[tuple[str, str, tuple[str, ...]]] = []
    running.listeners.append(lambda old, new, change: seen.append(
        (change.kind, change.operation, change.keys)))
    trunk_id = running.id_of("trunks", "carrier")
    running.add("extensions", {"number": "1003", "password": "pw1003"})
    running.update("trunks", "carrier", {"name": "carrier-b", "host": "127.0.0.2"})
    running.delete("extensions", ["1002"])
    assert seen == [("extensions", "add", ("1003",)), ("trunks", "update", ("carrier-b",)),
                    ("extensions", "delete", ("1002",))]
    store.close()
    again, store = open_running(config)
    assert [e.number for e in again.config.extensions] == ["1001", "1003"]
    trunk = again.config.trunk("carrier-b")
    assert trunk is not None and trunk.host == "127.0.0.2"
    assert again.id_of("trunks", "carrier-b") == trunk_id  # (a rename keeps the id)
    # the routes that named the trunk name it by its new name (as id-keyed routes would)
    assert again.config.outbound_routes[0].trunks == ["carrier-b"]
    assert again.config.inbound_routes[0].trunk == "carrier-b"
    store.close()


def test_an_extension_still_named_elsewhere_cannot_be_deleted(tmp_path: Path) -> None:
    config = file_config(tmp_path)
    running, store = open_running(config)
    revision = running.revision
    with pytest.raises(ChangeRefused) as refused:  # (the inbound route sends calls to it)
        running.delete("extensions", ["1001"])
    assert refused.value.reason is Refusal.INVALID
    assert "no extension '1001'" in refused.value.detail
    assert running.config == config and running.revision == revision
    store.close()


@pytest.mark.parametrize(("kind", "change", "reason"), [
    ("extensions", ("add", {"number": "1001", "password": "p"}), Refusal.DUPLICATE),
    ("extensions", ("update", "1001", {"number": "1002"}), Refusal.DUPLICATE),
    ("extensions", ("update", "1999", {"name": "x"}), Refusal.NOT_FOUND),
    ("extensions", ("delete", ["1001", "1999"]), Refusal.NOT_FOUND),
    ("extensions", ("add", {"number": "bad number!", "password": "p"}), Refusal.INVALID),
    ("outbound_routes", ("add", {"name": "r2", "match": "X.", "trunks": ["nope"]}),
     Refusal.INVALID),
    ("outbound_routes", ("add", {"name": "r2", "match": "[9-", "trunks": ["carrier"]}),
     Refusal.INVALID),
    ("trunks", ("delete", None), Refusal.INVALID),  # routes still name the trunk
    ("inbound_routes", ("add", {"name": "x", "destination": "extension:1999"}),
     Refusal.INVALID),
])
def test_refused_changes_change_nothing(tmp_path: Path, kind: str, change: tuple,
                                        reason: Refusal) -> None:
    config = file_config(tmp_path)
    running, store = open_running(config)
    before = (running.config, running.revision, store.config_load())
    operation, *args = change
    with pytest.raises(ChangeRefused) as refused:
        getattr(running, operation)(kind, *args)
    assert refused.value.reason is reason
    assert (running.config, running.revision, store.config_load()) == before
    store.close()


def test_a_deleted_then_added_object_gets_a_new_id(tmp_path: Path) -> None:
    running, store = open_running(file_config(tmp_path))
    first = running.id_of("outbound_routes", "out")
    running.delete("outbound_routes", ["out"])
    running.add("outbound_routes", {"name": "out", "match": "X.", "trunks": ["carrier"]})
    assert running.id_of("outbound_routes", "out") not in (0, first)
    assert running.key_of("outbound_routes", first) is None
    store.close()


def test_an_edited_file_is_imported_again_unless_the_store_changed_too(
        tmp_path: Path) -> None:
    running, store = open_running(file_config(tmp_path))
    store.close()
    edited = file_config(tmp_path, '[[extensions]]\nnumber = "1004"\npassword = "p4"\n')
    running, store = open_running(edited)  # nothing changed in the store: the file wins
    assert running.config.extension("1004") is not None
    running.add("extensions", {"number": "1005", "password": "p5"})
    store.close()
    edited_again = file_config(tmp_path, '[[extensions]]\nnumber = "1006"\npassword = "p"\n')
    running, store = open_running(edited_again)  # both changed: the store wins
    assert running.config.extension("1005") is not None
    assert running.config.extension("1006") is None
    running.replace(edited_again)  # (`ippbx config import`)
    assert running.config.extension("1006") is not None
    assert running.config.extension("1005") is None
    store.close()
    running, store = open_running(edited_again)
    assert running.config == edited_again
    store.close()


def test_another_process_s_change_is_taken_on_refresh(tmp_path: Path) -> None:
    config = file_config(tmp_path)
    server, server_store = open_running(config)
    cli, cli_store = open_running(config)
    cli.add("extensions", {"number": "1007", "password": "p7"})
    cli_store.close()
    seen = []
    server.listeners.append(lambda old, new, change: seen.append(new))
    assert server.refresh() is not None
    assert server.config.extension("1007") is not None and seen == [server.config]
    assert server.refresh() is None  # (nothing new)
    server_store.close()


def test_toml_mode_refuses_changes_and_reloads_the_file(tmp_path: Path) -> None:
    config = file_config(tmp_path, mode="toml")
    running, store = open_running(config)
    assert running.ids["extensions"] == [1, 2]
    with pytest.raises(ChangeRefused) as refused:
        running.add("extensions", {"number": "1003", "password": "p"})
    assert refused.value.reason is Refusal.READ_ONLY
    assert store.config_load() is None  # (the store holds no objects in this mode)
    edited = file_config(tmp_path, '[[extensions]]\nnumber = "1009"\npassword = "p"\n',
                         mode="toml")
    running.reload(edited)
    assert running.config.extension("1009") is not None
    store.close()


def test_the_digest_is_of_values_not_of_layout(tmp_path: Path) -> None:
    config = file_config(tmp_path)
    spaced = parse_config(BASE.format(store=tmp_path / "pbx.sqlite3", mode="sqlite")
                          .replace(" = ", "   =   ") + "\n# a comment\n")
    assert digest(objects_of(config)) == digest(objects_of(spaced))
    changed = file_config(tmp_path, '[[extensions]]\nnumber = "1004"\npassword = "p"\n')
    assert digest(objects_of(config)) != digest(objects_of(changed))


def test_a_tls_trunk_on_port_5060_keeps_its_port_through_the_store(tmp_path: Path) -> None:
    config = file_config(tmp_path, '[[trunks]]\nname = "tls"\nhost = "h"\ntransport = "tls"'
                                   '\nport = 5060\n')
    running, store = open_running(config)
    store.close()
    again, store = open_running(config)
    trunk = again.config.trunk("tls")
    assert trunk is not None and trunk.port == 5060
    store.close()


def test_a_change_made_against_an_older_store_is_refused_and_the_store_taken(
        tmp_path: Path) -> None:
    config = file_config(tmp_path)
    server, server_store = open_running(config)
    cli, cli_store = open_running(config)
    cli.replace(file_config(tmp_path, '[[extensions]]\nnumber = "1008"\npassword = "p"\n'),
                serving=config)
    cli_store.close()
    with pytest.raises(ChangeRefused) as refused:  # (made against the store before)
        server.add("extensions", {"number": "1009", "password": "p"})
    assert refused.value.reason is Refusal.STALE
    assert server.config.extension("1008") is not None  # the import is in force …
    server.add("extensions", {"number": "1009", "password": "p"})  # … and a retry works
    stored = server_store.config_load()
    assert stored is not None
    assert [o.key for o in stored.objects["extensions"]] == ["1001", "1002", "1008", "1009"]
    server_store.close()


def test_an_imported_backup_outlives_a_start_with_another_file(tmp_path: Path) -> None:
    config = file_config(tmp_path)
    running, store = open_running(config)
    backup = file_config(tmp_path, '[[extensions]]\nnumber = "1010"\npassword = "p"\n')
    running.replace(backup, serving=config)  # (`ippbx config import backup --config file`)
    store.close()
    again, store = open_running(config)
    assert again.config.extension("1010") is not None
    store.close()


GROUPS = """
[[extensions]]
number = "1003"
password = "pw1003"
[[ring_groups]]
number = "6300"
members = ["1002", "1003"]
[[queues]]
number = "6500"
agents = ["1002"]
dynamic_agents = ["1002", "1003"]
[[paging_groups]]
number = "6700"
members = ["1002", "1003"]
[[outbound_routes]]
name = "staff"
prefix = "8"
match = "X."
trunks = ["carrier"]
extensions = ["1002", "1003"]
"""


def test_a_deleted_extension_leaves_the_groups_that_named_it(tmp_path: Path) -> None:
    running, store = open_running(file_config(tmp_path, GROUPS))
    change = running.delete("extensions", ["1002"])
    assert change.keys == ("1002",)
    config = running.config
    assert config.ring_groups[0].members == ["1003"]
    assert config.queues[0].agents == [] and config.queues[0].dynamic_agents == ["1003"]
    assert config.paging_groups[0].members == ["1003"]
    assert config.outbound_routes[1].extensions == ["1003"]
    store.close()
    again, store = open_running(file_config(tmp_path, GROUPS))  # (stored, in one change)
    assert again.config == config
    store.close()


def test_deleting_the_last_extension_a_route_is_limited_to_is_refused(tmp_path: Path) -> None:
    running, store = open_running(file_config(tmp_path, GROUPS))
    running.delete("extensions", ["1002"])
    before = running.config
    with pytest.raises(ChangeRefused) as refused:  # (the route would be open to all)
        running.delete("extensions", ["1003"])
    assert refused.value.reason is Refusal.INVALID
    assert "open to every extension" in refused.value.detail
    assert running.config == before
    store.close()


def test_a_stored_configuration_that_no_longer_validates_is_one_line(tmp_path: Path) -> None:
    config = file_config(tmp_path)
    running, store = open_running(config)
    running.add("extensions", {"number": "1003", "password": "p"})  # (the store is newer)
    store._db.execute("UPDATE config_objects SET body = '{\"number\":\"1003\"}' "
                      "WHERE key = '1003'")  # (as a later version might judge it)
    with pytest.raises(ConfigError) as error:
        RunningConfig.open(config, store)
    assert "stored configuration: extensions[2].password: Field required" in str(error.value)
    store.close()
