"""The docs hold together: a link to a section finds it, and no document says one
thing twice under one heading.

docs/install.md once carried two "## Sharding" sections, the second still telling
of the claims that had been replaced, so a reader got two opposite accounts of
who acts on a cluster; and sections are linked by their headings' anchors, which
a renamed heading silently breaks.
"""

from __future__ import annotations

import collections
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = sorted([*REPO.joinpath("docs").rglob("*.md"), REPO / "README.md",
               REPO / "charts" / "stemedb-operator" / "README.md"])
LINK = re.compile(r"\]\(([^)\s#]*)#([^)\s]+)\)")


def headings(path: Path) -> list[tuple[int, str]]:
    """(level, text) of each heading outside code fences."""
    found, fenced = [], False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        m = re.match(r"^(#{1,6}) (.+)", line)
        if m and not fenced:
            found.append((len(m.group(1)), m.group(2).strip()))
    return found


def anchors(path: Path) -> set[str]:
    """GitHub's anchors: lower case, punctuation dropped, spaces as hyphens, and
    -1, -2 ... after a repeated one."""
    out, seen = set(), collections.Counter[str]()
    for _, text in headings(path):
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        out.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    return out


@pytest.mark.parametrize("doc", [d for d in DOCS if d.exists()],
                         ids=lambda d: str(d.relative_to(REPO)))
def test_every_link_to_a_section_finds_it(doc: Path) -> None:
    broken = []
    for target, anchor in LINK.findall(doc.read_text()):
        path = (doc.parent / target).resolve() if target else doc
        if target.startswith(("http:", "https:")) or path.suffix != ".md":
            continue
        assert path.exists(), f"{doc.name} links to a missing {target}"
        if anchor not in anchors(path):
            broken.append(f"{target or doc.name}#{anchor}")
    assert not broken, f"{doc.name}: no such section: {broken}"


@pytest.mark.parametrize("doc", [d for d in DOCS if d.exists()],
                         ids=lambda d: str(d.relative_to(REPO)))
def test_no_document_has_two_top_sections_of_one_name(doc: Path) -> None:
    top = [text for level, text in headings(doc) if level <= 2]
    twice = [text for text, n in collections.Counter(top).items() if n > 1]
    assert not twice, f"{doc.name} has these sections twice: {twice}"
