"""mkdocs hook: replaces ``<!-- generated: NAME -->`` in a page with ``docs/reference.py``'s NAME page."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def on_page_markdown(markdown: str, page, config, files) -> str:
    # mkdocs restores sys.path after loading a hook, so the checkout (and docs/, not a package) go on it here:
    # the pages describe this checkout's code, whatever else is installed
    for path in (str(ROOT / "docs"), str(ROOT)):
        if path not in sys.path:
            sys.path.insert(0, path)
    import reference

    generated = {
        "config": reference.config_markdown,
        "tables": reference.tables_markdown,
        "reasons": reference.reasons_markdown,
    }
    for name, make in generated.items():
        marker = f"<!-- generated: {name} -->"
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return markdown
