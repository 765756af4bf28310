"""Checks the schedulers outside Databricks against the stage registry, as tests/unit/test_bundle.py checks
databricks.yml:

    python -m deploy.check            # exit status 1 and one line per mismatch
    python -m deploy.check --write    # regenerate the Airflow DAG's TASKS from the registry, then check

- ``deploy/airflow/humpback_dag.py``: its ``TASKS`` are ``jobs.stages.schedule`` of every stage over
  iterations 1..``iterations.count`` of its ``CONFIG``, one task each (read with ``ast``: Airflow need not be
  installed); its schedule is the bundle's.
- ``deploy/k8s/scheduled-spark-application.yaml``: one application running every stage in registry order on
  ``conf/cluster.yaml``, with the bundle's schedule, GPU executors whose Spark resources match their pods,
  no dynamic allocation (the LLM stages' GPU profile needs it off), Spark >= 4.0, conf/spark-gpu.conf's
  settings, and the Delta artifact built for its Spark version (``DELTA_ARTIFACTS``).
- ``deploy/k8s/Dockerfile``: the manifest's image: its Spark release, a Python the project and vLLM accept,
  and the extras the manifest's storage needs (gpu; objectstore for s3:// roots).
- ``databricks.yml``: a production-mode target sets ``workspace.root_path`` (or ``run_as``), without which
  ``databricks bundle deploy`` refuses it.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
import tomllib
from pathlib import Path

import yaml

from jobs.config import load_pipeline_config
from jobs.stages import STAGE_NAMES, schedule
from training.spark_profiles import PROFILE_MIN_SPARK, version_tuple

ROOT = Path(__file__).resolve().parent.parent
DAG = ROOT / "deploy/airflow/humpback_dag.py"
MANIFEST = ROOT / "deploy/k8s/scheduled-spark-application.yaml"
DOCKERFILE = ROOT / "deploy/k8s/Dockerfile"
BUNDLE = ROOT / "databricks.yml"
SPARK_GPU_CONF = ROOT / "conf/spark-gpu.conf"
# Delta 4.4.1's Maven artifacts by the Spark (major, minor) they are built for: the unsuffixed one for the newest
# Spark (4.2), delta-spark_<spark>_2.13 for older ones. A plain Spark cluster loads the one of its own release.
DELTA_ARTIFACTS = {(4, 0): "io.delta:delta-spark_4.0_2.13:4.4.1", (4, 2): "io.delta:delta-spark_2.13:4.4.1"}
QUARTZ_DAYS = {"SUN": "0", "MON": "1", "TUE": "2", "WED": "3", "THU": "4", "FRI": "5", "SAT": "6"}

Order = list[tuple[str, int | None]]


def expected_order(config: str) -> Order:
    """Every stage and iteration in run order for ``config`` (a path relative to the project root)."""
    count = load_pipeline_config(str(ROOT / config)).iterations.count
    return schedule(STAGE_NAMES, range(1, count + 1))


def dag_constants(source: str) -> dict[str, ast.Assign]:
    """The DAG module's top-level assignments by name."""
    return {
        target.id: node
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def dag_literal(source: str, name: str):
    return ast.literal_eval(dag_constants(source)[name].value)


def cron_of_quartz(expression: str) -> str:
    """Databricks' quartz cron (seconds first, ``?`` for no day) as the 5-field cron Airflow and Kubernetes use."""
    _seconds, minute, hour, day, month, weekday = expression.split()[:6]
    day = "*" if day == "?" else day
    weekday = "*" if weekday == "?" else ",".join(QUARTZ_DAYS.get(d, d) for d in weekday.split(","))
    return f"{minute} {hour} {day} {month} {weekday}"


def bundle_cron() -> str:
    (job,) = yaml.safe_load(BUNDLE.read_text())["resources"]["jobs"].values()
    return cron_of_quartz(job["schedule"]["quartz_cron_expression"])


def dag_problems(source: str) -> list[str]:
    problems = []
    constants = dag_constants(source)
    missing = {"CONFIG", "TASKS", "SCHEDULE"} - set(constants)
    if missing:
        return [f"{DAG.name}: no {', '.join(sorted(missing))}"]
    config = dag_literal(source, "CONFIG")
    tasks = [tuple(t) for t in dag_literal(source, "TASKS")]
    expected = expected_order(config)
    if tasks != expected:
        problems.append(f"{DAG.name}: TASKS {tasks} != the registry's schedule for {config} {expected}")
    cron = dag_literal(source, "SCHEDULE")
    if cron != bundle_cron():
        problems.append(f"{DAG.name}: SCHEDULE {cron!r} != databricks.yml's {bundle_cron()!r}")
    return problems


def spark_gpu_conf() -> dict[str, str]:
    pairs = (line.split(None, 1) for line in SPARK_GPU_CONF.read_text().splitlines())
    return {p[0]: p[1].strip() for p in pairs if p and not p[0].startswith("#")}


def manifest_problems(text: str) -> list[str]:
    doc = yaml.safe_load(text)
    name = MANIFEST.name
    if (doc.get("apiVersion"), doc.get("kind")) != ("sparkoperator.k8s.io/v1beta2", "ScheduledSparkApplication"):
        return [f"{name}: not a sparkoperator.k8s.io/v1beta2 ScheduledSparkApplication"]
    spec, problems = doc["spec"], []
    app = spec["template"]
    if spec.get("schedule") != bundle_cron():
        problems.append(f"{name}: schedule {spec.get('schedule')!r} != databricks.yml's {bundle_cron()!r}")
    if spec.get("concurrencyPolicy") != "Forbid":
        problems.append(f"{name}: concurrencyPolicy must be Forbid (two runs would generate the same keys twice)")
    args = [str(a) for a in app.get("arguments", [])]
    options = dict(zip(args[::2], args[1::2]))
    if "--iterations" in options or options.get("--stages") != ",".join(STAGE_NAMES):
        problems.append(f"{name}: --stages must be every stage in order ({','.join(STAGE_NAMES)}), every iteration")
    if not options.get("--config", "").endswith("/conf/cluster.yaml"):
        problems.append(f"{name}: --config must be the project's conf/cluster.yaml")
    if version_tuple(str(app.get("sparkVersion", "0.0"))) < PROFILE_MIN_SPARK:
        problems.append(f"{name}: sparkVersion {app.get('sparkVersion')} < 4.0 (the LLM stages' GPU profile)")
    conf = {k: str(v) for k, v in app.get("sparkConf", {}).items()}
    if conf.get("spark.dynamicAllocation.enabled", "false") != "false":
        problems.append(f"{name}: dynamic allocation on: the LLM stages would run without their GPU profile")
    spark_version = version_tuple(str(app.get("sparkVersion", "0.0")))
    packages = set(conf.get("spark.jars.packages", "").split(","))
    delta = DELTA_ARTIFACTS.get(spark_version)
    if delta is None or delta not in packages:
        problems.append(
            f"{name}: spark.jars.packages must load {delta or 'a Delta artifact built for Spark'} "
            f"{app.get('sparkVersion')}, has {', '.join(sorted(p for p in packages if 'delta' in p)) or 'none'}"
        )
    for key, value in spark_gpu_conf().items():
        if key == "spark.jars.packages":  # the Delta artifact is the Spark release's, checked above
            absent = {p for p in value.split(",") if "delta-spark" not in p} - packages
            if absent:
                problems.append(f"{name}: sparkConf {key} lacks {', '.join(sorted(absent))} (conf/spark-gpu.conf)")
        elif conf.get(key) != value:
            problems.append(f"{name}: sparkConf {key}={conf.get(key)!r}, conf/spark-gpu.conf has {value!r}")
    executor = app.get("executor", {})
    gpus = (executor.get("gpu") or {}).get("quantity", 0)
    if gpus < 1 or str(gpus) != conf.get("spark.executor.resource.gpu.amount"):
        problems.append(f"{name}: executors need a GPU pod request equal to spark.executor.resource.gpu.amount")
    if str(executor.get("cores")) != conf.get("spark.executor.cores"):
        problems.append(f"{name}: executor.cores {executor.get('cores')} != spark.executor.cores")
    return problems


def image_problems(dockerfile: str, manifest_text: str) -> list[str]:
    """The Dockerfile builds the manifest's image: its Spark release, a Python that the project (and so vLLM,
    the gpu extra's engine) accepts, and the extras its storage needs."""
    name, problems = DOCKERFILE.name, []
    app = yaml.safe_load(manifest_text)["spec"]["template"]
    base = re.search(r"^FROM\s+apache/spark:(\d+\.\d+\.\d+)\S*", dockerfile, re.M)
    if base is None or base[1] != str(app.get("sparkVersion")):
        problems.append(f"{name}: FROM apache/spark:<sparkVersion> of the manifest ({app.get('sparkVersion')})")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    minimum = version_tuple(project["requires-python"].split(">=")[1].split(",")[0])
    python = re.search(r"^ARG\s+PYTHON=(\d+\.\d+)", dockerfile, re.M)
    if python is None or version_tuple(python[1]) < minimum:
        problems.append(
            f"{name}: ARG PYTHON must be >= {project['requires-python']} (pyproject.toml), got {python and python[1]}"
        )
    extras = re.search(r"humpback-spark\[([\w,]+)\]", dockerfile)
    needed = {"gpu"} | ({"objectstore"} if "://" in " ".join(map(str, app.get("arguments", []))) else set())
    missing = needed - set(extras[1].split(",") if extras else ())
    if missing:
        problems.append(f"{name}: installs the project without the {', '.join(sorted(missing))} extra(s)")
    return problems


def bundle_problems(text: str) -> list[str]:
    """``databricks bundle deploy`` rejects a ``mode: production`` target that sets neither
    ``workspace.root_path`` nor ``run_as`` (so that one copy is deployed, as one identity)."""
    bundle, problems = yaml.safe_load(text), []
    for target, spec in bundle.get("targets", {}).items():
        spec = spec or {}
        if spec.get("mode") != "production":
            continue
        root = (spec.get("workspace") or {}).get("root_path") or (bundle.get("workspace") or {}).get("root_path")
        if not root and not spec.get("run_as") and not bundle.get("run_as"):
            problems.append(
                f"{BUNDLE.name}: target {target} (mode: production) sets neither workspace.root_path nor run_as"
            )
        elif root and not root.startswith("/Workspace/"):
            problems.append(f"{BUNDLE.name}: target {target}: workspace.root_path {root!r} is not under /Workspace/")
    return problems


def problems(
    dag_source: str | None = None,
    manifest_text: str | None = None,
    dockerfile: str | None = None,
    bundle_text: str | None = None,
) -> list[str]:
    """Every mismatch of the DAG, the manifest, its image and the bundle (the files unless given)."""
    dag_source = DAG.read_text() if dag_source is None else dag_source
    manifest_text = MANIFEST.read_text() if manifest_text is None else manifest_text
    dockerfile = DOCKERFILE.read_text() if dockerfile is None else dockerfile
    bundle_text = BUNDLE.read_text() if bundle_text is None else bundle_text
    return (
        dag_problems(dag_source)
        + manifest_problems(manifest_text)
        + image_problems(dockerfile, manifest_text)
        + bundle_problems(bundle_text)
    )


def write_dag_tasks() -> None:
    """Rewrite the DAG's TASKS literal from the registry, leaving the rest of the file as it is."""
    source = DAG.read_text()
    node = dag_constants(source)["TASKS"]
    lines = source.splitlines(keepends=True)
    items = "".join(f'    ("{stage}", {i}),\n' for stage, i in expected_order(dag_literal(source, "CONFIG")))
    lines[node.lineno - 1 : node.end_lineno] = [f"TASKS = [\n{items}]\n"]
    DAG.write_text("".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="regenerate the DAG's TASKS from the registry first")
    if parser.parse_args(argv).write:
        write_dag_tasks()
    found = problems()
    for problem in found:
        print(problem, file=sys.stderr)
    if not found:
        print(f"ok: {DAG.relative_to(ROOT)}, {MANIFEST.relative_to(ROOT)}, its Dockerfile and {BUNDLE.name} check out")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
