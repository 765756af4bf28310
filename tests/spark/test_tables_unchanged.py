"""The tables of a small sample run match a recorded digest: a refactoring changes no row.

Recorded before the driver layer was restructured (issue 10), which reproduced it exactly; re-recorded on
purpose twice since: when the expected score became the judge's mass on rating continuations (issue 11) and
training recorded its steps rule (both change the scores and the model ids), and when issues 12, 13 and 15
added config keys (model ids hash the whole training config) and columns (documents.length without html,
scores.cascade_probability, curated.rewrite_id). Re-recorded once more when the run moved to a process of its own
with one torch thread (below), and when model ids came to hash only the recipe in training_meta.json (below); and
when a model id came to hash the resolved training precision instead of ``auto`` (issue 23: ``optim.precision:
auto`` follows the CPU; the tiny model's recipes pin fp32, so its ids are the same on every CPU). Only the model
tables changed: their rows, columns, statuses and reasons are as before, their ids (and so seeds, text and
expected scores) are new; the corpus tables are unchanged.

The run: four sample pages through ingest, segment, models, augment, curate and train (one iteration), into a
fixed directory, so that the documents' source paths are the same on every run. Per table the digest holds
the row count, a sha256 of the sorted ids and a sha256 of the sorted rows over the deterministic columns.

A model id hashes the recipe of the model (its config, the sha256 of its data and its base's id), not where it
or its inputs are and not how long training took (``udfs.ids.model_fingerprint``), so model ids, and with them
every generation, score and curated id and each row's sampling seed, repeat exactly from any checkout.
The run is a process of its own with one torch thread: an in-process vLLM engine (other tests) binds torch's
threads and disables ``torch.set_num_threads``, and training with another thread count sums in another order,
which gave other weights, other instructions and other scores when the whole suite ran.
Left out as not reproducible: timestamps, the WARC's record ids and dates (warcio makes new ones, so the
file's size and the records' offsets and lengths change too) and the ingest ledger's ids (they hash the file's mtime).
Everything else, the LLM tables included, repeated bit for bit across runs of the code before the change.

The same checks run on every CPU; none is skipped. The corpus tables are digested exactly. The model tables'
keys and outcomes (``MODEL_OUTCOMES``: ids, the models and prompts that made each row, statuses, reasons,
parse outcomes, seeds) follow from ids and rules, not from float sums: they were the same with torch on AVX2
(ATEN_CPU_CAPABILITY=avx2) as on AVX-512, so they are held exactly on any CPU. Floats (expected scores) are
held within ``FLOAT_TOLERANCE`` (AVX2 and AVX-512 differ in the 7th digit; rounded to 6 places, as the first
digest did, one AVX-512 machine's values hashed differently from another's). Generated text follows float sums
through sampling, so its digest is exact only on a CPU that has one recorded (``models_text_by_cpu``).

    HUMPBACK_WRITE_DIGEST=1 pytest tests/spark/test_tables_unchanged.py   # re-record (only on purpose)
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deltalake import DeltaTable

from jobs.augment import main
from tests.conftest import ROOT, SAMPLE_SEED, sample_pages, write_warc

pytestmark = pytest.mark.slow

DIGEST = ROOT / "tests/data/sample_tables_digest.json"
RUN_DIR = Path("/tmp/humpback-tables-digest")

SETTINGS = [
    "models.bootstrap.hidden_size=128",
    "models.bootstrap.num_heads=2",
    "models.bootstrap.intermediate_size=256",
    "models.bootstrap.num_layers=2",
    "models.bootstrap.steps=10",
    "models.bootstrap.warmup_steps=2",
    "models.train_overrides=[optim.max_steps=6, optim.max_seq_len=512, tracking.enabled=false]",
    "augment.sampling.max_tokens=48",
    "curate.sampling.max_tokens=16",
    "iterations.count=1",
    "iterations.score_column=expected_score",
    "iterations.min_score=1.0",
    "report.after_run=false",
]
STAGES = "ingest,segment,models,augment,curate,train"

# The model tables' columns that follow from ids and rules on any CPU (besides the id), and their float columns
MODEL_OUTCOMES = {
    "candidates": ("segment_id", "model_id", "prompt_version", "sampling", "seed", "status", "reason"),
    "scores": (
        "generation_id",
        "iteration",
        "judge_model_id",
        "prompt_version",
        "parse_failure",
        "expected_score_failure",
        "status",
        "reason",
    ),
    "curated": ("score_id", "iteration", "generation_model_id", "judge_model_id", "score_column", "status", "reason"),
}
MODEL_FLOATS = {"scores": "expected_score", "curated": "expected_score"}
FLOAT_TOLERANCE = 1e-3
# The generated text: exact only where this CPU's digest is recorded
MODEL_TEXT = {"candidates": ("instruction", "raw_text"), "scores": ("raw_text",), "curated": ()}

# table -> (id column or None, columns left out of the row digest besides *_at and *seconds)
TABLES = {
    "files": (None, ("unit_id", "file_id", "mtime_ns", "size")),
    "documents": ("doc_id", ("record_id", "fetch_date", "offset", "length")),
    "segments": ("segment_id", ()),
    "candidates": ("generation_id", ()),
    "scores": ("score_id", ()),
    "curated": ("curated_id", ()),
}


def _value(v):
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, 6)
    if hasattr(v, "tolist"):
        return v.tolist()
    return v


def _sha(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()


def table_digest(path: Path, key: str | None, excluded: tuple[str, ...]) -> dict:
    df = DeltaTable(str(path)).to_pandas()
    columns = sorted(c for c in df.columns if c not in excluded and not c.endswith(("_at", "seconds")))
    rows = [json.dumps({c: _value(r[c]) for c in columns}, sort_keys=True, default=str) for r in df.to_dict("records")]
    return {
        "rows": len(df),
        "columns": columns,
        "ids_sha256": _sha([str(i) for i in df[key]]) if key else None,
        "rows_sha256": _sha(rows),
    }


def model_digest(path: Path, key: str, table: str) -> dict:
    """What holds on any CPU: rows, columns, ids and outcomes exactly, floats by id (compared within a tolerance)."""
    df = DeltaTable(str(path)).to_pandas()
    outcomes = [
        json.dumps([r[key], *(_value(r[c]) for c in MODEL_OUTCOMES[table])], default=str) for _, r in df.iterrows()
    ]
    float_column = MODEL_FLOATS.get(table)
    return {
        "rows": len(df),
        "columns": sorted(c for c in df.columns if not c.endswith(("_at", "seconds"))),
        "ids_sha256": _sha([str(i) for i in df[key]]),
        "outcomes_sha256": _sha(outcomes),
        "floats": {r[key]: _value(r[float_column]) for _, r in df.iterrows()} if float_column else {},
    }


def text_digest(path: Path, key: str, table: str) -> str:
    df = DeltaTable(str(path)).to_pandas()
    return _sha([json.dumps([r[key], *(r[c] for c in MODEL_TEXT[table])], default=str) for _, r in df.iterrows()])


def assert_floats_close(got: dict, want: dict) -> None:
    for table, values in want.items():
        assert got[table].keys() == values.keys(), table
        far = {k: (got[table][k], v) for k, v in values.items() if not _close(got[table][k], v)}
        assert not far, f"{table}: floats beyond {FLOAT_TOLERANCE}: {far}"


def _close(a, b) -> bool:
    return a is None and b is None or (a is not None and b is not None and abs(a - b) <= FLOAT_TOLERANCE)


def sample_run() -> None:
    """Run the sample into ``RUN_DIR`` (the caller holds ``RUN_DIR``'s lock)."""
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    RUN_DIR.mkdir(parents=True)
    warc = write_warc(RUN_DIR / "crawl.warc.gz", sample_pages())
    seed = RUN_DIR / "seed.jsonl"
    seed.write_text("".join(SAMPLE_SEED.read_text().splitlines(keepends=True)[:16]))
    # The evaluation set too: conf/tiny.yaml's path is the checkout's, and a run's inputs are its directory's.
    evals = shutil.copy(ROOT / "data/sample/eval-prompts.jsonl", RUN_DIR / "eval-prompts.jsonl")
    args = [
        "--config",
        str(ROOT / "conf/tiny.yaml"),
        "--stages",
        STAGES,
        "--set",
        f"input.corpus={warc}",
        "--set",
        f"input.seed={seed}",
        "--set",
        f"storage.root={RUN_DIR}/tables",
        "--set",
        f"models.dir={RUN_DIR}/models",
        "--set",
        f"segment.decontamination=[{{name: sample_eval, path: {evals}, field: prompt}}]",
    ]
    for item in SETTINGS:
        args += ["--set", item]
    main(args)


CORPUS_TABLES = ("files", "documents", "segments")
# Passed on to the run, the rest of the environment is left out: the suite's earlier tests leave variables behind
# (an in-process vLLM engine exports LD_PRELOAD=torch's libgomp and thread settings).
PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "JAVA_HOME", "SPARK_HOME", "ATEN_CPU_CAPABILITY")


def run_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    return env | {
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
        "PYSPARK_PYTHON": sys.executable,
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    }


def assert_model_tables_consistent(tables: Path) -> None:
    """What holds on any CPU: one candidate per kept segment, one score per ok candidate, and a curated row for
    each ok score at or above k (1.0)."""
    read = {t: DeltaTable(str(tables / t)).to_pandas() for t in ("segments", "candidates", "scores", "curated")}
    kept = read["segments"][read["segments"]["status"] == "ok"]
    ok = read["candidates"][read["candidates"]["status"] == "ok"]
    scores = read["scores"]
    assert sorted(read["candidates"]["segment_id"]) == sorted(kept["segment_id"])
    assert sorted(scores["generation_id"]) == sorted(ok["generation_id"])
    above_k = scores[(scores["status"] == "ok") & (scores["expected_score"] >= 1.0)]
    assert sorted(read["curated"]["score_id"]) == sorted(above_k["score_id"])


def test_sample_run_tables_match_the_recorded_digest():
    import torch

    cpu = torch.backends.cpu.get_cpu_capability()
    env = run_env()
    code = "from tests.spark.test_tables_unchanged import sample_run; sample_run()"
    # One fixed directory for every checkout on this machine: runs from two worktrees take turns.
    with open(f"{RUN_DIR}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
        assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
        tables = RUN_DIR / "tables"
        corpus = {t: table_digest(tables / t, *TABLES[t]) for t in CORPUS_TABLES}
        models = {t: model_digest(tables / t, TABLES[t][0], t) for t in MODEL_OUTCOMES}
        text = {t: text_digest(tables / t, TABLES[t][0], t) for t in MODEL_TEXT}
        assert_model_tables_consistent(tables)
    recorded = json.loads(DIGEST.read_text())
    if os.environ.get("HUMPBACK_WRITE_DIGEST"):
        recorded = {
            "corpus": corpus,
            "models": models,
            "models_text_by_cpu": {**recorded.get("models_text_by_cpu", {}), cpu: text},
        }
        DIGEST.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")
    assert corpus == recorded["corpus"]
    floats = {t: d.pop("floats") for t, d in models.items()}
    want_floats = {t: d["floats"] for t, d in recorded["models"].items()}
    assert models == {t: {k: v for k, v in d.items() if k != "floats"} for t, d in recorded["models"].items()}
    assert_floats_close(floats, want_floats)
    if cpu in recorded["models_text_by_cpu"]:  # generated text: exact where this CPU's is recorded
        assert text == recorded["models_text_by_cpu"][cpu]
