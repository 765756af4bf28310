"""Evidence that the method works on the embedded default, read from what `make demo` wrote. Prints one line per figure.

    .venv/bin/python benchmarks/model_evidence.py [--config conf/local.yaml] [--threads 2]

Every figure is on data no model trained on: ``data/sample/seed-heldout.jsonl`` (48 FAQ pairs split off the seed
set) and the judge labels made from it (``data/sample/judge_labels.jsonl``).

- backward model: loss per token of the true instruction of each held-out pair given its answer (the
  backtranslation prompt, as trained), under the base model and under M_yx;
- generated instructions: of the ``candidates`` rows, the share that is non-empty, English (py3langid) and
  question- or request-shaped, with a few examples;
- judge: AUC of each judge's expected score (and of its parsed score) over the labelled pairs, precision and
  recall at the configured rule, beside a random and a length baseline that keep as many pairs;
- curation: pairs in A(i) per iteration under the configured rule;
- forward models: loss per token of each held-out answer given its instruction (seed system tag), base, M0, M1, M2.

Throughput figures are ``benchmarks/llm_throughput.py``'s; IFD's calibration is ``benchmarks/ifd_scores.py``'s.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import py3langid
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deltalake import DeltaTable  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from jobs.config import load_pipeline_config  # noqa: E402
from jobs.stages.models import recipe_file  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.evaluate import answer_loss  # noqa: E402
from training.data import Example, read_seed  # noqa: E402
from udfs.calibration import auc, baseline_values, precision_recall, read_labels  # noqa: E402
from udfs.config import load_config  # noqa: E402
from udfs.curation import uses_likelihoods  # noqa: E402
from udfs.tables import status_key  # noqa: E402
from udfs.instruction_stats import instruction_shape, load_parser  # noqa: E402

HELD_OUT = ROOT / "data/sample/seed-heldout.jsonl"


def table(root: str, name: str):
    path = f"{root}/{name}"
    return DeltaTable(path).to_pandas() if DeltaTable.is_deltatable(path) else None


def recipe(cfg, path: str, base: str) -> TrainConfig:
    return load_config(TrainConfig, path, [f"base_model={base}", "output_dir=/unused", *cfg.models.train_overrides])


def losses(cfg, base: str) -> None:
    held_out = read_seed(HELD_OUT, system_prompt=None)
    backward = recipe(cfg, recipe_file(cfg, "backward"), base)
    examples = [Example(None, e.instruction, e.output, "seed") for e in held_out]
    before, after = answer_loss(base, backward, examples), answer_loss(cfg.model_path("backward"), backward, examples)
    print(
        f"backward  held-out loss/token of instruction | answer ({len(examples)} pairs): base {before:.3f} -> "
        f"M_yx {after:.3f} ({after - before:+.3f})"
    )
    forward = recipe(cfg, recipe_file(cfg, "forward"), base)
    examples = [Example(forward.seed.system_prompt, e.instruction, e.output, "seed") for e in held_out]
    models = {"base": base, **{f"M{i}": cfg.iteration_model(i) for i in range(cfg.iterations.count + 1)}}
    figures = {
        name: answer_loss(path, forward, examples)
        for name, path in models.items()
        if Path(path, "config.json").is_file()
    }
    print(
        "forward   held-out loss/token of answer | instruction: "
        + ", ".join(f"{n} {v:.3f}" for n, v in figures.items())
    )


def instructions(root: str) -> None:
    candidates = table(root, "candidates")
    if candidates is None:
        print("instructions: no candidates table (run the augment stage)")
        return
    texts = [t for t in candidates["instruction"].fillna("") if t.strip()]
    by_status = candidates.groupby(["status", "reason"], dropna=False).size().items()
    counts = {status_key(s, r if isinstance(r, str) else None): n for (s, r), n in by_status}
    shapes = [instruction_shape(doc) for doc in load_parser().pipe(t[:400] for t in texts)]
    english = sum(py3langid.classify(t)[0] == "en" for t in texts)
    n = len(candidates)
    print(
        f"instructions: {len(texts)}/{n} non-empty ({len(texts) / n:.0%}), {english / max(1, len(texts)):.0%} English, "
        f"{sum(s == 'question' for s in shapes) / max(1, len(texts)):.0%} questions, "
        f"{sum(s == 'request' for s in shapes) / max(1, len(texts)):.0%} requests; status "
        f"{json.dumps(counts)}"
    )
    for t in texts[:5]:
        print(f"    e.g. {t[:140]!r}")


def judges(cfg, root: str) -> None:
    calibration, labels = table(root, "calibration"), read_labels(ROOT / cfg.report.judge_labels)
    if calibration is None:
        print("judge: no calibration table (run the calibrate stage)")
        return
    good = [p.label == "good" for p in labels]
    for name in ("random", "length"):
        print(f"judge     baseline {name:<6} AUC {auc(good, baseline_values(labels, name)):.3f}")
    if uses_likelihoods(cfg.iterations.score_column):
        print("judge     the rule is a likelihood one: its calibration is benchmarks/ifd_scores.py's")
        return
    for i in range(1, cfg.iterations.count + 1):
        rows = calibration[calibration["iteration"] == i].set_index("label_id")
        if rows.empty:
            continue
        judge = rows["judge_model_id"].iloc[0]
        by_pair = [rows.loc[p.label_id] if p.label_id in rows.index else None for p in labels]
        expected = [
            None if r is None or r["expected_score"] != r["expected_score"] else float(r["expected_score"])
            for r in by_pair
        ]
        parsed = [None if r is None or r["score"] != r["score"] else float(r["score"]) for r in by_pair]
        k, column = cfg.iterations.k(i), cfg.iterations.score_column
        values = {"score": parsed, "expected_score": expected}
        kept = [
            all(
                values[c][j] is not None and values[c][j] >= k
                for c in (("score", "expected_score") if column == "both" else (column,))
            )
            for j in range(len(labels))
        ]
        pr = precision_recall(good, kept, k)
        line = (
            f"judge     M{i - 1} ({judge}) over {len(labels)} labelled pairs: AUC expected_score "
            f"{_fmt(auc(good, expected))}, parsed score {_fmt(auc(good, parsed))} "
            f"({sum(v is not None for v in parsed)} parsed, {sum(v is not None for v in expected)} expected); "
            f"{cfg.iterations.rule(i)}: keeps {pr.kept}, precision {_fmt(pr.precision)}, recall {_fmt(pr.recall)}"
        )
        for name in ("random", "length"):  # the same number of pairs kept by a rule that needs no judge
            scores = baseline_values(labels, name)
            top = set(sorted(range(len(labels)), key=lambda j: -scores[j])[: pr.kept])
            base_pr = precision_recall(good, [j in top for j in range(len(labels))], k)
            line += f"; {name}-{pr.kept}: precision {_fmt(base_pr.precision)}, recall {_fmt(base_pr.recall)}"
        print(line)


def curation(cfg, root: str) -> None:
    scores = table(root, "scores")
    if scores is None:
        print("curation: no scores table")
        return
    if uses_likelihoods(cfg.iterations.score_column):
        print("curation: the rule is a likelihood one: the run summary counts A(i)")
        return
    for i in range(1, cfg.iterations.count + 1):
        mine = scores[(scores["iteration"] == i) & (scores["status"] == "ok")]
        k, column = cfg.iterations.k(i), cfg.iterations.score_column
        columns = ("score", "expected_score") if column == "both" else (column,)
        kept = mine[(mine[list(columns)] >= k).all(axis=1)]
        print(
            f"curation  A({i}) under {cfg.iterations.rule(i)}: {kept['generation_id'].nunique()} of {len(mine)} pairs; "
            f"expected_score mean {mine['expected_score'].mean():.2f}, "
            f"{mine['expected_score'].notna().mean():.0%} have one; "
            f"parsed {mine['score'].notna().mean():.0%}"
        )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "conf/local.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    os.chdir(ROOT)
    cfg = load_pipeline_config(args.config, args.overrides)
    root = os.path.abspath(cfg.storage.root)
    instructions(root)
    curation(cfg, root)
    judges(cfg, root)
    losses(cfg, cfg.model_path("base"))


if __name__ == "__main__":
    main()
