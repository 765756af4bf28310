"""databricks.yml: the job is valid for Databricks' own bundle models and runs every stage, in order, from the wheel."""

import re
import tomllib

import pytest
import yaml
from databricks.bundles.jobs import Job

from jobs.config import load_pipeline_config
from jobs.stages import STAGE_NAMES, schedule
from jobs.notebook import job_args
from training.spark_profiles import PROFILE_MIN_SPARK
from jobs.storage import parse_catalog_schema
from tests.conftest import ROOT

TEXT = (ROOT / "databricks.yml").read_text()
BUNDLE = yaml.safe_load(TEXT)


def resolved(target: str) -> dict:
    """The bundle with ``${var.*}`` replaced by the target's values, as ``databricks bundle deploy -t`` sees it."""
    values = {name: str(v["default"]) for name, v in BUNDLE["variables"].items()}
    values |= {name: str(v) for name, v in BUNDLE["targets"][target].get("variables", {}).items()}
    return yaml.safe_load(re.sub(r"\$\{var\.(\w+)\}", lambda m: values[m.group(1)], TEXT))


@pytest.fixture(scope="module", params=["dev", "prod"])
def job(request) -> Job:
    (raw,) = resolved(request.param)["resources"]["jobs"].values()
    return Job.from_dict(raw)  # unknown fields, bad enum values and bad types raise here


def test_one_notebook_task_per_stage_and_iteration_in_run_order(job):
    """The tasks are the main job's schedule for conf/cluster.yaml: curate and train once per iteration, in turn."""
    count = load_pipeline_config(str(ROOT / "conf/cluster.yaml")).iterations.count
    order = schedule(STAGE_NAMES, range(1, count + 1))
    assert [t.task_key for t in job.tasks] == [stage if i is None else f"{stage}_{i}" for stage, i in order]
    for previous, task in zip(job.tasks, job.tasks[1:]):
        assert [d.task_key for d in task.depends_on] == [previous.task_key]
    for task, (stage, iteration) in zip(job.tasks, order):
        assert (ROOT / task.notebook_task.notebook_path).resolve() == ROOT / "notebooks" / f"{stage}.py"
        assert task.notebook_task.base_parameters == ({} if iteration is None else {"iterations": str(iteration)})


def test_every_task_installs_the_wheel_built_from_pyproject(job):
    gpu_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gpu"]
    (artifact,) = BUNDLE["artifacts"].values()
    assert artifact["type"] == "whl" and (ROOT / artifact["path"] / "pyproject.toml").is_file()
    assert "--no-deps" in artifact["build"] and "dist" in artifact["build"]
    for task in job.tasks:
        assert "./dist/*.whl" in [lib.whl for lib in task.libraries], task.task_key
        assert [lib.pypi.package for lib in task.libraries if lib.pypi] == gpu_extra, task.task_key  # the same pin


def test_scheduled_on_a_gpu_ml_runtime_job_cluster(job):
    assert job.schedule.quartz_cron_expression and job.schedule.timezone_id
    (cluster,) = job.job_clusters
    assert {t.job_cluster_key for t in job.tasks} == {cluster.job_cluster_key}
    spec = cluster.new_cluster
    assert "-gpu-ml-" in spec.spark_version and spec.num_workers >= 1
    # Databricks Runtime 17.x is Apache Spark 4.0 (18 is 4.1): what the LLM stages' GPU profile needs.
    dbr = re.fullmatch(r"(\d+)\.(\d+)\.x-gpu-ml-scala2\.13", spec.spark_version)
    assert dbr and int(dbr[1]) >= 17 and PROFILE_MIN_SPARK == (4, 0), spec.spark_version
    assert spec.node_type_id == spec.driver_node_type_id and spec.node_type_id.startswith("g5.")  # NVIDIA A10G


def test_job_parameters_are_a_valid_command_line_on_the_catalog_schema(job):
    params = {p.name: p.default for p in job.parameters}
    assert set(params) == {"config", "overrides"}
    assert (ROOT / params["config"]).is_file()
    args = job_args(params["config"], params["overrides"], ",".join(STAGE_NAMES))
    overrides = dict(a.split("=", 1) for a in args[args.index("--set") + 1 :: 2])
    catalog_schema = parse_catalog_schema(overrides["storage.root"])
    assert catalog_schema is not None
    volumes = f"/Volumes/{catalog_schema.catalog}/{catalog_schema.schema}/"
    assert all(v.startswith(volumes) for k, v in overrides.items() if k != "storage.root")
    load_pipeline_config(params["config"], overrides=[f"{k}={v}" for k, v in overrides.items()])


def test_every_variable_used_is_declared_and_targets_dev_and_prod():
    used = set(re.findall(r"\$\{var\.(\w+)\}", TEXT))
    assert used == set(BUNDLE["variables"]) and {"catalog", "schema"} <= used
    assert set(BUNDLE["targets"]) == {"dev", "prod"}
    assert BUNDLE["targets"]["dev"]["mode"] == "development" and BUNDLE["targets"]["prod"]["mode"] == "production"


def test_the_production_target_deploys_as_production_mode_requires():
    """``databricks bundle deploy -t prod`` refuses a production-mode target with neither workspace.root_path nor
    run_as; dev (development mode) needs neither."""
    from deploy.check import bundle_problems

    assert bundle_problems(TEXT) == []
    prod = resolved("prod")["targets"]["prod"]
    assert prod["mode"] == "production"
    root = prod["workspace"]["root_path"]
    assert root.startswith("/Workspace/Users/${workspace.current_user.userName}/") and "${bundle.target}" in root
    without = yaml.safe_dump({**BUNDLE, "targets": {**BUNDLE["targets"], "prod": {"mode": "production"}}})
    assert bundle_problems(without) == [
        "databricks.yml: target prod (mode: production) sets neither workspace.root_path nor run_as"
    ]
    as_principal = {"mode": "production", "run_as": {"service_principal_name": "humpback-sp"}}
    assert bundle_problems(yaml.safe_dump({**BUNDLE, "targets": {"prod": as_principal}})) == []
