"""The generated reference pages: every config key and every table, read from the code itself.

``docs/hooks.py`` calls these while mkdocs builds, so the pages cannot drift from the dataclasses in
``jobs/config.py`` (and the configs they compose), the tables in ``udfs/tables.py`` or the reason codes in
``udfs/reasons.py``; ``tests/unit/test_docs.py`` checks that every key has a comment to show.

A key's text is its comment in the dataclass: the ``# ...`` lines right above the field and the one at the end
of its line, as written for the code's readers.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import textwrap
import tokenize
import typing
from dataclasses import MISSING, dataclass
from functools import cache


@dataclass(frozen=True)
class ConfigKey:
    key: str  # dotted, as in YAML and --set
    type: str
    default: str
    doc: str


def config_keys(cls: type | None = None, prefix: str = "") -> list[ConfigKey]:
    """Every leaf key of ``cls`` (default: the pipeline config), nested dataclasses flattened into dotted keys."""
    if cls is None:
        from jobs.config import PipelineConfig

        cls = PipelineConfig
    hints = typing.get_type_hints(cls)
    docs = _field_comments(cls)
    keys: list[ConfigKey] = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            keys.extend(config_keys(hint, key + "."))
            continue
        keys.append(ConfigKey(key, _type_name(hint), _default(f), docs.get(f.name, "")))
    return keys


def config_markdown() -> str:
    """The configuration reference: one table per top-level section."""
    out: list[str] = []
    section = None
    for k in config_keys():
        head = k.key.split(".", 1)[0]
        if head != section:
            section = head
            out += ["", f"## `{head}`", "", "| key | type | default | what |", "|---|---|---|---|"]
        out.append(f"| `{k.key}` | {_cell(k.type)} | {_cell(k.default)} | {_cell(k.doc)} |")
    return "\n".join(out).lstrip("\n") + "\n"


def tables_markdown() -> str:
    """Every Delta table's key and columns with their Spark types, from ``udfs.tables``."""
    from udfs import tables

    out: list[str] = []
    for name, table in vars(tables).items():
        if not isinstance(table, tables.Table):
            continue
        out += ["", f"### `{table.name}`", "", f"Key: `{table.key}` (`udfs.tables.{name}`)", ""]
        out += ["| column | type |", "|---|---|"]
        out += [f"| `{col}` | `{typ}` |" for col, typ in tables.ddl_types(table.schema).items()]
    return "\n".join(out).lstrip("\n") + "\n"


def reasons_markdown() -> str:
    """Every reason code by table, from ``udfs.reasons``."""
    from udfs.reasons import REASONS

    out: list[str] = []
    for table in dict.fromkeys(t for r in REASONS for t in r.tables):
        out += ["", f"## `{table}`", "", "| status | code | what |", "|---|---|---|"]
        out += [f"| {r.status} | `{r.code}` | {_cell(r.meaning)} |" for r in REASONS if table in r.tables]
    return "\n".join(out).lstrip("\n") + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or " "


def _type_name(hint) -> str:
    name = getattr(hint, "__name__", None) if not typing.get_args(hint) else None
    return f"`{name or str(hint).replace('typing.', '')}`"


def _default(f: dataclasses.Field) -> str:
    if f.default is not MISSING:
        value = f.default
    elif f.default_factory is not MISSING:
        value = f.default_factory()
    else:
        return "required"
    return f"`{value!r}`"


@cache
def _field_comments(cls: type) -> dict[str, str]:
    """Field name -> its comment: the ``#`` lines directly above it, then the one closing its line."""
    source = textwrap.dedent(inspect.getsource(cls))
    comments: dict[int, str] = {}  # line -> comment text
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    lines = source.splitlines()
    docs: dict[str, str] = {}
    for node in ast.parse(source).body[0].body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above: list[str] = []
        line = node.lineno - 1
        while line in comments and lines[line - 1].lstrip().startswith("#"):
            above.insert(0, comments[line])
            line -= 1
        trailing = [c for n, c in comments.items() if node.lineno <= n <= node.end_lineno]
        docs[node.target.id] = " ".join(above + trailing).strip()
    return docs
