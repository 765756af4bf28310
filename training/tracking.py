"""MLflow records of a training run: the config as params, per-step metrics, the training data as dataset
inputs (the seed file, and each Delta table at the version read), the model's path and training_meta.json.

Off with ``tracking.enabled: false``; only rank 0 records. ``tracking.uri`` null means a local store next
to the models, ``<output_dir>/../mlruns/mlflow.db`` (SQLite; MLflow 3 refuses new plain-file stores) with
artefacts in ``mlruns/artifacts``; browse it with ``mlflow ui --backend-store-uri sqlite:///.../mlflow.db``.
The client API is used rather than ``mlflow.start_run`` so that no process-wide state changes: the Spark
driver trains several models in one process.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

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
        store = Path(output_dir).resolve().parent / "mlruns"
        if cfg.uri is None:
            store.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=cfg.uri or f"sqlite:///{store / 'mlflow.db'}")
        self.artifact_location = None if cfg.uri else (store / "artifacts").as_uri()

    def start(self, run_id: str | None, name: str, params: dict[str, Any], provenance: dict[str, Any]) -> str | None:
        """Continue ``run_id`` (a resumed run) or open a new run with params and dataset inputs."""
        if not self.active:
            return None
        if run_id is not None:
            self.run_id = run_id
            return run_id
        from mlflow.entities import Param

        experiment = self.client.get_experiment_by_name(self.cfg.experiment)
        experiment_id = (
            experiment.experiment_id
            if experiment
            else self.client.create_experiment(self.cfg.experiment, artifact_location=self.artifact_location)
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
        self.client.set_terminated(self.run_id, "FINISHED")

    def fail(self) -> None:
        # A run that raised is marked failed; a killed one stays RUNNING until its resume finishes it.
        if self.active and self.run_id is not None:
            self.client.set_terminated(self.run_id, "FAILED")


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
