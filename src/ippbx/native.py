"""Which code runs a package: its Python source, or the same source compiled to C by mypyc.

`tools/build_native.py` (`make native`) compiles the modules of `ippbx.sip`, and those of
`ippbx.pbx` every call runs through, in one mypyc group: each package's into its own
`_native/` directory, with a manifest of each compiled module's source digest, of the
digests of the ippbx modules they import (their types are compiled in), of the modules
kept as Python, of mypyc's shared library (in `sip/_native/`; the PBX's manifest names
`ippbx.sip` as the package it runs after), of the build's id, of each compiled file's
size and of the interpreter it was built for. Each package calls `use_compiled` as it is
imported: its compiled modules go first on the package's path only when the manifest
matches the source beside it, module by module, and the running interpreter, every
compiled file is there whole, and the shared library loads (for the PBX: `ippbx.sip`
runs compiled from the very same build). A source edited after the build, a module added
since (or a checkout of another commit) makes the whole package run as Python, with one
warning, never a mix: compiled code reaches into the classes of the modules compiled
with it. The SIP stack may run compiled under a PBX in Python (the SIP stack imports
nothing of the PBX); never the other way round.

IPPBX_PURE=1 runs the Python source even where a matching build exists (the profilers,
which cannot see into compiled code; a test of the fallback). `compiled_modules()` says
what a process runs, for the log line at start, the tests and the benches.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

NATIVE_DIR = "_native"
MANIFEST = "manifest.json"
EXT_SUFFIX = str(sysconfig.get_config_var("EXT_SUFFIX"))  # a compiled module's file ending

_log = logging.getLogger(__name__)
_compiled: dict[str, Path] = {}
_builds: dict[str, str] = {}  # a package running compiled: the id of its build


def pure_requested() -> bool:
    """IPPBX_PURE set (and not 0): run the Python source whatever is built."""
    return os.environ.get("IPPBX_PURE", "") not in ("", "0")


def source_digest(path: Path) -> str:
    """The SHA-256 of one module's source, as the manifest records it."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def interpreter_tag() -> str:
    """What a compiled module is bound to: the implementation, version and ABI."""
    return f"{sys.implementation.cache_tag}-{sys.abiflags}-{sys.platform}"


@dataclass(frozen=True, slots=True)
class Build:
    """A build in `package_dir/_native` for this interpreter, every file of it there."""

    build_id: str  # the same in every package's manifest of one build
    library: str | None  # mypyc's shared library, which every compiled module loads first
    after: str | None  # (no library here) the package whose build has it
    stale: list[str]  # the modules whose source changed (or came) since the build, and
    # the modules they import that did ("pbx/events": a path under ippbx/, no .py)


def inspect_build(package_dir: Path) -> Build | None:
    """The build beside a package's source; None when there is none usable (absent,
    unreadable, another interpreter's, a compiled file missing or cut short)."""
    native = package_dir / NATIVE_DIR
    try:
        manifest = json.loads((native / MANIFEST).read_text())
        modules: dict[str, str] = manifest["modules"]
        depends: dict[str, str] = manifest["depends"]
        # the modules the build leaves as Python, where it compiles all others (the SIP
        # stack); absent where it compiles only those it names (the PBX)
        kept: list[str] | None = manifest.get("python")
        library: str | None = manifest.get("library")
        after: str | None = manifest.get("after")
        sizes: dict[str, int] = manifest["sizes"]
        build_id = manifest["build"]
        if (manifest["interpreter"] != interpreter_tag() or not modules
                or (library is None) == (after is None) or not isinstance(build_id, str)
                or not isinstance(depends, dict)):
            return None
        # Every file there (a half build would run partly as Python: never a mix) and
        # whole: the dynamic loader dies of SIGBUS on a truncated library, which no
        # ImportError could catch.
        for name in [*modules, *([library] if library is not None else [])]:
            if (native / f"{name}{EXT_SUFFIX}").stat().st_size != sizes[name]:
                return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    stale = []
    for name, digest in modules.items():
        try:
            if source_digest(package_dir / f"{name}.py") != digest:
                stale.append(name)
        except OSError:
            stale.append(name)
    if kept is not None:  # a module added since the build is one it did not compile
        stale += sorted(p.stem for p in package_dir.glob("*.py")
                        if p.stem not in modules and p.stem not in kept)
    ippbx_dir = package_dir.parent
    for name, digest in sorted(depends.items()):
        try:
            if source_digest(ippbx_dir / f"{name}.py") != digest:
                stale.append(name)
        except OSError:
            stale.append(name)
    return Build(build_id, library, after, stale)


def use_compiled(package: str, path: list[str]) -> bool:
    """Put a package's compiled modules first on its `__path__` when they match its source.

    Called from the package's `__init__` before any of its modules is imported. The
    shared library is loaded here, so that a build that cannot load (a damaged file)
    leaves the package in Python rather than failing at its first compiled module; a
    build that runs after another package's imports that one first, and runs only with
    that package's compiled code of the same build.
    """
    if pure_requested():
        return False
    package_dir = Path(path[0])
    build = inspect_build(package_dir)
    if build is None:
        return False
    if build.stale:
        _log.warning("%s runs as Python: %s changed since the last `make native`",
                     package, ", ".join(f"{name}.py" for name in sorted(build.stale)))
        return False
    if build.after is not None:
        importlib.import_module(build.after)
        if _builds.get(build.after) != build.build_id:
            if build.after in _builds:  # (not compiled at all: it said why)
                _log.warning("%s runs as Python: %s runs another build; `make native` "
                             "builds both again", package, build.after)
            return False
    native = package_dir / NATIVE_DIR
    path.insert(0, str(native))
    if build.library is not None:
        try:
            importlib.import_module(f"{package}.{build.library}")
        except ImportError as exc:
            path.remove(str(native))
            _log.warning("%s runs as Python: its compiled library does not load (%s); "
                         "`make native` builds it again", package, exc)
            return False
    _compiled[package] = native
    _builds[package] = build.build_id
    return True


def compiled_modules() -> dict[str, Path]:
    """The packages that run compiled in this process, and where from."""
    return dict(_compiled)
