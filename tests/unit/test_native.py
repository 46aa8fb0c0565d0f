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
from pathlib import Path

import pytest

import ippbx.sip.message
from ippbx.native import (
    EXT_SUFFIX,
    MANIFEST,
    NATIVE_DIR,
    compiled_modules,
    inspect_build,
    pure_requested,
)

SRC = Path(__file__).resolve().parents[2] / "src"
SIP = SRC / "ippbx" / "sip"
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
    """A copy of what the probe imports, the build included, as another checkout would
    hold them."""
    assert BUILT, NOT_BUILT
    for name in ("__init__.py", "native.py"):
        (tmp_path / "ippbx").mkdir(exist_ok=True)
        shutil.copy2(SRC / "ippbx" / name, tmp_path / "ippbx" / name)
    shutil.copytree(SIP, tmp_path / "ippbx" / "sip", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def stale(copy: Path) -> list[str] | None:
    build = inspect_build(copy / "ippbx" / "sip")
    return None if build is None else build.stale


def test_this_process_runs_the_stack_it_was_asked_for() -> None:
    """The tests run on the compiled stack (make test), and once more on the Python source
    with IPPBX_PURE=1: each run must be on the one it names."""
    if pure_requested():
        assert ippbx.sip.message.__file__.endswith(".py")
        assert compiled_modules() == {}
    else:
        assert BUILT, NOT_BUILT
        assert ippbx.sip.message.__file__.endswith(EXT_SUFFIX), (
            "the SIP stack runs as Python although a build exists: "
            f"the build: {inspect_build(SIP)} (make native)")
        assert compiled_modules() == {"ippbx.sip": SIP / NATIVE_DIR}


def test_a_build_that_matches_its_source_is_loaded_and_transport_stays_python(
        copy: Path) -> None:
    files, compiled, stderr = probe(copy)
    assert files["ippbx.sip.message"].endswith(EXT_SUFFIX)
    assert files["ippbx.sip.ua"].endswith(EXT_SUFFIX)
    assert files["ippbx.sip.transport"].endswith("transport.py")
    assert compiled == ["ippbx.sip"] and stderr == ""


def test_a_source_edited_after_the_build_runs_the_whole_package_as_python(
        copy: Path) -> None:
    uri = copy / "ippbx" / "sip" / "uri.py"
    uri.write_text(uri.read_text() + "\n# edited after the build\n")
    files, compiled, stderr = probe(copy)
    assert all(path.endswith(".py") for path in files.values()), files
    assert compiled == []
    assert "uri.py changed since the last `make native`" in stderr
    assert stale(copy) == ["uri"]


def test_a_module_missing_from_the_source_counts_as_changed(copy: Path) -> None:
    (copy / "ippbx" / "sip" / "oversize.py").unlink()
    assert stale(copy) == ["oversize"]


def test_a_module_added_since_the_build_counts_as_changed(copy: Path) -> None:
    """The build did not compile it: `make native` must build again (never a mix)."""
    (copy / "ippbx" / "sip" / "later.py").write_text('"""Added after the build."""\n')
    assert stale(copy) == ["later"]
    files, compiled, stderr = probe(copy)
    assert compiled == [] and "later.py changed since the last `make native`" in stderr


@pytest.mark.parametrize("lost", ["uri", "native__mypyc"])
def test_a_build_missing_a_compiled_file_is_not_used_at_all(copy: Path, lost: str) -> None:
    (copy / "ippbx" / "sip" / NATIVE_DIR / f"{lost}{EXT_SUFFIX}").unlink()
    assert stale(copy) is None
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
                   json.dumps({**data, "library": None}), json.dumps({**data, "sizes": {}})):
        manifest.write_text(broken)
        assert stale(copy) is None


def test_a_compiled_file_cut_short_is_not_loaded(copy: Path) -> None:
    """(Loading it would not raise: the dynamic loader dies of SIGBUS.)"""
    library = copy / "ippbx" / "sip" / NATIVE_DIR / f"native__mypyc{EXT_SUFFIX}"
    library.write_bytes(library.read_bytes()[:4096])
    assert stale(copy) is None
    files, compiled, _ = probe(copy)
    assert all(path.endswith(".py") for path in files.values()), files
    assert compiled == []


def test_a_shared_library_that_does_not_load_leaves_the_package_in_python(
        copy: Path) -> None:
    library = copy / "ippbx" / "sip" / NATIVE_DIR / f"native__mypyc{EXT_SUFFIX}"
    library.write_bytes(bytes(library.stat().st_size))  # its size, but no ELF file
    assert stale(copy) == []  # (every file there, every digest matching)
    files, compiled, stderr = probe(copy)
    assert all(path.endswith(".py") for path in files.values()), files
    assert compiled == []
    assert "its compiled library does not load" in stderr


def test_ippbx_pure_runs_the_python_source_beside_a_good_build(copy: Path) -> None:
    files, compiled, _ = probe(copy, IPPBX_PURE="1")
    assert files["ippbx.sip.message"].endswith(".py") and compiled == []
