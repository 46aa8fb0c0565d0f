"""`ippbx config|ext|trunk|route`: the CLI on a stopped server's store and through a running
`ippbx serve`'s API (a real subprocess, a real SQLite store), and export/import round trips."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api_cli import ippbx_command, ippbx_serve, write_config

from ippbx.api.sessions import md5_hex
from ippbx.cli import main
from ippbx.config import Config, parse_config
from ippbx.running_config import objects_of

FreePort = Callable[..., int]
NO_MEDIA = '[media]\nengine = "none"\n'  # (no rtpengine to spawn: a faster start)


def make_config(where: Path, free_port: FreePort, extra: str = "") -> tuple[Path, int]:
    where.mkdir(parents=True, exist_ok=True)
    return write_config(where, free_port, NO_MEDIA + extra)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def api(port: int, endpoint: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}/api/v0.0.1"
    with httpx.Client(timeout=5, trust_env=False) as client:
        login = client.post(f"{base}/login",
                            json={"username": "api", "password": md5_hex("s3cret")}).json()
        token = login["token"]
        try:
            return client.post(f"{base}/{endpoint}?token={token}", json=body or {}).json()
        finally:
            client.post(f"{base}/logout?token={token}")


@contextmanager
def serving(config: Path, port: int, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`ippbx serve --config CONFIG` until the block ends (then SIGTERM, exit 0)."""
    with log_path.open("ab") as log, ippbx_serve(config, port, stdout=log,
                                                  stderr=subprocess.STDOUT,
                                                  describe=log_path.read_text) as proc:
        yield proc


def extension_numbers(port: int) -> list[str]:
    answer = api(port, "extensionlist/query")
    assert answer["status"] == "Success", answer
    return [item["extnumber"] for item in answer["extlist"]]


# -- 1. a stopped server: the store ------------------------------------------------------------
def test_stopped_server_change_goes_to_the_store_and_the_next_start_has_it(
    tmp_path: Path, free_port: FreePort, capsys: pytest.CaptureFixture[str]
) -> None:
    config, port = make_config(tmp_path, free_port)
    code, out, err = run_cli(capsys, "ext", "add", "1006", "--password", "pw", "--name", "Dana",
                             "--voicemail", "--vm-pin", "2468", "--config", str(config))
    assert code == 0, err
    assert out.startswith(f"server not running (nothing answers at 127.0.0.1:{port})"), out
    assert "extension 1006 added" in out and str(tmp_path / "ippbx.sqlite3") in out

    code, out, err = run_cli(capsys, "ext", "list", "--config", str(config))
    assert code == 0, err
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["NUMBER", "NAME", "CALLERID", "VOICEMAIL"]
    assert rows[1:] == [["1001", "1001", "off"], ["1006", "Dana", "1006", "on"]]
    assert "pw" not in out and "2468" not in out  # (no secret in a list)
    assert "server not running: from the store" in err

    # no --password: one is made up, printed once, and works as the store's
    code, out, _ = run_cli(capsys, "ext", "add", "1009", "--config", str(config))
    assert code == 0
    made = out.split("SIP password made up for it: ")[1].split(")")[0]
    assert len(made) == 20

    with serving(config, port, tmp_path / "serve.log"):
        answer = api(port, "extension/query", {"extid": "1006,1009"})
        assert answer["status"] == "Success", answer
        infos = {info["extnumber"]: info for info in answer["extinfos"]}
        assert infos["1006"]["registerpassword"] == "pw"
        assert (infos["1006"]["username"], infos["1006"]["hasvoicemail"],
                infos["1006"]["vmsecret"]) == ("Dana", "on", "2468")
        assert infos["1009"]["registerpassword"] == made


# -- 2. a running server: its API ----------------------------------------------------------------
def test_running_server_change_goes_through_the_api_at_once_and_survives_a_restart(
    tmp_path: Path, free_port: FreePort, capsys: pytest.CaptureFixture[str]
) -> None:
    config, port = make_config(tmp_path, free_port)
    log = tmp_path / "serve.log"
    with serving(config, port, log):
        # the real executable, as an operator would run it
        done = subprocess.run(
            [*ippbx_command(), "ext", "add", "1007", "--password", "pw7", "--name", "Eve",
             "--callerid", "777", "--config", str(config)],
            capture_output=True, text=True, timeout=30, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == (
            f"extension 1007 added via the running server at http://127.0.0.1:{port}")
        assert extension_numbers(port) == ["1001", "1007"]

        code, out, err = run_cli(capsys, "ext", "list", "--config", str(config))
        assert code == 0, err
        assert out.splitlines()[0].split() == ["NUMBER", "NAME", "CALLERID", "VOICEMAIL",
                                               "STATUS"]
        assert out.splitlines()[2].split() == ["1007", "Eve", "777", "off", "Unavailable"]
        assert "from the running server" in err

        # a duplicate: the server's errno, its meaning, and why (from the store)
        code, out, err = run_cli(capsys, "ext", "add", "1007", "--password", "x",
                                 "--config", str(config))
        assert (code, out) == (1, "")
        assert "errno 10017" in err and "number or name that is taken" in err
        assert "extensions: '1007' exists" in err and err.count("\n") == 1

        # trunks and routes through the API; a rename carries over to the route
        for argv in (["trunk", "add", "carrier", "--host", "127.0.0.1", "--port", "5080"],
                     ["route", "add-out", "out", "--match", "X.", "--trunks", "carrier",
                      "--prefix", "9"],
                     ["route", "add-in", "did", "--destination", "extension:1007",
                      "--did", "5550100", "--trunk", "carrier"],
                     ["trunk", "update", "carrier", "--rename", "carrier2"]):
            code, out, err = run_cli(capsys, *argv, "--config", str(config))
            assert code == 0, err
            assert "via the running server" in out
        code, out, err = run_cli(capsys, "route", "list", "--config", str(config))
        assert code == 0, err
        assert out.splitlines()[2].split() == ["out", "9", "X.", "carrier2", "all"]
        assert out.splitlines()[6].split() == ["did", "5550100", "extension:1007"]
        code, out, err = run_cli(capsys, "trunk", "list", "--config", str(config))
        assert out.splitlines()[1].split()[:3] == ["carrier2", "peer", "127.0.0.1:5080"]

        # the transport has no API field: refused, nothing changed
        code, out, err = run_cli(capsys, "trunk", "update", "carrier2", "--transport", "tcp",
                                 "--config", str(config))
        assert code == 2 and "--transport cannot be set through the API" in err

        # wrong credentials: an error, and never the store behind the server's back
        wrong = tmp_path / "wrong.toml"
        wrong.write_text(config.read_text().replace('password = "s3cret"',
                                                    'password = "nope"'))
        code, out, err = run_cli(capsys, "ext", "add", "1008", "--password", "x",
                                 "--config", str(wrong))
        assert code == 1 and "refused the login of API user 'api'" in err and out == ""

        code, out, err = run_cli(capsys, "route", "delete", "did", "--config", str(config))
        assert code == 0 and out.startswith("inbound route did deleted via the running")
    with serving(config, port, log):
        assert extension_numbers(port) == ["1001", "1007"]
        trunks = api(port, "siptrunk/query", {"trunkname": "all"})["trunks"]
        assert [t["trunkname"] for t in trunks] == ["carrier2"]
        assert api(port, "inroute/query", {"name": "all"})["inroutes"] == []


# -- 3. export / import ------------------------------------------------------------------------
def _store_a(tmp_path: Path, free_port: FreePort,
             capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    """A configuration whose store was changed by the CLI (server stopped), and its
    export."""
    config, _ = make_config(tmp_path / "a", free_port)
    for argv in (["ext", "add", "1006", "--password", "pw6", "--name", "Dana", "--voicemail",
                  "--vm-pin", "1234"],
                 ["trunk", "add", "carrier", "--host", "sip.example.net", "--transport", "tls",
                  "--type", "register", "--username", "u", "--password", "tp"],
                 ["route", "add-out", "intl", "--match", "00X.", "--trunks", "carrier",
                  "--extensions", "1006"],
                 ["route", "add-in", "main", "--destination", "voicemail:1006",
                  "--did", "5550100"]):
        code, _, err = run_cli(capsys, *argv, "--config", str(config))
        assert code == 0, err
    exported = tmp_path / "export-a.toml"
    code, out, err = run_cli(capsys, "config", "export", "--output", str(exported),
                             "--config", str(config))
    assert code == 0, err
    assert exported.stat().st_mode & 0o077 == 0  # (it holds passwords)
    return config, exported


def _objects(config: Config) -> dict[str, Any]:
    return objects_of(config)


def test_export_import_export_round_trip_to_a_fresh_store(
    tmp_path: Path, free_port: FreePort, capsys: pytest.CaptureFixture[str]
) -> None:
    config_a, exported = _store_a(tmp_path, free_port, capsys)
    text_a = exported.read_text()
    model_a = parse_config(text_a)
    assert [e.number for e in model_a.extensions] == ["1001", "1006"]
    assert model_a.trunks[0].transport == "tls" and model_a.trunks[0].port == 5061
    assert model_a.outbound_routes[0].extensions == ["1006"]
    assert "[[extensions]]" in text_a  # (tables as a hand-written file has them)
    # stdout without --output: the same text
    code, out, _ = run_cli(capsys, "config", "export", "--config", str(config_a))
    assert code == 0 and out == text_a

    # the export, pointed at another store, is the second machine's configuration
    store_a = str(tmp_path / "a" / "ippbx.sqlite3")
    store_b = str(tmp_path / "b" / "ippbx.sqlite3")
    (tmp_path / "b").mkdir()
    config_b = tmp_path / "b" / "ippbx.toml"
    config_b.write_text(text_a.replace(store_a, store_b))
    code, out, err = run_cli(capsys, "config", "import", str(exported), "--config",
                             str(config_b))
    assert code == 0, err
    assert f"into the store {store_b}" in out and "extensions 2, trunks 1" in out
    assert "no server is running" in out
    code, out, err = run_cli(capsys, "config", "export", "--config", str(config_b))
    assert code == 0, err
    assert out.replace(store_b, store_a) == text_a
    model_b = parse_config(out)
    assert _objects(model_b) == _objects(model_a)
    assert model_b.model_copy(update={"store": model_a.store}) == model_a


def test_import_of_a_backup_outlives_the_next_start(
    tmp_path: Path, free_port: FreePort, capsys: pytest.CaptureFixture[str]
) -> None:
    _, exported = _store_a(tmp_path, free_port, capsys)
    # a second installation: its own file (one extension, 1001), its own fresh store
    config_b, _ = make_config(tmp_path / "b", free_port)
    code, out, err = run_cli(capsys, "config", "import", str(exported), "--config",
                             str(config_b))
    assert code == 0, err
    code, out, err = run_cli(capsys, "config", "export", "--config", str(config_b))
    assert code == 0, err
    assert _objects(parse_config(out)) == _objects(parse_config(exported.read_text()))


# -- 4. errors ---------------------------------------------------------------------------------
def test_refusals_and_bad_files(
    tmp_path: Path, free_port: FreePort, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = make_config(tmp_path, free_port)
    store = tmp_path / "ippbx.sqlite3"

    code, out, err = run_cli(capsys, "ext", "add", "1001", "--password", "x",
                             "--config", str(config))
    assert (code, out) == (1, "")
    assert err == "ippbx: refused, nothing changed: duplicate: extensions: '1001' exists\n"

    code, out, err = run_cli(capsys, "route", "add-out", "r", "--match", "X.", "--trunks",
                             "nowhere", "--config", str(config))
    assert code == 1 and "no trunk named 'nowhere'" in err

    code, out, err = run_cli(capsys, "route", "delete", "nothere", "--config", str(config))
    assert code == 1 and "no route named nothere" in err

    code, out, err = run_cli(capsys, "ext", "update", "1001", "--config", str(config))
    assert code == 2 and "nothing to change" in err

    before = store.read_bytes()
    bad = tmp_path / "bad.toml"
    bad.write_text('[api]\npassword = "x"\n[[extensions]]\nnumber = "1001"\n')
    code, out, err = run_cli(capsys, "config", "import", str(bad), "--config", str(config))
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and str(bad) in err and "password" in err
    assert store.read_bytes() == before  # (nothing written)
    code, out, err = run_cli(capsys, "ext", "list", "--config", str(config))
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["1001"]

    # [store] config = "toml": the file is the configuration
    toml_mode = tmp_path / "toml-mode.toml"
    toml_mode.write_text(config.read_text().replace(
        f'path = "{store}"', f'path = "{store}"\nconfig = "toml"'))
    for argv in (["config", "import", str(config)], ["ext", "delete", "1001"]):
        code, out, err = run_cli(capsys, *argv, "--config", str(toml_mode))
        assert code == 2 and 'config = "toml"' in err, err
    code, out, err = run_cli(capsys, "ext", "list", "--config", str(toml_mode))
    assert code == 0 and "1001" in out
