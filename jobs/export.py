"""Export the training set of an iteration's model as a dataset: chat messages, lineage and a dataset card.

    spark-submit jobs/export.py --config conf/local.yaml [--set dotted.key=value ...] [--iteration N] --out DIR

writes ``DIR/train.jsonl``, ``DIR/train.parquet`` and ``DIR/README.md``. The examples are exactly what M_N
was trained on: they are rebuilt by ``training.data.load_examples`` from the model's ``training_meta.json``
(its config, with the tables pinned at the versions it read), and their sha256 must match the one recorded
there. Each row has ``messages`` (``[{role, content}]``: the system tag, the instruction, the answer), the
``source`` (``seed`` or ``augmented``) and, for augmented rows, their lineage from the ``curated`` table
(url, doc, segment, generation and score ids, judge, score, expected score). Load it with
``datasets.load_dataset("json", data_files="DIR/train.jsonl")`` or ``("parquet", data_files="DIR/train.parquet")``.
Iteration 0 exports M0's data (the seed set). The default is the last iteration (``iterations.count``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from jobs import console
from jobs.config import PipelineConfig, job_arguments, load_pipeline_config
from jobs.preflight import UsageError
from training.config import TrainConfig
from training.data import Example, load_examples
from udfs.config import ConfigError, build
from udfs.ids import model_fingerprint
from udfs.prompts import messages

log = logging.getLogger(__name__)

META = "training_meta.json"
LINEAGE_COLUMNS = (
    "url",
    "doc_id",
    "segment_id",
    "generation_id",
    "score_id",
    "judge_model_id",
    "score",
    "expected_score",
)
POOL_TABLES = ("segments", "candidates", "scores")


def pinned_train_config(meta: dict) -> TrainConfig:
    """The model's training config with its tables pinned at the versions its run read."""
    cfg = build(TrainConfig, meta["config"])
    tables = meta["provenance"].get("augmented", {}).get("tables", {})
    if not cfg.augmented.enabled:
        return cfg
    pins = {f"{name}_version": tables[name]["version"] for name in (*POOL_TABLES, "rewrites") if name in tables}
    return dataclasses.replace(cfg, augmented=dataclasses.replace(cfg.augmented, as_of=None, **pins))


def training_examples(model_dir: str) -> tuple[list[Example], dict]:
    """The examples ``model_dir`` was trained on and its training_meta.json; checked against its sha256."""
    path = Path(model_dir) / META
    if not path.is_file():
        raise UsageError(f"no trained model at {model_dir} ({META} missing): run the job's train stage first")
    meta = json.loads(path.read_text(encoding="utf-8"))
    examples, provenance = load_examples(pinned_train_config(meta))
    if provenance["sha256"] != meta["provenance"]["sha256"]:
        raise UsageError(
            f"the tables no longer give {model_dir}'s training set (sha256 differs): "
            "were the tables vacuumed or replaced since it was trained?"
        )
    return examples, meta


def export_frame(examples: list[Example], lineage: pd.DataFrame | None) -> pd.DataFrame:
    """One row per example: chat messages, source, and the lineage columns (null for seed rows)."""
    rows = pd.DataFrame(
        {
            "messages": [messages(e.instruction, system=e.system, assistant=e.output) for e in examples],
            "source": [e.source for e in examples],
            "score_id": [e.score_id for e in examples],
        }
    )
    if lineage is None or lineage.empty:
        lineage = pd.DataFrame(columns=list(LINEAGE_COLUMNS))
    lineage = lineage[list(LINEAGE_COLUMNS)].drop_duplicates("score_id")
    out = rows.merge(lineage, on="score_id", how="left")
    missing = out["source"].eq("augmented") & out["segment_id"].isna()
    if missing.any():
        raise UsageError(
            f"{int(missing.sum())} augmented examples have no row in the curated table: "
            "re-run the train stage, which writes their lineage"
        )
    out = out.astype({"score": "float64", "expected_score": "float64"})
    return out[["messages", "source", *LINEAGE_COLUMNS]]


def dataset_card(cfg: PipelineConfig, iteration: int, model_dir: str, meta: dict, frame: pd.DataFrame) -> str:
    """README.md of the exported dataset: where it comes from, which table versions, the rule, counts, licence."""
    train = meta["config"]
    aug = train.get("augmented", {})
    tables = meta["provenance"].get("augmented", {}).get("tables", {})
    counts = frame["source"].value_counts().to_dict()
    exported = datetime.now(timezone.utc).isoformat(timespec="seconds")
    lines = [
        f"# Humpback training set of M{iteration}",
        "",
        f"The examples `{model_dir}` was trained on (sha256 `{meta['provenance']['sha256']}`), exported {exported}.",
        "",
        "- **Schema**: `messages` (`[{role, content}]`: system tag, user instruction, assistant answer), `source` "
        "(`seed` | `augmented`), lineage of augmented rows: " + ", ".join(f"`{c}`" for c in LINEAGE_COLUMNS) + ".",
        f"- **Source corpus**: `{cfg.input.corpus}`; seed set: `{meta['provenance']['seed']['path']}`.",
        f"- **Counts**: {counts.get('seed', 0)} seed, {counts.get('augmented', 0)} augmented, {len(frame)} in all.",
    ]
    if tables:
        versions = ", ".join(f"`{name}` v{t['version']} ({t['path']})" for name, t in tables.items())
        lines += [
            f"- **Table versions**: {versions}.",
            f"- **Rule**: `{aug.get('score_column')} >= {aug.get('min_score')}` by judge "
            f'`{aug.get("judge_model_id")}`; system tags: seed "{train["seed"]["system_prompt"]}", '
            f'augmented "{aug.get("system_prompt")}".',
        ]
    else:
        lines.append("- **Rule**: none (seed pairs only).")
    lines += [
        "",
        "## Licence",
        "",
        "The seed pairs keep the licence of the seed file. Augmented answers are web text copied from the corpus, "
        "with the rights of their authors (the `url` column names each page); the generated instructions come "
        "from the models trained here. Check the corpus's terms before you redistribute this dataset.",
        "",
    ]
    return "\n".join(lines)


def write_dataset(frame: pd.DataFrame, card: str, out: str) -> Path:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_json(folder / "train.jsonl", orient="records", lines=True, force_ascii=False)
    frame.to_parquet(folder / "train.parquet", index=False)
    (folder / "README.md").write_text(card, encoding="utf-8")
    return folder


def export(cfg: PipelineConfig, iteration: int, out: str, curated: pd.DataFrame | None) -> Path:
    """Write iteration ``iteration``'s training set to ``out``; ``curated``: the curated table (lineage)."""
    model_dir = cfg.iteration_model(iteration)
    examples, meta = training_examples(model_dir)
    lineage = None
    if curated is not None:
        lineage = curated[curated["trained_model_id"] == model_fingerprint(model_dir)]
    frame = export_frame(examples, lineage)
    folder = write_dataset(frame, dataset_card(cfg, iteration, model_dir, meta, frame), out)
    log.info("exported %d examples of M%d to %s", len(frame), iteration, folder)
    return folder


def read_curated(cfg: PipelineConfig, logs=None) -> pd.DataFrame | None:
    """The curated table (lineage of every trained model's examples) through the job's storage."""
    from jobs.session import get_session
    from jobs.storage import Storage

    spark = get_session(cfg.spark, logs)
    df = Storage(spark, cfg.storage.root, cfg.storage.engine).read("curated")
    return None if df is None else df.select("trained_model_id", *LINEAGE_COLUMNS).toPandas()


def main(argv: list[str] | None = None) -> Path:
    parser = job_arguments(__doc__)
    parser.add_argument("--iteration", type=int, default=None, help="export M_N's data (default: iterations.count)")
    parser.add_argument("--out", required=True, help="folder for train.jsonl, train.parquet and README.md")
    args = parser.parse_args(argv)
    try:
        cfg = load_pipeline_config(args.config, args.overrides)
        iteration = cfg.iterations.count if args.iteration is None else args.iteration
        if not 0 <= iteration <= cfg.iterations.count:
            raise UsageError(f"--iteration: {iteration} is not within 0..{cfg.iterations.count} (iterations.count)")
        logs = console.setup_logging(cfg.storage.root)  # Spark's and py4j's logs to the log folder, as the job's
        folder = export(cfg, iteration, args.out, read_curated(cfg, logs))
    except (ConfigError, UsageError) as exc:
        sys.exit(f"error: {exc}")
    print(folder, flush=True)
    return folder


def export_from_widgets(dbutils) -> Path:
    """The Databricks notebook ``notebooks/export.py``: widgets ``config``, ``overrides``, ``iteration``, ``out``."""
    from jobs.notebook import DEFAULT_CONFIG, project_root

    widgets = dbutils.widgets
    widgets.text("config", DEFAULT_CONFIG, "Config file")
    widgets.text("overrides", "", "Overrides (key=value ...)")
    widgets.text("iteration", "", "Iteration (empty: the last)")
    widgets.text("out", "", "Output folder (e.g. /Volumes/main/humpback/exports/m2)")
    root = project_root(Path.cwd())
    if root is not None:
        os.chdir(root)
    args = ["--config", widgets.get("config")]
    for item in shlex.split(widgets.get("overrides")):
        args += ["--set", item]
    if widgets.get("iteration").strip():
        args += ["--iteration", widgets.get("iteration").strip()]
    return main([*args, "--out", widgets.get("out")])


if __name__ == "__main__":
    main()
