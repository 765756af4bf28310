"""mkdocs hook: replaces ``<!-- generated: NAME -->`` in a page with ``docs/reference.py``'s NAME page."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "docs")]

import reference  # noqa: E402  (after the path: docs/ is not a package)

GENERATED = {"config": reference.config_markdown, "tables": reference.tables_markdown}


def on_page_markdown(markdown: str, page, config, files) -> str:
    for name, make in GENERATED.items():
        marker = f"<!-- generated: {name} -->"
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return markdown
