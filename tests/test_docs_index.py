"""``docs/README.md`` indexes every page of ``docs/``: a page added without a line there, or a line whose page is gone,
fails here; the repository's README points at the index."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
INDEX = DOCS / "README.md"
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def index_links() -> list[str]:
    """The relative targets of the index's Markdown links (web links left out)."""
    return [t for t in LINK.findall(INDEX.read_text(encoding="utf-8")) if "://" not in t]


def test_every_docs_page_is_in_the_index():
    pages = {p.name for p in DOCS.glob("*.md")} - {"README.md"}
    listed = {Path(t).name for t in index_links() if (DOCS / t).parent == DOCS}
    missing = sorted(pages - listed)
    assert not missing, f"docs/README.md does not list {missing}: add one line each, in the group it belongs to"


def test_every_index_link_points_at_something_that_exists():
    links = index_links()
    assert len(links) >= len(list(DOCS.glob("*.md"))) - 1
    dangling = sorted(t for t in links if not (DOCS / t).exists())
    assert not dangling, f"docs/README.md links to {dangling}, which do not exist"


def test_the_readme_points_at_the_index():
    assert "](docs/README.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
