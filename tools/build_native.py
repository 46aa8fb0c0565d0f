#!/usr/bin/env python3
"""Compile ippbx's SIP stack to C with mypyc, beside its source; `make native` runs it.

    python tools/build_native.py [--src DIR] [--jobs N] [--if-stale]

Every module of `ippbx.sip` but the package's `__init__` and the socket layer is
compiled: the parser, the header views, transactions, dialogs, sessions and the user
agent. `transport.py` stays Python: a thin shell around uvloop's sockets, compiled it
made no measurable difference (BENCHMARKS.md, "Issue 13: the SIP stack compiled"). The
extension modules land in `DIR/ippbx/sip/_native/` (DIR is this checkout's `src/` by
default) with `manifest.json`: the SHA-256 of each compiled source, mypyc's shared
library, each compiled file's size and the interpreter the build is for. `ippbx.native`
loads the build only while they all still match, so an edit to one module after a build
runs the package as Python until the next `make native`.

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

PACKAGE = ("ippbx", "sip")
GROUP = "ippbx.sip.native"  # mypyc's shared library: ippbx.sip.native__mypyc
ROOT = Path(__file__).resolve().parents[1]


KEEP_PYTHON = {"__init__.py", "transport.py"}


def modules(package_dir: Path) -> list[Path]:
    return sorted(p for p in package_dir.glob("*.py") if p.name not in KEEP_PYTHON)


def build(src: Path, jobs: int) -> Path:
    if str(src) not in sys.path:
        sys.path.insert(0, str(src))
    from mypyc.build import mypycify
    from setuptools import setup

    from ippbx.native import EXT_SUFFIX, MANIFEST, NATIVE_DIR, interpreter_tag, source_digest

    package_dir = src.joinpath(*PACKAGE)
    sources = modules(package_dir)
    dest = package_dir / NATIVE_DIR
    with tempfile.TemporaryDirectory(prefix="ippbx-native-") as tmp:
        work = Path(tmp)
        # Digests first: the manifest must describe the very bytes mypyc reads.
        digests = {p.stem: source_digest(p) for p in sources}
        # From inside the work directory: mypyc names its C files relative to it, and
        # setuptools must not read this checkout's pyproject.toml.
        with contextlib.chdir(work):
            extensions = mypycify([str(p) for p in sources], opt_level="3", group_name=GROUP,
                                  multi_file=jobs > 1, target_dir="c")
            for extension in extensions:  # the group's header is in the package's directory
                extension.include_dirs.append(str(Path("c", *PACKAGE)))
            setup(name="ippbx-native", ext_modules=extensions,
                  script_args=["-q", "build_ext", "--build-lib", "lib", "--build-temp", "obj",
                               "--parallel", str(jobs)])
        built = sorted(work.joinpath("lib", *PACKAGE).glob("*" + EXT_SUFFIX))
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
                    "python": sorted(name.removesuffix(".py") for name in KEEP_PYTHON),
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
    if args.if_stale:
        sys.path.insert(0, str(src))
        from ippbx.native import inspect_build

        build_there = inspect_build(src.joinpath(*PACKAGE))
        if build_there is not None and not build_there.stale:
            print(f"the compiled ippbx.sip of {src} matches its source")
            return 0
    started = time.monotonic()
    dest = build(src, args.jobs)
    print(f"compiled ippbx.sip into {dest} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
