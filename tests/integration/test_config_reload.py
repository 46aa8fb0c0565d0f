"""SIGHUP on a real `ippbx serve` subprocess (docs/runtime-configuration.md, `App.reload`):

- `[store] config = "toml"`: the file is read again and its objects are in force; a file
  that is not valid is logged ("not reloaded") and the server goes on with what it had;
  the write API refuses every change (10017).
- the default store mode: `ippbx config import` (another process) writes the store; the
  server takes it on SIGHUP, or, if a change reaches its API first, refuses that change
  (the store moved under it), takes the stored configuration at once, and the retry works.

The signal goes to the server's own pid; every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from test_api_cli import ippbx_command, ippbx_serve, write_config

from ippbx.api.sessions import md5_hex
from ippbx.config import parse_config

FreePort = Callable[..., int]
NO_MEDIA = '[media]\nengine = "none"\n'  # (no rtpengine to spawn: a faster start)
REFUSED = {"status": "Failed", "errno": "10017"}


def extension(number: str) -> str:
    return f'\n[[extensions]]\nnumber = "{number}"\npassword = "pw{number}"\n'


# -- the server -----------------------------------------------------------------------------------
@dataclass
class Server:
    """A running `ippbx serve` and a logged-in API session (OpenVox dialect, JSON)."""

    proc: subprocess.Popen[bytes]
    client: httpx.Client
    base: str
    stderr_path: Path
    token: str = ""

    def post(self, endpoint: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        answer: dict[str, Any] = self.client.post(
            f"{self.base}/{endpoint}?token={self.token}", json=body or {}).json()
        return answer

    def extensions(self) -> list[str]:
        answer = self.post("extensionlist/query")
        assert answer["status"] == "Success", answer
        return [item["extnumber"] for item in answer["extlist"]]

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def hangup(self) -> None:
        """SIGHUP to the server process itself (its pid, never a name)."""
        assert self.proc.poll() is None, self.stderr()
        os.kill(self.proc.pid, signal.SIGHUP)

    def until(self, predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> float:
        """Poll `predicate` until true (AssertionError after `timeout` s); the seconds it
        took. The server must stay up meanwhile."""
        start = time.monotonic()
        while not predicate():
            assert self.proc.poll() is None, f"ippbx serve exited:\n{self.stderr()}"
            assert time.monotonic() - start < timeout, \
                f"timed out ({timeout} s) waiting for {what}\n{self.stderr()}"
            time.sleep(0.05)
        return time.monotonic() - start


@contextmanager
def serving(config: Path, port: int) -> Iterator[Server]:
    """`ippbx serve --config CONFIG` (stdout and stderr to files beside it) until the block
    ends, then SIGTERM: it must exit 0."""
    out_path, err_path = config.with_suffix(".stdout"), config.with_suffix(".stderr")
    with out_path.open("ab") as out, err_path.open("ab") as err, \
            httpx.Client(timeout=5, trust_env=False) as client:
        with ippbx_serve(config, port, stdout=out, stderr=err,
                         describe=lambda: err_path.read_text(errors="replace")) as proc:
            server = Server(proc, client, f"http://127.0.0.1:{port}/api/v0.0.1", err_path)
            login = client.post(f"{server.base}/login", json={
                "username": "api", "password": md5_hex("s3cret")}).json()
            assert login["status"] == "Success", login
            server.token = login["token"]
            yield server
    assert "Traceback" not in err_path.read_text(errors="replace")


def cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real `ippbx` executable, as an operator runs it beside the server."""
    return subprocess.run([*ippbx_command(), *argv], capture_output=True, text=True,
                          timeout=30, cwd=cwd)


def import_with_1007(config: Path) -> None:
    """`ippbx config import OTHER.toml --config CONFIG` while the server runs; OTHER is
    CONFIG's text with one more extension, 1007."""
    other = config.with_name("other.toml")
    other.write_text(config.read_text() + extension("1007"))
    done = cli("config", "import", str(other), "--config", str(config), cwd=config.parent)
    assert done.returncode == 0, done.stderr
    assert "extensions 2" in done.stdout, done.stdout
    assert "goes on with its configuration until it gets SIGHUP" in done.stdout, done.stdout


# -- a. TOML mode -------------------------------------------------------------------------------
def test_toml_mode_sighup_rereads_the_file_and_keeps_going_on_a_bad_one(
    tmp_path: Path, free_port: FreePort
) -> None:
    config, port = write_config(tmp_path, free_port, NO_MEDIA)
    store = tmp_path / "ippbx.sqlite3"
    text = config.read_text().replace(f'path = "{store}"', f'path = "{store}"\nconfig = "toml"')
    assert 'config = "toml"' in text
    config.write_text(text)

    with serving(config, port) as server:
        assert server.extensions() == ["1001"]
        # the file is the configuration: the write API changes nothing
        assert server.post("extension/add", {"number": "1009",
                                             "registerpassword": "pw1009"}) == REFUSED

        config.write_text(text + extension("1006"))
        server.hangup()
        server.until(lambda: "1006" in server.extensions(), "1006 after SIGHUP")
        assert server.extensions() == ["1001", "1006"]
        assert server.post("extension/query", {"extid": "1006"})["extinfos"][0][
            "registerpassword"] == "pw1006"

        # a file that is not valid (a route naming a trunk that does not exist)
        config.write_text(text + extension("1006") + extension("1007")
                          + '\n[[outbound_routes]]\nname = "r"\nmatch = "X."\n'
                            'trunks = ["nowhere"]\n')
        server.hangup()
        server.until(lambda: "not reloaded" in server.stderr(), "the error in the log")
        assert "no trunk named 'nowhere'" in server.stderr(), server.stderr()
        assert server.proc.poll() is None
        assert server.extensions() == ["1001", "1006"]  # (what it had, not 1007)
        assert server.post("outroute/query", {"name": "all"})["outroutes"] == []

        # a valid file again (without 1006): taken
        config.write_text(text)
        server.hangup()
        server.until(lambda: server.extensions() == ["1001"], "1006 gone after SIGHUP")
        assert server.post("extension/add", {"number": "1009",
                                             "registerpassword": "pw1009"}) == REFUSED


# -- b. store mode: import, SIGHUP --------------------------------------------------------------
def test_store_mode_sighup_takes_an_import_and_api_changes_follow_it(
    tmp_path: Path, free_port: FreePort
) -> None:
    config, port = write_config(tmp_path, free_port, NO_MEDIA)
    with serving(config, port) as server:
        assert server.extensions() == ["1001"]
        import_with_1007(config)
        assert server.extensions() == ["1001"]  # (it goes on with its own until SIGHUP)

        server.hangup()
        server.until(lambda: "1007" in server.extensions(), "1007 after SIGHUP")
        assert server.extensions() == ["1001", "1007"]
        assert server.post("extension/add", {"number": "1008", "registerpassword":
                                             "pw1008"}) == {"status": "Success"}
        assert server.extensions() == ["1001", "1007", "1008"]

    done = cli("config", "export", "--config", str(config), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    exported = parse_config(done.stdout)
    assert [e.number for e in exported.extensions] == ["1001", "1007", "1008"]
    assert [e.password for e in exported.extensions] == ["pw1001", "pw1007", "pw1008"]


# -- c. store mode: an API change between the import and SIGHUP ----------------------------------
def test_store_mode_change_against_a_stale_store_is_refused_then_the_retry_works(
    tmp_path: Path, free_port: FreePort
) -> None:
    config, port = write_config(tmp_path, free_port, NO_MEDIA)
    with serving(config, port) as server:
        assert server.extensions() == ["1001"]
        import_with_1007(config)

        body = {"number": "1008", "registerpassword": "pw1008"}
        assert server.post("extension/add", body) == REFUSED  # (made against the old one)
        # ... and the server took the stored configuration, without any SIGHUP
        assert server.extensions() == ["1001", "1007"]
        assert server.post("extension/add", body) == {"status": "Success"}
        assert server.extensions() == ["1001", "1007", "1008"]
        assert "SIGHUP" not in server.stderr()

    done = cli("config", "export", "--config", str(config), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [e.number for e in parse_config(done.stdout).extensions] == [
        "1001", "1007", "1008"]
