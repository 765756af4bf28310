"""The documentation cannot drift from the code: every config key has a comment to show, the generated pages
list every key and table, the site builds with warnings as errors, and the README's links lead somewhere."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "docs"))
import reference  # noqa: E402  (docs/ is not a package)


def test_every_config_key_has_a_comment_in_the_code():
    undocumented = [k.key for k in reference.config_keys() if not k.doc]
    assert not undocumented, f"config keys without a comment in their dataclass: {undocumented}"


def test_the_configuration_page_lists_every_key_with_its_default():
    from jobs.config import PipelineConfig  # noqa: F401  (the page is generated from it)

    page = reference.config_markdown()
    for k in reference.config_keys():
        assert f"| `{k.key}` | " in page
    assert "| `segment.min_chars` | `int` | `600` |" in page


def test_comments_are_read_above_and_beside_a_field():
    from dataclasses import dataclass

    @dataclass
    class Example:
        # why the first
        # field exists
        first: int = 1
        second: str = "x"  # what the second is
        third: bool = False

    docs = {k.key: k.doc for k in reference.config_keys(Example)}
    assert docs == {"first": "why the first field exists", "second": "what the second is", "third": ""}


def test_the_tables_page_lists_every_table_and_column():
    from udfs import tables

    page = reference.tables_markdown()
    for table in (t for t in vars(tables).values() if isinstance(t, tables.Table)):
        assert f"### `{table.name}`" in page
        assert all(f"| `{c}` |" in page for c in table.columns)


def test_the_reasons_page_lists_every_registered_code():
    from udfs.reasons import REASONS

    page = reference.reasons_markdown()
    assert all(f"| {r.status} | `{r.code}` |" in page for r in REASONS)


@pytest.mark.slow
def test_the_site_builds_strict(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "segment.min_chars" in (tmp_path / "site/configuration/index.html").read_text()


def _slug(heading: str) -> str:
    """The anchor mkdocs' toc extension (and GitHub) give a heading."""
    text = re.sub(r"[^\w\s-]", "", heading.strip().lower().replace("`", ""))
    return re.sub(r"[\s]+", "-", text).strip("-")


def test_readme_is_a_landing_page_whose_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 250
    assert "make demo" in readme and "make test" in readme
    links = re.findall(r"\]\(([^)#\s]+\.md)(?:#([^)\s]+))?\)", readme)
    assert links
    for path, anchor in links:
        target = ROOT / path
        assert target.is_file(), f"README links to {path}, which does not exist"
        if anchor:
            headings = [_slug(h) for h in re.findall(r"^#+ (.+)$", target.read_text(), re.M)]
            assert anchor in headings, f"README links to {path}#{anchor}: no such heading ({headings})"
