"""The README and docs/ are self-contained: every relative link resolves inside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streams.config import PROJECT_ROOT

DOCS = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
_LINK = re.compile(r"(?<!\!)\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file."""
    out = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", _FENCE.sub("", path.read_text()), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


def _links(path: Path) -> list[str]:
    return _LINK.findall(_FENCE.sub("", path.read_text()))


def test_there_are_docs_to_check() -> None:
    names = {p.name for p in DOCS}
    assert {"README.md", "ledger.md", "fold-format.md", "operations.md"} <= names


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_relative_link_resolves_inside_the_repository(doc: Path) -> None:
    bad = []
    for link in _links(doc):
        if re.match(r"[a-z]+:", link):  # http(s):, mailto: — not a file of ours
            continue
        target, _, anchor = link.partition("#")
        path = doc if not target else (doc.parent / target).resolve()
        if not path.is_relative_to(PROJECT_ROOT.resolve()) or not path.exists():
            bad.append(f"{link}: no such file in the repository")
            continue
        if anchor and path.suffix == ".md" and anchor not in _anchors(path):
            bad.append(f"{link}: no heading #{anchor} in {path.name}")
    assert not bad, f"{doc.name}: {bad}"


def test_every_rule_id_the_code_cites_is_defined_in_docs_ledger() -> None:
    ledger = (PROJECT_ROOT / "docs" / "ledger.md").read_text()
    defined = set(re.findall(r"\*\*([ABC][0-9]+)\.", ledger)) | set(
        re.findall(r"^\| \*\*(R[0-9])\*\*", ledger, re.M))
    cited: set[str] = set()
    for path in [*(PROJECT_ROOT / "streams").rglob("*.py"), *(PROJECT_ROOT / "sinks").rglob("*.py")]:
        text = path.read_text()
        cited |= set(re.findall(r"\b(?:LEDGER |rule |rules )?([ABR][0-9]{1,2})\b(?!\w)", text))
    cited -= {"D0", "D1"}
    assert cited, "no rule id found in the code"
    missing = sorted(cited - defined)
    assert not missing, f"cited in the code, not defined in docs/ledger.md: {missing}"
