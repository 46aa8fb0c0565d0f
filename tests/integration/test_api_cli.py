"""The `ippbx` command: a real `ippbx serve` subprocess stopped by SIGTERM, and check-config."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import IO

import httpx
import pytest

from ippbx.api.sessions import md5_hex
from ippbx.cli import main

FreePort = Callable[..., int]
REPO = Path(__file__).resolve().parents[2]


def ippbx_command() -> list[str]:
    script = Path(sys.executable).with_name("ippbx")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from ippbx.cli import main; sys.exit(main())"]


@contextmanager
def ippbx_serve(config: Path, port: int, *, stdout: IO[bytes], stderr: IO[bytes] | int,
                describe: Callable[[], str]) -> Iterator[subprocess.Popen[bytes]]:
    """`ippbx serve --config CONFIG` (run beside the file), once its API answers at
    `port` (15 s at most), until the block ends: then SIGTERM, and it must exit 0 (killed
    if the block failed). `describe()` (its log) goes with every failed check."""
    proc = subprocess.Popen([*ippbx_command(), "serve", "--config", str(config)],
                            stdout=stdout, stderr=stderr, cwd=config.parent)
    try:
        deadline = time.monotonic() + 15
        with httpx.Client(timeout=2, trust_env=False) as client:
            while True:
                assert proc.poll() is None, describe()
                assert time.monotonic() < deadline, "ippbx serve did not come up in 15 s"
                try:
                    client.post(f"http://127.0.0.1:{port}/api/v0.0.1/deviceinfo/query")
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
        yield proc
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, describe()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


def write_config(tmp_path: Path, free_port: FreePort, extra: str = "") -> tuple[Path, int]:
    api_port = free_port()
    path = tmp_path / "ippbx.toml"
    path.write_text(
        f"""
[pbx]
sn = "testsn0001"
name = "test pbx"

[sip]
listen = "127.0.0.1:{free_port(socket.SOCK_DGRAM)}"

[api]
listen = "127.0.0.1:{api_port}"
username = "api"
password = "s3cret"

[store]
path = "{tmp_path / 'ippbx.sqlite3'}"

[[extensions]]
number = "1001"
password = "pw1001"
{extra}
""",
        encoding="utf-8",
    )
    return path, api_port


def test_serve_subprocess_answers_and_exits_cleanly_on_sigterm(
    tmp_path: Path, free_port: FreePort
) -> None:
    config, port = write_config(tmp_path, free_port)
    log = (tmp_path / "serve.log").open("w+b")
    proc = subprocess.Popen(
        [*ippbx_command(), "serve", "--config", str(config)],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env={**os.environ},
    )
    base = f"http://127.0.0.1:{port}/api/v0.0.1"
    try:
        token = None
        deadline = time.monotonic() + 10
        with httpx.Client(timeout=2) as client:
            while token is None:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                assert time.monotonic() < deadline, "ippbx serve did not come up in 10 s"
                try:
                    answer = client.post(
                        f"{base}/login", json={"username": "api", "password": md5_hex("s3cret")}
                    ).json()
                except httpx.TransportError:
                    time.sleep(0.05)
                    continue
                assert answer["status"] == "Success", answer
                token = answer["token"]
            response = client.post(f"{base}/outbound/query?token={token}")
            assert response.content == b'{"status":"Success","outbound":[]}'
            response = client.post(f"{base}/outbound/query?token={token}&type=xml")
            assert response.content.startswith(b'<?xml version="1.0" encoding="UTF-8" ?>\n<xml>')
            info = client.post(f"{base}/deviceinfo/query?token={token}").json()["deviceinfo"]
            assert (info["sn"], info["devicename"], info["extensionstatus"]) == (
                "testsn0001", "test pbx", "0/1")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        log.close()
    output = (tmp_path / "serve.log").read_text()
    assert "API listening on http://127.0.0.1:" in output
    assert token not in output
    assert "Traceback" not in output
    # its own rtpengine ([media] engine "auto", installed by make test) came and went
    found = re.search(r"rtpengine \(pid (\d+)\) answers", output)
    assert found is not None, output
    assert not Path(f"/proc/{found.group(1)}").exists(), "rtpengine outlived ippbx serve"


def test_check_config_accepts_the_demo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(REPO / "examples" / "demo.toml")]) == 0
    with resources.as_file(resources.files("ippbx").joinpath("demo.toml")) as embedded:
        assert main(["check-config", str(embedded)]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.count("OK") == 2


BAD_CONFIGS = {
    "unknown-key": ("[api]\nbogus = 1\n", "api.bogus: unknown key"),
    "duplicate-extension": (
        '[[extensions]]\nnumber = "1001"\npassword = "again"\n', "duplicate extension number"
    ),
    "route-to-missing-trunk": (
        '[[outbound_routes]]\nname = "r"\nmatch = "X."\ntrunks = ["nowhere"]\n',
        "no trunk named 'nowhere'",
    ),
    "bad-pattern": (
        '[[trunks]]\nname = "t"\nhost = "127.0.0.1"\n'
        '[[outbound_routes]]\nname = "r"\nmatch = "[12"\ntrunks = ["t"]\n',
        "unclosed '['",
    ),
    "not-toml": ("[api\n", "not valid TOML"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
@pytest.mark.parametrize("command", ["check-config", "serve"])
def test_bad_config_exits_2_with_one_line(
    tmp_path: Path, free_port: FreePort, capsys: pytest.CaptureFixture[str], case: str,
    command: str,
) -> None:
    extra, reason = BAD_CONFIGS[case]
    if case == "unknown-key":
        path = tmp_path / "bad.toml"
        path.write_text('[api]\npassword = "x"\nbogus = 1\n', encoding="utf-8")
    elif case == "not-toml":
        path = tmp_path / "bad.toml"
        path.write_text(extra, encoding="utf-8")
    else:
        path, _ = write_config(tmp_path, free_port, extra)
    argv = ["check-config", str(path)] if command == "check-config" else [
        "serve", "--config", str(path)]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert reason in err and str(path) in err


def test_check_config_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(tmp_path / "absent.toml")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_check_config_real_executable(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[api]\npassword = "x"\nbogus = 1\n', encoding="utf-8")
    done = subprocess.run(
        [*ippbx_command(), "check-config", str(bad)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"{bad}: api.bogus: unknown key"]
    done = subprocess.run(
        [*ippbx_command(), "check-config", str(REPO / "examples" / "demo.toml")],
        capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 0, done.stderr
