"""The compiled SIP stack and PBX call path (ippbx.native, tools/build_native.py): they run
where `make native` built them for the very source beside them, and never once that
source (or a module whose types they were compiled with) changed.

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

import ippbx.pbx.b2bua
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
PBX = SRC / "ippbx" / "pbx"
BUILT = (SIP / NATIVE_DIR / MANIFEST).exists() and (PBX / NATIVE_DIR / MANIFEST).exists()
NOT_BUILT = "no compiled SIP stack and PBX: `make native` builds them (make test does)"

# In a child: which file each module runs from, and what the loader said. (Compiled, a
# module's __file__ is the shared library's idea of it; its name ends as a build's.)
PROBE = """
import json, ippbx.pbx.b2bua, ippbx.pbx.events, ippbx.sip.message, ippbx.sip.ua, \\
    ippbx.sip.transport, ippbx.native
print(json.dumps({m.__name__: m.__file__ for m in
                  (ippbx.sip.message, ippbx.sip.ua, ippbx.sip.transport, ippbx.pbx.b2bua,
                   ippbx.pbx.events)}))
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
    """A copy of ippbx, the builds included, as another checkout would hold it."""
    assert BUILT, NOT_BUILT
    shutil.copytree(SRC / "ippbx", tmp_path / "ippbx",
                    ignore=shutil.ignore_patterns("__pycache__", "prompts", "console"))
    return tmp_path


def stale(copy: Path, package: str = "sip") -> list[str] | None:
    build = inspect_build(copy / "ippbx" / package)
    return None if build is None else build.stale


def compiled(path: str) -> bool:
    return path.endswith(EXT_SUFFIX)


def edit(path: Path) -> None:
    path.write_text(path.read_text() + "\n# edited after the build\n")


def test_this_process_runs_the_stack_it_was_asked_for() -> None:
    """The tests run on the compiled stack (make test), and once more on the Python source
    with IPPBX_PURE=1: each run must be on the one it names."""
    if pure_requested():
        assert ippbx.sip.message.__file__.endswith(".py")
        assert ippbx.pbx.b2bua.__file__.endswith(".py")
        assert compiled_modules() == {}
    else:
        assert BUILT, NOT_BUILT
        for module, package in ((ippbx.sip.message, SIP), (ippbx.pbx.b2bua, PBX)):
            assert compiled(module.__file__ or ""), (
                f"{module.__name__} runs as Python although a build exists: "
                f"the build: {inspect_build(package)} (make native)")
        assert compiled_modules() == {"ippbx.sip": SIP / NATIVE_DIR,
                                      "ippbx.pbx": PBX / NATIVE_DIR}


def test_a_build_that_matches_its_source_is_loaded_and_transport_stays_python(
        copy: Path) -> None:
    files, packages, stderr = probe(copy)
    assert compiled(files["ippbx.sip.message"]) and compiled(files["ippbx.sip.ua"])
    assert files["ippbx.sip.transport"].endswith("transport.py")
    assert compiled(files["ippbx.pbx.b2bua"])
    assert files["ippbx.pbx.events"].endswith("events.py")  # (not on the list)
    assert packages == ["ippbx.pbx", "ippbx.sip"] and stderr == ""


def test_a_source_edited_after_the_build_runs_the_whole_package_as_python(
        copy: Path) -> None:
    edit(copy / "ippbx" / "sip" / "uri.py")
    files, packages, stderr = probe(copy)
    assert all(path.endswith(".py") for path in files.values()), files
    assert packages == []
    assert "uri.py changed since the last `make native`" in stderr
    assert stale(copy) == ["uri"]


def test_a_module_missing_from_the_source_counts_as_changed(copy: Path) -> None:
    (copy / "ippbx" / "sip" / "oversize.py").unlink()
    assert stale(copy) == ["oversize"]


def test_a_module_added_since_the_build_counts_as_changed(copy: Path) -> None:
    """The build did not compile it: `make native` must build again (never a mix)."""
    (copy / "ippbx" / "sip" / "later.py").write_text('"""Added after the build."""\n')
    assert stale(copy) == ["later"]
    files, packages, stderr = probe(copy)
    assert packages == [] and "later.py changed since the last `make native`" in stderr


@pytest.mark.parametrize("lost", ["uri", "native__mypyc"])
def test_a_build_missing_a_compiled_file_is_not_used_at_all(copy: Path, lost: str) -> None:
    (copy / "ippbx" / "sip" / NATIVE_DIR / f"{lost}{EXT_SUFFIX}").unlink()
    assert stale(copy) is None
    files, packages, _ = probe(copy)
    assert all(path.endswith(".py") for path in files.values()), files
    assert packages == []


def test_a_build_for_another_interpreter_or_a_broken_manifest_is_ignored(copy: Path) -> None:
    manifest = copy / "ippbx" / "sip" / NATIVE_DIR / MANIFEST
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "interpreter": "cpython-39--linux"}))
    files, packages, stderr = probe(copy)
    assert files["ippbx.sip.message"].endswith(".py") and packages == [] and stderr == ""
    for broken in ("{", "[]", '{"interpreter": 1}', json.dumps({**data, "modules": {}}),
                   json.dumps({**data, "library": None}), json.dumps({**data, "sizes": {}}),
                   json.dumps({**data, "after": "ippbx.sip"}), json.dumps({**data, "build": 5}),
                   json.dumps({**data, "depends": []})):
        manifest.write_text(broken)
        assert stale(copy) is None


def test_a_compiled_file_cut_short_is_not_loaded(copy: Path) -> None:
    """(Loading it would not raise: the dynamic loader dies of SIGBUS.)"""
    library = copy / "ippbx" / "sip" / NATIVE_DIR / f"native__mypyc{EXT_SUFFIX}"
    library.write_bytes(library.read_bytes()[:4096])
    assert stale(copy) is None
    files, packages, _ = probe(copy)
    assert all(path.endswith(".py") for path in files.values()), files
    assert packages == []


def test_a_shared_library_that_does_not_load_leaves_the_package_in_python(
        copy: Path) -> None:
    library = copy / "ippbx" / "sip" / NATIVE_DIR / f"native__mypyc{EXT_SUFFIX}"
    library.write_bytes(bytes(library.stat().st_size))  # its size, but no ELF file
    assert stale(copy) == []  # (every file there, every digest matching)
    files, packages, stderr = probe(copy)
    assert all(path.endswith(".py") for path in files.values()), files
    assert packages == []
    assert "its compiled library does not load" in stderr


def test_ippbx_pure_runs_the_python_source_beside_a_good_build(copy: Path) -> None:
    files, packages, _ = probe(copy, IPPBX_PURE="1")
    assert files["ippbx.sip.message"].endswith(".py") and packages == []


def test_a_pbx_module_edited_after_the_build_runs_the_pbx_as_python_on_a_compiled_stack(
        copy: Path) -> None:
    """The SIP stack imports nothing of the PBX: it stays compiled."""
    edit(copy / "ippbx" / "pbx" / "b2bua.py")
    assert stale(copy, "pbx") == ["b2bua"] and stale(copy) == []
    files, packages, stderr = probe(copy)
    assert files["ippbx.pbx.b2bua"].endswith("b2bua.py")
    assert compiled(files["ippbx.sip.message"]) and packages == ["ippbx.sip"]
    assert "ippbx.pbx runs as Python: b2bua.py changed since the last `make native`" in stderr


def test_a_module_the_pbx_was_compiled_against_counts_as_changed(copy: Path) -> None:
    """events.py stays Python, but the compiled B2BUA checks the types it declares."""
    edit(copy / "ippbx" / "pbx" / "events.py")
    assert stale(copy, "pbx") == ["pbx/events"] and stale(copy) == []
    files, packages, stderr = probe(copy)
    assert files["ippbx.pbx.b2bua"].endswith("b2bua.py") and packages == ["ippbx.sip"]
    assert "pbx/events.py changed since the last `make native`" in stderr
    edit(copy / "ippbx" / "config.py")  # (what the B2BUA reads its settings from)
    assert stale(copy, "pbx") == ["config", "pbx/events"]


def test_a_module_added_to_the_pbx_since_the_build_is_python_beside_it(copy: Path) -> None:
    """Only the PBX's modules it names are compiled: one more is one more in Python."""
    (copy / "ippbx" / "pbx" / "later.py").write_text('"""Added after the build."""\n')
    assert stale(copy, "pbx") == []
    files, packages, stderr = probe(copy)
    assert compiled(files["ippbx.pbx.b2bua"]) and packages == ["ippbx.pbx", "ippbx.sip"]


def test_the_pbx_runs_compiled_only_on_the_sip_stack_of_its_own_build(copy: Path) -> None:
    """Its compiled code reaches into the stack's classes as that build laid them out."""
    manifest = copy / "ippbx" / "pbx" / NATIVE_DIR / MANIFEST
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "build": "another build"}))
    files, packages, stderr = probe(copy)
    assert files["ippbx.pbx.b2bua"].endswith("b2bua.py") and packages == ["ippbx.sip"]
    assert "ippbx.pbx runs as Python: ippbx.sip runs another build" in stderr
    manifest.write_text(json.dumps(data))
    edit(copy / "ippbx" / "sip" / "uri.py")  # the SIP stack in Python: the PBX too, and
    files, packages, stderr = probe(copy)  # only the stack's warning
    assert all(not compiled(path) for path in files.values()), files
    assert packages == [] and stderr.count("runs as Python") == 1
