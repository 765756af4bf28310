"""MLflow records of a training run: the config as params, per-step metrics, the training data as dataset
inputs (the seed file, and each Delta table at the version read), the model's path and training_meta.json.

Off with ``tracking.enabled: false``; only rank 0 records. Where the run goes (``destination``): the
configured ``tracking.uri``; else ``$MLFLOW_TRACKING_URI``; else, on Databricks (``DATABRICKS_RUNTIME_VERSION``
is set), the workspace's tracking server (``databricks``), where experiments are workspace paths; else,
offline or on a laptop, a local store next to the models, ``<output_dir>/../mlruns/mlflow.db`` (SQLite; MLflow
3 refuses new plain-file stores) with artefacts in ``mlruns/artifacts``; browse it with ``mlflow ui
--backend-store-uri sqlite:///.../mlflow.db``. A SQLite file on a Unity Catalog volume or DBFS would not
take MLflow's locks, which is why the local store is the last choice.

``tracking.register_model: catalog.schema.model`` (with ``log_model``) registers the logged model: in Unity
Catalog on Databricks (registry ``databricks-uc``), else in the tracking server's own registry.

The client API is used rather than ``mlflow.start_run`` so that no process-wide state changes: the Spark
driver trains several models in one process.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from training.config import TrackingConfig


class Tracker:
    """One MLflow run; every method is a no-op when tracking is off."""

    def __init__(self, cfg: TrackingConfig, output_dir: str, active: bool):
        self.cfg = cfg
        self.active = cfg.enabled and active
        self.run_id: str | None = None
        if not self.active:
            return
        try:
            from mlflow import MlflowClient
        except ImportError:
            raise ImportError(
                "tracking.enabled needs mlflow-skinny (pip install mlflow-skinny sqlalchemy alembic), "
                "or set tracking.enabled=false"
            ) from None
        self.where = destination(cfg, output_dir)
        if self.where.local_store is not None:
            self.where.local_store.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=self.where.tracking_uri, registry_uri=self.where.registry_uri)

    def start(self, run_id: str | None, name: str, params: dict[str, Any], provenance: dict[str, Any]) -> str | None:
        """Continue ``run_id`` (a resumed run) or open a new run with params and dataset inputs."""
        if not self.active:
            return None
        if run_id is not None:
            self.run_id = run_id
            return run_id
        from mlflow.entities import Param

        experiment = self.client.get_experiment_by_name(self.where.experiment)
        experiment_id = (
            experiment.experiment_id
            if experiment
            else self.client.create_experiment(self.where.experiment, artifact_location=self.where.artifact_location)
        )
        tags = {"data_sha256": provenance["sha256"]}
        tags.update({f"examples.{k}": str(v) for k, v in provenance["examples_by_source"].items()})
        self.run_id = self.client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in flatten(params).items()])
        self.client.log_inputs(self.run_id, datasets=dataset_inputs(provenance))
        return self.run_id

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        if not self.active:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def finish(self, model_dir: str, meta_path: Path) -> None:
        """Record where the model is and what built it, and close the run."""
        if not self.active:
            return
        self.client.set_tag(self.run_id, "model_dir", str(Path(model_dir).resolve()))
        self.client.log_artifact(self.run_id, str(meta_path))
        if self.cfg.log_model:
            self.client.log_artifacts(self.run_id, model_dir, "model")
        if self.cfg.register_model:
            self.register(registered_name(self.cfg.register_model, model_dir))
        self.client.set_terminated(self.run_id, "FINISHED")

    def register(self, name: str) -> str:
        """A new version of registered model ``name`` from the run's ``model`` artefacts; returns the version."""
        from mlflow.exceptions import MlflowException
        from mlflow.models import Model
        from mlflow.models.signature import ModelSignature
        from mlflow.types import ColSpec, Schema

        # Unity Catalog takes only model versions whose MLmodel has a signature: text in, text out.
        signature = ModelSignature(Schema([ColSpec("string", "prompt")]), Schema([ColSpec("string", "text")]))
        with tempfile.TemporaryDirectory() as tmp:
            Model(artifact_path="model", run_id=self.run_id, signature=signature).save(f"{tmp}/MLmodel")
            self.client.log_artifact(self.run_id, f"{tmp}/MLmodel", "model")
        try:
            self.client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        source = f"{self.client.get_run(self.run_id).info.artifact_uri}/model"
        version = self.client.create_model_version(name, source, run_id=self.run_id).version
        self.client.set_tag(self.run_id, "registered_model", f"{name}/{version}")
        return str(version)

    def fail(self) -> None:
        # A run that raised is marked failed; a killed one stays RUNNING until its resume finishes it.
        if self.active and self.run_id is not None:
            self.client.set_terminated(self.run_id, "FAILED")


ON_DATABRICKS = "DATABRICKS_RUNTIME_VERSION"  # set by every Databricks Runtime, on the driver and the workers


@dataclass(frozen=True)
class Destination:
    """Where a run is recorded: tracking server, model registry, experiment name and artefact root."""

    tracking_uri: str
    registry_uri: str | None  # None: the tracking server's own registry
    experiment: str
    artifact_location: str | None  # None: the server's default
    local_store: Path | None  # the local SQLite store's folder, when that is where runs go


def destination(cfg: TrackingConfig, output_dir: str, environ: Mapping[str, str] = os.environ) -> Destination:
    """Where a training run into ``output_dir`` is recorded (the order is in this module's docstring)."""
    databricks = bool(environ.get(ON_DATABRICKS))
    uri = cfg.uri or environ.get("MLFLOW_TRACKING_URI") or ("databricks" if databricks else None)
    if uri is None:
        store = Path(output_dir).resolve().parent / "mlruns"
        return Destination(
            f"sqlite:///{store / 'mlflow.db'}", None, cfg.experiment, (store / "artifacts").as_uri(), store
        )
    experiment = cfg.experiment
    workspace = uri == "databricks" or uri.startswith("databricks://")  # the bare name or a CLI profile
    if workspace and not experiment.startswith("/"):
        experiment = f"/Shared/{experiment}"  # workspace experiments are paths; /Shared is open to every user
    return Destination(uri, "databricks-uc" if workspace and databricks else None, experiment, None, None)


def registered_name(template: str, model_dir: str) -> str:
    """``tracking.register_model`` for the model in ``model_dir``: ``{model}`` is the directory's name."""
    return template.replace("{model}", Path(model_dir).name.lower())


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config as dotted keys, as ``--set`` spells them."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def dataset_inputs(provenance: dict[str, Any]) -> list[Any]:
    """The seed file and each Delta table at the version read, as MLflow dataset inputs."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.delta_dataset_source import DeltaDatasetSource
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    with warnings.catch_warnings():
        # MLflow registers two equivalent local-file sources and warns that it picked one of them.
        warnings.simplefilter("ignore", UserWarning)
        seed = resolve_dataset_source(provenance["seed"]["path"])  # local, s3://, dbfs:/ ... alike
    datasets = [MetaDataset(seed, name="seed")]
    for name, table in provenance.get("augmented", {}).get("tables", {}).items():
        source = DeltaDatasetSource(path=table["path"], delta_table_version=table["version"])
        # The version is the table's content id; the digest carries it too, as the source omits version 0.
        datasets.append(MetaDataset(source, name=name, digest=f"v{table['version']}"))
    context = [InputTag("mlflow.data.context", "training")]
    return [DatasetInput(d._to_mlflow_entity(), context) for d in datasets]
