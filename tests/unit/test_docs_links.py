"""Every link in the Markdown documents points into the repository.

The documents (README.md, BENCHMARKS.md, docs/**/*.md, bench/README.md) are read as a
reader of the checkout sees them: a relative link (or image) must name a file or folder
that exists, inside the repository, and its `#anchor`, if any, a heading of the Markdown
file it names (GitHub's slugs). Absolute paths, `file:` URLs and relative paths that
climb out of the checkout are refused outright, as they only work on one machine. Web
links (http, https, mailto) are not fetched. Code blocks and code spans are skipped: the
curl examples in them are not links.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted(
    {ROOT / "README.md", ROOT / "BENCHMARKS.md", ROOT / "bench" / "README.md"}
    | set((ROOT / "docs").rglob("*.md"))
)
DOCS = [p for p in DOCS if p.is_file()]

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
# [text](target "title") and ![alt](target); the target may be <in angle brackets>
INLINE = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
WEB = re.compile(r"^(https?|mailto):", re.IGNORECASE)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def prose_lines(text: str, spans: bool = False) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, code spans blanked unless
    `spans` (a heading's anchor is made from its code spans' text too)."""
    out: list[tuple[int, str]] = []
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append((number, line if spans else CODE_SPAN.sub("", line)))
    return out


def links(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        for match in INLINE.finditer(line):
            found.append((number, match.group(1).strip("<>")))
        ref = REFERENCE.match(line)
        if ref:
            found.append((number, ref.group(1).strip("<>")))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text in lower case, code marks, link targets
    and punctuation other than `-` and `_` dropped, each space a hyphen."""
    text = re.sub(r"`([^`]*)`", r"\1", heading.strip())
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out: set[str] = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8"), spans=True):
        match = re.match(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def problem(doc: Path, target: str) -> str | None:
    """Why `target`, a link in `doc`, does not point into the repository (None: fine)."""
    if WEB.match(target):
        return None
    if SCHEME.match(target):
        return "a link with a scheme other than http(s)/mailto"
    file_part, _, anchor = target.partition("#")
    if file_part.startswith(("/", "\\", "~")):
        return "an absolute path"
    dest = (doc.parent / file_part).resolve() if file_part else doc
    if dest != ROOT and ROOT not in dest.parents:
        return "a path outside the repository"
    if not dest.exists():
        return "a missing file"
    if anchor and dest.suffix == ".md" and dest.is_file() and anchor not in anchors(dest):
        return f"no heading #{anchor} in {dest.relative_to(ROOT)}"
    return None


def test_documents_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in DOCS}
    # (the documents named above are dropped from DOCS when missing: not unchecked silently)
    assert {"README.md", "BENCHMARKS.md", "bench/README.md", "docs/design.md"} <= names


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_point_into_the_repository(doc: Path) -> None:
    bad = [f"{doc.relative_to(ROOT)}:{line}: {target} ({why})"
           for line, target in links(doc) if (why := problem(doc, target)) is not None]
    assert not bad, "\n".join(bad)


def test_the_checker_refuses_what_it_should(tmp_path: Path) -> None:
    doc = ROOT / "docs" / "design.md"
    assert problem(doc, "../README.md") is None
    assert problem(doc, "../BENCHMARKS.md#overload") is None
    assert problem(doc, "https://example.org/x") is None
    assert problem(doc, "no-such-file.md") == "a missing file"
    assert problem(doc, "../../outside.md") == "a path outside the repository"
    assert problem(doc, "/etc/hosts") == "an absolute path"
    assert problem(doc, "file:///etc/hosts") is not None
    assert problem(doc, "../README.md#no-such-heading") is not None
    assert slug("1. SIP call rate — `bench/sip_cps.py`") == "1-sip-call-rate--benchsip_cpspy"
    sample = tmp_path / "x.md"
    sample.write_text("see [a](b.md) and `[c](d.md)`\n```\n[e](f.md)\n```\n[g]: h.md\n")
    assert [t for _, t in links(sample)] == ["b.md", "h.md"]
    sample.write_text("# Plots\n## `x_y` (a)\n```\n# not a heading\n```\n## Plots\n")
    assert anchors(sample) == {"plots", "x_y-a", "plots-1"}
