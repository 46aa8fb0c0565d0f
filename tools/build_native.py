#!/usr/bin/env python3
"""Compile ippbx's call path to C with mypyc, beside its source; `make native` runs it.

    python tools/build_native.py [--src DIR] [--jobs N] [--if-stale]

Two packages, each built on its own (one mypyc group, one shared library each):
- `ippbx.sip`: every module but the package's `__init__` and the socket layer: the
  parser, the header views, transactions, dialogs, sessions and the user agent.
  `transport.py` stays Python: a thin shell around uvloop's sockets, compiled it made no
  measurable difference (BENCHMARKS.md, "Issue 13: the SIP stack compiled").
- `ippbx.pbx`: only `b2bua.py`, the one module of the PBX whose compiling shows in a
  call's CPU; the others stay Python (BENCHMARKS.md, "Issue 13: where the rest of a
  call's CPU goes, and what compiling the B2BUA takes").
  Its compiled code sees the SIP stack's classes as Python objects, so either package
  runs compiled or as Python whatever the other does.

The extension modules of a package land in `DIR/ippbx/<package>/_native/` (DIR is this
checkout's `src/` by default) with `manifest.json`: the SHA-256 of each compiled source,
the modules kept as Python, mypyc's shared library, each compiled file's size and the
interpreter the build is for. `ippbx.native` loads a package's build only while they all
still match, so an edit to one module after a build runs that package as Python until
the next `make native`.

Needs mypy (pinned in pyproject's `native` extra), setuptools, a C compiler and Python's
headers. The build runs in a temporary directory and replaces the old `_native/` only once
it succeeded (a build left from older source is never loaded: see ippbx.native).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# package → the modules compiled: all but those named (sip), or only those named (pbx)
ALL_BUT = "all but"
ONLY = "only"
PACKAGES: dict[tuple[str, str], tuple[str, frozenset[str]]] = {
    ("ippbx", "sip"): (ALL_BUT, frozenset({"__init__.py", "transport.py"})),
    ("ippbx", "pbx"): (ONLY, frozenset({"b2bua.py"})),
}


def modules(package: tuple[str, str], package_dir: Path) -> list[Path]:
    """The modules of `package` that are compiled."""
    rule, names = PACKAGES[package]
    if rule == ONLY:
        return sorted(package_dir / name for name in names)
    return sorted(p for p in package_dir.glob("*.py") if p.name not in names)


def build(src: Path, package: tuple[str, str], jobs: int) -> Path:
    if str(src) not in sys.path:
        sys.path.insert(0, str(src))
    from mypyc.build import mypycify
    from setuptools import setup

    from ippbx.native import EXT_SUFFIX, MANIFEST, NATIVE_DIR, interpreter_tag, source_digest

    group = ".".join(package) + ".native"  # mypyc's shared library: <group>__mypyc
    package_dir = src.joinpath(*package)
    sources = modules(package, package_dir)
    kept = sorted(p.stem for p in package_dir.glob("*.py") if p not in sources)
    dest = package_dir / NATIVE_DIR
    with tempfile.TemporaryDirectory(prefix="ippbx-native-") as tmp:
        work = Path(tmp)
        # Digests first: the manifest must describe the very bytes mypyc reads.
        digests = {p.stem: source_digest(p) for p in sources}
        # From inside the work directory: mypyc names its C files relative to it, and
        # setuptools must not read this checkout's pyproject.toml.
        with contextlib.chdir(work):
            # (errors only in the modules compiled: those they import are checked, as
            # mypy does, but their own errors are another matter)
            extensions = mypycify(["--follow-imports=silent", *map(str, sources)],
                                  opt_level="3", group_name=group, multi_file=jobs > 1,
                                  target_dir="c")
            for extension in extensions:  # the group's header is in the package's directory
                extension.include_dirs.append(str(Path("c", *package)))
            setup(name="ippbx-native", ext_modules=extensions,
                  script_args=["-q", "build_ext", "--build-lib", "lib", "--build-temp", "obj",
                               "--parallel", str(jobs)])
        built = sorted(work.joinpath("lib", *package).glob("*" + EXT_SUFFIX))
        names = {p.name.removesuffix(EXT_SUFFIX) for p in built}
        missing = set(digests) - names
        if missing:
            raise SystemExit(f"mypyc built no module for {', '.join(sorted(missing))}")
        staged = work / NATIVE_DIR
        staged.mkdir()
        for p in built:
            shutil.copy2(p, staged / p.name)
        [library] = names - set(digests)  # mypyc's shared library, which the modules load
        sizes = {p.name.removesuffix(EXT_SUFFIX): p.stat().st_size for p in built}
        manifest = {"interpreter": interpreter_tag(), "library": library, "modules": digests,
                    "python": kept,
                    "sizes": sizes}
        (staged / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        shutil.move(str(staged), dest)
    return dest


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", type=Path, default=ROOT / "src",
                   help="the src/ directory whose ippbx to compile (default: this checkout's)")
    p.add_argument("--jobs", type=int, default=2, help="C compilers run at once")
    p.add_argument("--if-stale", action="store_true",
                   help="build only when no build matches the source (the benches' use)")
    args = p.parse_args()
    src = args.src.resolve()
    sys.path.insert(0, str(src))
    from ippbx.native import inspect_build

    for package in PACKAGES:
        name = ".".join(package)
        if args.if_stale:
            build_there = inspect_build(src.joinpath(*package))
            if build_there is not None and not build_there.stale:
                print(f"the compiled {name} of {src} matches its source")
                continue
        started = time.monotonic()
        dest = build(src, package, args.jobs)
        print(f"compiled {name} into {dest} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
