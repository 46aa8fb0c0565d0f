"""Which code runs a package: its Python source, or the same source compiled to C by mypyc.

`tools/build_native.py` (`make native`) compiles the modules of `ippbx.sip` into
`src/ippbx/sip/_native/`, with a manifest of each compiled module's source digest, of
mypyc's shared library beside them and of the interpreter it was built for. `ippbx.sip`
calls `use_compiled` as it is imported: the compiled modules go first on the package's
path only when the manifest matches the source beside it, module by module, and the
running interpreter, and every compiled file is there. A source edited after the build
(or a checkout of another commit) makes the whole package run as Python, with one
warning, never a mix: compiled code reaches into the classes of the modules compiled
with it.

IPPBX_PURE=1 runs the Python source even where a matching build exists (the profilers,
which cannot see into compiled code; a test of the fallback). `compiled_modules()` says
what a process runs, for the log line at start, the tests and the benches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import sysconfig
from pathlib import Path

NATIVE_DIR = "_native"
MANIFEST = "manifest.json"

_log = logging.getLogger(__name__)
_compiled: dict[str, Path] = {}


def source_digest(path: Path) -> str:
    """The SHA-256 of one module's source, as the manifest records it."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def interpreter_tag() -> str:
    """What a compiled module is bound to: the implementation, version and ABI."""
    return f"{sys.implementation.cache_tag}-{sys.abiflags}-{sys.platform}"


def stale_modules(package_dir: Path) -> list[str] | None:
    """The modules of a build in `package_dir/_native` whose source changed since it was
    made; None when there is no usable build (absent, unreadable, another interpreter's,
    a compiled file missing)."""
    native = package_dir / NATIVE_DIR
    try:
        manifest = json.loads((native / MANIFEST).read_text())
        modules: dict[str, str] = manifest["modules"]
        if manifest["interpreter"] != interpreter_tag() or not modules:
            return None
        suffix = sysconfig.get_config_var("EXT_SUFFIX")
        for name in [*modules, manifest["library"]]:
            if not (native / f"{name}{suffix}").is_file():
                return None  # (a half build would run partly as Python: never a mix)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    stale = []
    for name, digest in modules.items():
        try:
            if source_digest(package_dir / f"{name}.py") != digest:
                stale.append(name)
        except OSError:
            stale.append(name)
    return stale


def use_compiled(package: str, path: list[str]) -> bool:
    """Put a package's compiled modules first on its `__path__` when they match its source.

    Called from the package's `__init__` before any of its modules is imported.
    """
    if os.environ.get("IPPBX_PURE", "") not in ("", "0"):
        return False
    package_dir = Path(path[0])
    stale = stale_modules(package_dir)
    if stale is None:
        return False
    if stale:
        _log.warning("%s runs as Python: %s changed since `make native` compiled it",
                     package, ", ".join(f"{name}.py" for name in sorted(stale)))
        return False
    native = package_dir / NATIVE_DIR
    path.insert(0, str(native))
    _compiled[package] = native
    return True


def compiled_modules() -> dict[str, Path]:
    """The packages that run compiled in this process, and where from."""
    return dict(_compiled)
