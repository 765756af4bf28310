"""deploy/: the Airflow DAG and the spark-operator manifest run the registry's stages in order, as the bundle does.

What is checked here: ``deploy.check`` (the DAG's TASKS read with ast, the manifest's YAML) against
``jobs.stages``, and that it catches each kind of drift; the DAG loaded by Airflow's own DagBag (Airflow 3.3 with
the Apache Spark provider, when installed) with every task's command line parsed by the job's own CLI and its
config loaded; the manifest validated against the ScheduledSparkApplication CRD's schema (v1beta2) for every
field it uses: names, types, enums and required fields, copied from kubeflow/spark-operator's CRD, with unknown
fields rejected. No Kubernetes API server or Airflow scheduler runs here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jsonschema
import pytest
import yaml

from deploy import check
from jobs.augment import parse_args
from jobs.config import load_pipeline_config
from jobs.stages import STAGE_NAMES
from tests.conftest import ROOT

DAG_SOURCE = check.DAG.read_text()
MANIFEST_TEXT = check.MANIFEST.read_text()
MANIFEST = yaml.safe_load(MANIFEST_TEXT)
BUNDLE_TASKS = next(iter(yaml.safe_load(check.BUNDLE.read_text())["resources"]["jobs"].values()))["tasks"]


def test_the_deploy_files_match_the_stage_registry():
    assert check.problems() == []
    assert check.main([]) == 0


def test_the_dag_has_the_bundles_tasks_in_the_bundles_order():
    tasks = [check.dag_literal(DAG_SOURCE, "TASKS")]
    ids = [s if i is None else f"{s}_{i}" for s, i in tasks[0]]
    assert ids == [t["task_key"] for t in BUNDLE_TASKS]


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ('    ("curate", 1),\n    ("rewrite", 1),\n', '    ("rewrite", 1),\n    ("curate", 1),\n', "TASKS"),
        ('    ("calibrate", None),\n', "", "TASKS"),
        ('SCHEDULE = "0 3 * * 0"', 'SCHEDULE = "0 4 * * 0"', "SCHEDULE"),
    ],
)
def test_the_checker_catches_a_dag_that_drifted(old, new, expected):
    assert old in DAG_SOURCE
    drifted = DAG_SOURCE.replace(old, new)
    found = check.dag_problems(drifted)
    assert any(expected in p for p in found), found


@pytest.mark.parametrize(
    "old, new, expected",
    [
        (
            "ingest,segment,models,augment,likelihood,curate,rewrite,train,calibrate",
            "ingest,segment,models,augment",
            "--stages",
        ),
        ('spark.dynamicAllocation.enabled: "false"', 'spark.dynamicAllocation.enabled: "true"', "dynamic allocation"),
        ('sparkVersion: "4.0.1"', 'sparkVersion: "3.5.2"', "sparkVersion"),
        ("concurrencyPolicy: Forbid", "concurrencyPolicy: Allow", "concurrencyPolicy"),
        ('schedule: "0 3 * * 0"', 'schedule: "0 3 * * *"', "schedule"),
        ('spark.python.worker.reuse: "true"', 'spark.python.worker.reuse: "false"', "spark.python.worker.reuse"),
        ("io.delta:delta-spark_4.0_2.13:4.4.1,", "", "delta-spark"),
    ],
)
def test_the_checker_catches_a_manifest_that_drifted(old, new, expected):
    assert old in MANIFEST_TEXT
    found = check.manifest_problems(MANIFEST_TEXT.replace(old, new))
    assert any(expected in p for p in found), found


def test_executors_without_a_gpu_are_caught():
    doc = yaml.safe_load(MANIFEST_TEXT)
    del doc["spec"]["template"]["executor"]["gpu"]
    assert any("GPU" in p for p in check.manifest_problems(yaml.safe_dump(doc)))


def test_write_regenerates_the_dag_tasks_and_nothing_else(tmp_path, monkeypatch):
    scrambled = DAG_SOURCE.replace('    ("train", 2),\n', "").replace('("ingest", None)', '("segment", None)')
    dag = tmp_path / "humpback_dag.py"
    dag.write_text(scrambled)
    monkeypatch.setattr(check, "DAG", dag)
    assert check.dag_problems(scrambled)
    check.write_dag_tasks()
    assert dag.read_text() == DAG_SOURCE and check.dag_problems(dag.read_text()) == []


def test_quartz_to_cron():
    assert check.cron_of_quartz("0 0 3 ? * SUN") == "0 3 * * 0"
    assert check.cron_of_quartz("0 30 1 1 * ?") == "30 1 1 * *"
    assert check.cron_of_quartz("0 0 6 ? * MON,FRI") == "0 6 * * 1,5"


def job_command_is_valid(args: list[str]) -> None:
    """``args`` parse with jobs/augment.py's own CLI and their config loads with their overrides."""
    parsed = parse_args(args)
    assert os.path.isfile(parsed.config), parsed.config
    load_pipeline_config(parsed.config, parsed.overrides)


LOAD_DAG = textwrap.dedent(
    """
    import json, sys
    from airflow.dag_processing.dagbag import DagBag
    bag = DagBag(dag_folder=sys.argv[1])
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags["humpback"]  # get_dag would read the metadata database
    print(json.dumps({
        "schedule": str(dag.schedule), "timezone": str(dag.timezone),
        "max_active_runs": dag.max_active_runs, "catchup": dag.catchup,
        "tasks": [{"id": t.task_id, "type": type(t).__name__, "upstream": sorted(t.upstream_task_ids),
                   "args": t.application_args, "application": t.application, "properties": t.properties_file,
                   "conn_id": t._conn_id, "retries": t.retries} for t in dag.topological_sort()],
    }))
    """
)


def test_airflow_loads_the_dag_with_one_spark_submit_per_stage_and_iteration(tmp_path):
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "HUMPBACK_PROJECT": str(ROOT)}
    env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    out = subprocess.run(
        [sys.executable, "-c", LOAD_DAG, str(check.DAG)], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    dag = json.loads(out.stdout.strip().splitlines()[-1])
    assert dag["schedule"] == check.bundle_cron() and dag["timezone"] == "UTC"  # the bundle: timezone_id UTC
    assert dag["max_active_runs"] == 1 and dag["catchup"] is False
    tasks = dag["tasks"]
    assert [t["id"] for t in tasks] == [t["task_key"] for t in BUNDLE_TASKS]
    assert {t["type"] for t in tasks} == {"SparkSubmitOperator"}
    for previous, task in zip([None, *tasks], tasks):
        assert task["upstream"] == ([] if previous is None else [previous["id"]])
    for task, bundle_task in zip(tasks, BUNDLE_TASKS):
        assert task["application"] == str(ROOT / "jobs/augment.py") and task["conn_id"] == "spark_default"
        assert os.path.isfile(task["properties"])
        assert task["retries"] == bundle_task.get("max_retries", 0), task["id"]
        stage, _, iteration = task["id"].partition("_")
        assert parse_args(task["args"]).stages == [stage]
        assert parse_args(task["args"]).iterations == ([int(iteration)] if iteration else [])
        job_command_is_valid(task["args"])


def test_the_manifests_command_line_is_a_valid_run_of_every_stage():
    args = [a.replace("/opt/humpback-spark", str(ROOT)) for a in MANIFEST["spec"]["template"]["arguments"]]
    assert parse_args(args).stages == list(STAGE_NAMES) and parse_args(args).iterations == []
    job_command_is_valid(args)
    main = MANIFEST["spec"]["template"]["mainApplicationFile"]
    assert main.startswith("local:///opt/humpback-spark/") and (ROOT / main.split("/opt/humpback-spark/")[1]).is_file()


# The ScheduledSparkApplication CRD (kubeflow/spark-operator, config/crd/bases/
# sparkoperator.k8s.io_scheduledsparkapplications.yaml, v1beta2) for the fields the manifest uses. Fields it
# does not use are left out and rejected (additionalProperties: false), so a misspelt field fails here.
STRING, INT, BOOL = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
STRINGS = {"type": "array", "items": STRING}


def closed(properties: dict, required: tuple[str, ...] = ()) -> dict:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


POD = {
    "cores": {"type": "integer", "minimum": 1},
    "memory": STRING,
    "memoryOverhead": STRING,
    "gpu": closed({"name": STRING, "quantity": INT}, ("name", "quantity")),
    "serviceAccount": STRING,
    "envFrom": {"type": "array", "items": closed({"secretRef": closed({"name": STRING})})},
    "volumeMounts": {"type": "array", "items": closed({"name": STRING, "mountPath": STRING}, ("name", "mountPath"))},
}
CRD_SUBSET = closed(
    {
        "apiVersion": {"const": "sparkoperator.k8s.io/v1beta2"},
        "kind": {"const": "ScheduledSparkApplication"},
        "metadata": closed({"name": STRING, "namespace": STRING}, ("name",)),
        "spec": closed(
            {
                "schedule": STRING,
                "timeZone": STRING,
                "concurrencyPolicy": {"enum": ["Allow", "Forbid", "Replace"]},
                "successfulRunHistoryLimit": INT,
                "failedRunHistoryLimit": INT,
                "suspend": BOOL,
                "template": closed(
                    {
                        "type": {"enum": ["Java", "Python", "Scala", "R"]},
                        "pythonVersion": {"enum": ["2", "3"]},
                        "mode": {"enum": ["cluster", "client", "in-cluster-client"]},
                        "sparkVersion": STRING,
                        "image": STRING,
                        "imagePullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
                        "mainApplicationFile": STRING,
                        "arguments": STRINGS,
                        "sparkConf": {"type": "object", "additionalProperties": STRING},
                        "restartPolicy": closed(
                            {
                                "type": {"enum": ["Never", "Always", "OnFailure"]},
                                "onFailureRetries": INT,
                                "onFailureRetryInterval": INT,
                                "onSubmissionFailureRetries": INT,
                                "onSubmissionFailureRetryInterval": INT,
                            }
                        ),
                        "volumes": {
                            "type": "array",
                            "items": closed({"name": STRING, "persistentVolumeClaim": closed({"claimName": STRING})}),
                        },
                        "driver": closed(POD),
                        "executor": closed({**POD, "instances": {"type": "integer", "minimum": 1}}),
                    },
                    ("driver", "executor", "mainApplicationFile", "sparkVersion", "type"),
                ),
            },
            ("schedule", "template"),
        ),
    },
    ("apiVersion", "kind", "metadata", "spec"),
)


def test_the_manifest_is_valid_for_the_crd_schema_of_the_fields_it_uses():
    jsonschema.validate(MANIFEST, CRD_SUBSET)
    typo = yaml.safe_load(MANIFEST_TEXT)
    typo["spec"]["template"]["executor"]["gpus"] = typo["spec"]["template"]["executor"].pop("gpu")
    with pytest.raises(jsonschema.ValidationError, match="gpus"):
        jsonschema.validate(typo, CRD_SUBSET)


def test_the_manifest_loads_the_delta_artifact_built_for_its_spark():
    """delta-spark_2.13:4.4.1 is built for Spark 4.2: on the manifest's Spark 4.0.1 Delta fails to load."""
    spark_42_delta = MANIFEST_TEXT.replace("delta-spark_4.0_2.13:4.4.1", "delta-spark_2.13:4.4.1")
    (problem,) = check.manifest_problems(spark_42_delta)
    assert "must load io.delta:delta-spark_4.0_2.13:4.4.1 4.0.1, has io.delta:delta-spark_2.13:4.4.1" in problem
    on_42 = spark_42_delta.replace('sparkVersion: "4.0.1"', 'sparkVersion: "4.2.0"')
    assert check.manifest_problems(on_42) == []
    unknown = MANIFEST_TEXT.replace('sparkVersion: "4.0.1"', 'sparkVersion: "4.1.0"')
    assert any("a Delta artifact built for Spark 4.1.0" in p for p in check.manifest_problems(unknown))


DOCKERFILE = check.DOCKERFILE.read_text()


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ("ARG PYTHON=3.11", "ARG PYTHON=3.10", "ARG PYTHON must be >= >=3.11"),  # apache/spark's python3 images
        ("humpback-spark[gpu,objectstore]", "humpback-spark[gpu]", "without the objectstore extra"),
        ("apache/spark:4.0.1-scala2.13", "apache/spark:4.2.0-scala2.13", "FROM apache/spark:<sparkVersion>"),
    ],
)
def test_the_image_has_the_manifests_spark_a_python_vllm_accepts_and_the_storage_extra(old, new, expected):
    assert check.image_problems(DOCKERFILE, MANIFEST_TEXT) == []
    assert old in DOCKERFILE
    found = check.image_problems(DOCKERFILE.replace(old, new), MANIFEST_TEXT)
    assert any(expected in p for p in found), found


def test_the_gpu_extra_brings_what_qlora_and_the_engine_import():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {req.split(">")[0].split("=")[0].split("<")[0] for req in extras["gpu"]}
    assert {"vllm", "accelerate", "bitsandbytes"} <= names
