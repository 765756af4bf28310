"""Where MLflow runs go (Databricks workspace, a configured server, or the local SQLite store) and model
registration, with the environment monkeypatched: nothing here reaches a network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from training.config import TrackingConfig
from training.tracking import ON_DATABRICKS, Tracker, destination, registered_name
from udfs.config import ConfigError, load_config


@pytest.fixture(autouse=True)
def no_tracking_env(monkeypatch):
    for name in (ON_DATABRICKS, "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)


def test_offline_runs_go_to_the_local_sqlite_store_next_to_the_models(tmp_path):
    where = destination(TrackingConfig(), str(tmp_path / "models/m1"), environ={})
    store = (tmp_path / "models/mlruns").resolve()
    assert where.tracking_uri == f"sqlite:///{store / 'mlflow.db'}" and where.local_store == store
    assert where.registry_uri is None and where.experiment == "humpback"
    assert where.artifact_location == (store / "artifacts").as_uri()


def test_on_databricks_runs_go_to_the_workspace_and_models_to_unity_catalog(tmp_path, monkeypatch):
    environ = {ON_DATABRICKS: "17.3"}
    where = destination(TrackingConfig(), "/Volumes/main/humpback/models/m1", environ)
    assert (where.tracking_uri, where.registry_uri) == ("databricks", "databricks-uc")
    assert where.experiment == "/Shared/humpback"  # workspace experiments are paths
    assert where.local_store is None and where.artifact_location is None  # the workspace keeps the artefacts
    own = destination(TrackingConfig(experiment="/Users/ana@example.com/humpback"), "/tmp/m1", environ)
    assert own.experiment == "/Users/ana@example.com/humpback"
    # The Tracker itself: a client on the workspace and no SQLite file anywhere (no request is made yet).
    monkeypatch.setenv(ON_DATABRICKS, "17.3")
    tracker = Tracker(TrackingConfig(), str(tmp_path / "m1"), active=True)
    assert tracker.client.tracking_uri == "databricks" and tracker.client._registry_uri == "databricks-uc"
    assert not list(tmp_path.iterdir())


def test_a_configured_uri_wins_everywhere_then_the_mlflow_variable():
    cfg = TrackingConfig(uri="https://mlflow.example.com")
    for environ in ({}, {ON_DATABRICKS: "17.3"}, {"MLFLOW_TRACKING_URI": "http://other:5000"}):
        where = destination(cfg, "/tmp/m1", environ)
        assert where.tracking_uri == "https://mlflow.example.com" and where.registry_uri is None
        assert where.experiment == "humpback" and where.local_store is None
    where = destination(TrackingConfig(), "/tmp/m1", {"MLFLOW_TRACKING_URI": "http://mlflow:5000"})
    assert where.tracking_uri == "http://mlflow:5000" and where.local_store is None
    # A Databricks CLI profile off Databricks: workspace experiment paths, the workspace's own registry.
    where = destination(TrackingConfig(uri="databricks://prod"), "/tmp/m1", {})
    assert where.experiment == "/Shared/humpback" and where.registry_uri is None


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["tracking.register_model=humpback_m1", "tracking.log_model=true"], "catalog.schema.model"),
        (["tracking.register_model=main.humpback.m-1", "tracking.log_model=true"], "catalog.schema.model"),
        (["tracking.register_model=main.humpback.m1"], "needs log_model"),
    ],
)
def test_a_bad_registered_model_name_is_a_config_error_naming_the_key(tmp_path, overrides, message):
    recipe = tmp_path / "train.yaml"
    recipe.write_text(yaml.safe_dump({"base_model": "/models/base", "output_dir": str(tmp_path / "m1")}))
    from training.config import TrainConfig

    with pytest.raises(ConfigError, match=rf"tracking.*{message}"):
        load_config(TrainConfig, str(recipe), overrides)


def test_registered_name_fills_in_the_model_directory():
    assert registered_name("main.humpback.humpback_{model}", "/Volumes/x/models/M1") == "main.humpback.humpback_m1"
    assert registered_name("main.humpback.final", "/models/m2") == "main.humpback.final"


def test_a_logged_model_is_registered_with_a_signature_as_a_new_version_per_run(tmp_path):
    """The registration calls on a real registry: the local SQLite one (Unity Catalog takes the same calls)."""
    from mlflow import MlflowClient
    from mlflow.models import Model

    seed = tmp_path / "seed.jsonl"
    seed.write_text(json.dumps({"instruction": "q", "output": "a"}) + "\n")
    model_dir = tmp_path / "models/m1"
    model_dir.mkdir(parents=True)
    (model_dir / "config.json").write_text("{}")
    (model_dir / "training_meta.json").write_text("{}")
    cfg = TrackingConfig(log_model=True, register_model="main.humpback.humpback_{model}")
    provenance = {"sha256": "abc", "examples_by_source": {"seed": 1}, "seed": {"path": str(seed)}}
    for _ in range(2):  # the second run adds version 2 to the existing registered model
        tracker = Tracker(cfg, str(model_dir), active=True)
        run_id = tracker.start(None, "m1", {"lr": 1e-5}, provenance)
        tracker.finish(str(model_dir), model_dir / "training_meta.json")
    client = MlflowClient(tracker.where.tracking_uri)
    versions = client.search_model_versions("name='main.humpback.humpback_m1'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    latest = client.get_model_version("main.humpback.humpback_m1", "2")
    assert latest.run_id == run_id and latest.source.endswith("/model")
    run = client.get_run(run_id)
    assert run.data.tags["registered_model"] == "main.humpback.humpback_m1/2" and run.info.status == "FINISHED"
    logged = Path(client.download_artifacts(run_id, "model", str(tmp_path / "download")))
    assert {"config.json", "training_meta.json", "MLmodel"} <= {p.name for p in logged.iterdir()}
    signature = Model.load(str(logged / "MLmodel")).signature
    assert signature.inputs.input_names() == ["prompt"] and signature.outputs.input_names() == ["text"]
