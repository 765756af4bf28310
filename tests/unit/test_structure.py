"""The project's shape: no import cycles, a config that loads without the heavy engines, one stage registry."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("jobs", "udfs", "training")


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports anywhere in its body (lazy imports included; imports under
    ``if TYPE_CHECKING:`` excluded). A submodule importing its own package (its face) is not an edge."""
    files = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            files[name.removesuffix(".__init__")] = path
    graph = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text())
        typing_only = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for stmt in node.body
            for n in ast.walk(stmt)
        }
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                targets.add(base)
                targets.update(f"{base}.{a.name}" for a in node.names)
        graph[name] = {t for t in targets if t in files and t != name and not name.startswith(t + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_among_the_projects_modules():
    graph = import_graph()
    assert {"jobs.stages", "jobs.stages.base", "udfs.engine", "udfs.vllm_engine", "udfs.segment"} <= set(graph)
    assert "udfs.engine" in graph["udfs.vllm_engine"]  # the graph sees real edges
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_loading_the_config_imports_neither_torch_nor_spark_nor_delta():
    code = (
        "import sys, jobs.config; jobs.config.load_pipeline_config('conf/local.yaml'); "
        "print(','.join(m for m in ('torch', 'pyspark', 'deltalake', 'vllm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_one_stage_registry_in_run_order_each_stage_one_module():
    from jobs import stages

    assert stages.STAGE_NAMES == (
        "ingest",
        "segment",
        "models",
        "augment",
        "likelihood",
        "curate",
        "rewrite",
        "train",
        "calibrate",
    )
    assert stages.ITERATION_STAGES == ("curate", "rewrite", "train")
    for stage in stages.STAGES:
        assert stage.run.__module__ == stage.plan.__module__ == f"jobs.stages.{stage.name}"
        assert stage.versioned.startswith(f"{stage.name}_v")
    modules = {p.stem for p in Path(stages.__file__).parent.glob("*.py")} - {"__init__", "base"}
    assert modules == set(stages.STAGE_NAMES)
