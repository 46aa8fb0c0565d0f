#!/usr/bin/env python3
"""Compile ippbx's SIP stack and the PBX's call path to C with mypyc, beside their source;
`make native` runs it.

    python tools/build_native.py [--src DIR] [--jobs N] [--if-stale]

Every module of `ippbx.sip` but the package's `__init__` and the socket layer is
compiled: the parser, the header views, transactions, dialogs, sessions and the user
agent. `transport.py` stays Python: a thin shell around uvloop's sockets, compiled it
made no measurable difference (BENCHMARKS.md, "Issue 13: the SIP stack compiled"). So
are the modules of `ippbx.pbx` every call runs through (`PBX_COMPILED`: the B2BUA, the
registry, the dial plan, the trunks, the registrar…), in the same mypyc group: from
there they reach the SIP stack's compiled classes natively. Compiled in a group of
their own they gained nothing (BENCHMARKS.md, "Issue 13: the PBX's call path
compiled").

Each package's extension modules land in `DIR/ippbx/<package>/_native/` (DIR is this
checkout's `src/` by default) with `manifest.json`: the SHA-256 of each compiled source
and of every ippbx module they import (their types are compiled in), mypyc's shared
library (in `sip/_native/`, which the PBX's build names as the package it runs after),
the build's id, each compiled file's size and the interpreter the build is for.
`ippbx.native` loads a package's build only while all of it still matches, so an edit
to one module after a build runs the package as Python until the next `make native`.

Needs mypy (pinned in pyproject's `native` extra), setuptools, a C compiler and Python's
headers. The build runs in a temporary directory and replaces the old `_native/`s only
once it succeeded (a build left from older source is never loaded: see ippbx.native).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

GROUP = "ippbx.sip.native"  # mypyc's shared library: ippbx.sip.native__mypyc
LIBRARY_PACKAGE = "sip"  # the package whose _native/ holds that library
ROOT = Path(__file__).resolve().parents[1]

# The SIP stack: every module but these.
KEEP_PYTHON = {"__init__.py", "transport.py"}
# The PBX: only these, the modules each call goes through. The others stay Python: they
# run once a call or less (applications, call control), or their tests check what a
# compiled class does not offer (session_keeper.py's put stand-ins in typed fields,
# call_model.py's check the records' __slots__); those two are about 6 % of a busy
# ippbx's samples (BENCHMARKS.md), the next candidates.
PBX_COMPILED = ("auth", "b2bua", "calls", "capabilities", "cdr", "dialplan",
                "extension_state", "leftover_dialogs", "patterns", "redirects",
                "registrar", "security", "service", "session_timers", "trunks")


def compiled_sources(ippbx_dir: Path) -> dict[str, list[Path]]:
    """The modules compiled, by package (`sip`, `pbx`)."""
    sip = sorted(p for p in (ippbx_dir / "sip").glob("*.py") if p.name not in KEEP_PYTHON)
    return {"sip": sip, "pbx": [ippbx_dir / "pbx" / f"{name}.py" for name in PBX_COMPILED]}


def module_name(ippbx_dir: Path, path: Path) -> str:
    """`ippbx.pbx.b2bua` for `.../ippbx/pbx/b2bua.py` (a package for its `__init__`)."""
    parts = ("ippbx",) + path.relative_to(ippbx_dir).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_path(ippbx_dir: Path, name: str) -> Path | None:
    """The source of module `name` of ippbx, if it is one (not a name inside one)."""
    parts = name.split(".")[1:]
    candidates = [ippbx_dir.joinpath(*parts, "__init__.py")]
    if parts:
        candidates.insert(0, ippbx_dir.joinpath(*parts[:-1], parts[-1] + ".py"))
    return next((p for p in candidates if p.is_file()), None)


def imported(ippbx_dir: Path, path: Path) -> set[Path]:
    """The ippbx modules `path` imports (also under TYPE_CHECKING: their types are
    compiled in)."""
    here = module_name(ippbx_dir, path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1] if node.level else [])
            base = ".".join(filter(None, [base, node.module or ""]))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    found = {module_path(ippbx_dir, name) for name in names if name.startswith("ippbx.")}
    return {p for p in found if p is not None}


def dependencies(ippbx_dir: Path, sources: list[Path], compiled: set[Path]) -> list[Path]:
    """Every ippbx module `sources` import, directly or not, that the build does not
    compile: compiled code checks the types their annotations promise."""
    seen: set[Path] = set()
    todo = list(sources)
    while todo:
        for p in imported(ippbx_dir, todo.pop()):
            if p not in seen:
                seen.add(p)
                todo.append(p)
    return sorted(seen - compiled)


def dependency_key(ippbx_dir: Path, path: Path) -> str:
    """How a manifest names a dependency: its path under ippbx/, without `.py`."""
    return path.relative_to(ippbx_dir).with_suffix("").as_posix()


def build(src: Path, jobs: int) -> list[Path]:
    if str(src) not in sys.path:
        sys.path.insert(0, str(src))
    from mypyc.build import mypycify
    from setuptools import setup

    from ippbx.native import EXT_SUFFIX, MANIFEST, NATIVE_DIR, interpreter_tag, source_digest

    ippbx_dir = src / "ippbx"
    packages = compiled_sources(ippbx_dir)
    everything = [p for sources in packages.values() for p in sources]
    compiled = set(everything)
    # Digests first: the manifests must describe the very bytes mypyc reads.
    digests = {package: {p.stem: source_digest(p) for p in sources}
               for package, sources in packages.items()}
    depends = {package: {dependency_key(ippbx_dir, p): source_digest(p)
                         for p in dependencies(ippbx_dir, sources, compiled)}
               for package, sources in packages.items()}
    build_id = hashlib.sha256(json.dumps([interpreter_tag(), digests, depends],
                                         sort_keys=True).encode()).hexdigest()[:16]
    with tempfile.TemporaryDirectory(prefix="ippbx-native-") as tmp:
        work = Path(tmp)
        # From inside the work directory: mypyc names its C files relative to it, and
        # setuptools must not read this checkout's pyproject.toml. mypy follows the
        # imports to type-check against them, and reports errors of compiled modules only.
        with contextlib.chdir(work):
            extensions = mypycify(["--follow-imports=silent", *map(str, everything)],
                                  opt_level="3", group_name=GROUP, multi_file=jobs > 1,
                                  target_dir="c")
            for extension in extensions:  # the group's header is in the library's package
                extension.include_dirs.append(str(Path("c", "ippbx", LIBRARY_PACKAGE)))
            setup(name="ippbx-native", ext_modules=extensions,
                  script_args=["-q", "build_ext", "--build-lib", "lib", "--build-temp", "obj",
                               "--parallel", str(jobs)])
        library = GROUP.rsplit(".", 1)[1] + "__mypyc"
        staged: dict[str, Path] = {}
        for package in packages:
            built = {p.name.removesuffix(EXT_SUFFIX): p
                     for p in work.joinpath("lib", "ippbx", package).glob("*" + EXT_SUFFIX)}
            missing = set(digests[package]) - set(built)
            if missing:
                raise SystemExit(f"mypyc built no module for {', '.join(sorted(missing))}")
            staged[package] = stage = work / "staged" / package
            stage.mkdir(parents=True)
            for p in built.values():
                shutil.copy2(p, stage / p.name)
            manifest: dict[str, object] = {
                "interpreter": interpreter_tag(), "build": build_id,
                "modules": digests[package], "depends": depends[package],
                "sizes": {name: p.stat().st_size for name, p in built.items()}}
            if package == LIBRARY_PACKAGE:
                if set(built) != set(digests[package]) | {library}:
                    raise SystemExit(f"unexpected files in the build: {sorted(built)}")
                manifest["library"] = library
                # the modules left in Python (a module added later is one not compiled)
                manifest["python"] = sorted(name.removesuffix(".py") for name in KEEP_PYTHON)
            else:
                manifest["after"] = f"ippbx.{LIBRARY_PACKAGE}"  # whose build holds the library
            (stage / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        dests = []
        for package, stage in staged.items():
            dest = ippbx_dir / package / NATIVE_DIR
            shutil.rmtree(dest, ignore_errors=True)
            shutil.move(str(stage), dest)
            dests.append(dest)
    return dests


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", type=Path, default=ROOT / "src",
                   help="the src/ directory whose ippbx to compile (default: this checkout's)")
    p.add_argument("--jobs", type=int, default=2, help="C compilers run at once")
    p.add_argument("--if-stale", action="store_true",
                   help="build only when no build matches the source (the benches' use)")
    args = p.parse_args()
    src = args.src.resolve()
    if args.if_stale:
        sys.path.insert(0, str(src))
        from ippbx.native import inspect_build

        builds = [inspect_build(src / "ippbx" / package)
                  for package in compiled_sources(src / "ippbx")]
        if all(b is not None and not b.stale for b in builds) and len(
                {b.build_id for b in builds if b is not None}) == 1:
            print(f"the compiled ippbx.sip and ippbx.pbx of {src} match their source")
            return 0
    started = time.monotonic()
    dests = build(src, args.jobs)
    print(f"compiled ippbx.sip and ippbx.pbx into {', '.join(map(str, dests))} "
          f"in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
