"""The compiled SIP stack (ippbx.native, tools/build_native.py): it runs where `make native`
built it for the very source beside it, and never once that source changed.

`make test` builds it first; these tests fail, rather than skip, where it is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import ippbx.sip.message
from ippbx.native import MANIFEST, NATIVE_DIR, compiled_modules, stale_modules

SRC = Path(__file__).resolve().parents[2] / "src"
SIP = SRC / "ippbx" / "sip"
SUFFIX = str(sysconfig.get_config_var("EXT_SUFFIX"))
PURE = os.environ.get("IPPBX_PURE", "") not in ("", "0")
BUILT = (SIP / NATIVE_DIR / MANIFEST).exists()
NOT_BUILT = "no compiled SIP stack: `make native` builds it (make test does)"

# In a child: which file each module of ippbx.sip runs from, and what the loader said.
PROBE = """
import json, ippbx.sip.message, ippbx.sip.ua, ippbx.sip.transport, ippbx.native
print(json.dumps({m.__name__: m.__file__ for m in
                  (ippbx.sip.message, ippbx.sip.ua, ippbx.sip.transport)}))
print(json.dumps(sorted(ippbx.native.compiled_modules())))
"""


def probe(src: Path, **env: str) -> tuple[dict[str, str], list[str], str]:
    environ = {k: v for k, v in os.environ.items() if k != "IPPBX_PURE"}
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          env={**environ, "PYTHONPATH": str(src), **env}, timeout=60,
                          check=True)
    files, compiled = (json.loads(line) for line in done.stdout.splitlines())
    return files, compiled, done.stderr


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of the package and its build, as another checkout would hold them."""
    assert BUILT, NOT_BUILT
    shutil.copytree(SRC / "ippbx", tmp_path / "ippbx",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_this_process_runs_the_stack_it_was_asked_for() -> None:
    """The tests run on the compiled stack (make test), and once more on the Python source
    with IPPBX_PURE=1: each run must be on the one it names."""
    if PURE:
        assert ippbx.sip.message.__file__.endswith(".py")
        assert compiled_modules() == {}
    else:
        assert BUILT, NOT_BUILT
        assert ippbx.sip.message.__file__.endswith(SUFFIX), (
            "the SIP stack runs as Python although a build exists: "
            f"stale modules {stale_modules(SIP)} (make native)")
        assert compiled_modules() == {"ippbx.sip": SIP / NATIVE_DIR}


def test_a_build_that_matches_its_source_is_loaded_and_transport_stays_python(
        copy: Path) -> None:
    files, compiled, stderr = probe(copy)
    assert files["ippbx.sip.message"].endswith(SUFFIX)
    assert files["ippbx.sip.ua"].endswith(SUFFIX)
    assert files["ippbx.sip.transport"].endswith("transport.py")
    assert compiled == ["ippbx.sip"] and stderr == ""


def test_a_source_edited_after_the_build_runs_the_whole_package_as_python(
        copy: Path) -> None:
    uri = copy / "ippbx" / "sip" / "uri.py"
    uri.write_text(uri.read_text() + "\n# edited after the build\n")
    files, compiled, stderr = probe(copy)
    assert all(path.endswith(".py") for path in files.values()), files
    assert compiled == []
    assert "uri.py changed since `make native`" in stderr
    assert stale_modules(copy / "ippbx" / "sip") == ["uri"]


def test_a_module_missing_from_the_source_counts_as_changed(copy: Path) -> None:
    (copy / "ippbx" / "sip" / "oversize.py").unlink()
    assert stale_modules(copy / "ippbx" / "sip") == ["oversize"]


@pytest.mark.parametrize("lost", ["uri", "native__mypyc"])
def test_a_build_missing_a_compiled_file_is_not_used_at_all(copy: Path, lost: str) -> None:
    (copy / "ippbx" / "sip" / NATIVE_DIR / f"{lost}{SUFFIX}").unlink()
    assert stale_modules(copy / "ippbx" / "sip") is None
    files, compiled, _ = probe(copy)
    assert all(path.endswith(".py") for path in files.values()), files
    assert compiled == []


def test_a_build_for_another_interpreter_or_a_broken_manifest_is_ignored(copy: Path) -> None:
    manifest = copy / "ippbx" / "sip" / NATIVE_DIR / MANIFEST
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "interpreter": "cpython-39--linux"}))
    files, compiled, stderr = probe(copy)
    assert files["ippbx.sip.message"].endswith(".py") and compiled == [] and stderr == ""
    for broken in ("{", "[]", '{"interpreter": 1}', json.dumps({**data, "modules": {}}),
                   json.dumps({**data, "library": None})):
        manifest.write_text(broken)
        assert stale_modules(copy / "ippbx" / "sip") is None


def test_ippbx_pure_runs_the_python_source_beside_a_good_build(copy: Path) -> None:
    files, compiled, _ = probe(copy, IPPBX_PURE="1")
    assert files["ippbx.sip.message"].endswith(".py") and compiled == []
