"""IFD (Superfiltering) on the labelled pairs: how well the likelihood scores and the judge separate good pairs
from bad, and what the likelihood pass costs. Prints one line per figure.

    python benchmarks/ifd_scores.py [--config conf/local.yaml] [--model DIR] [--repeat 2]

The scorer defaults to the config's likelihood scorer (``likelihood.model``, null: the base model, the built-in
SmolLM2-135M-Instruct on conf/local.yaml), zero-shot, through the same ``udfs.likelihood.likelihood_batch`` and
vLLM engine as the likelihood stage. The pairs are ``report.judge_labels`` (48 on the sample). Figures:

- AUC of -IFD, -conditional loss, -answer loss, the answer length and a seeded random draw; and of each judge's
  expected score and parsed score when a ``calibration`` table is under ``storage.root`` (``make demo``);
- seconds of the likelihood pass (two prefills per pair, prompt log-probabilities), and of the same token ids
  prefilled as plain one-token generations, which may read vLLM's prefix cache: vLLM reads none for requests
  asking for prompt log-probabilities, and the share of tokens a cache could serve bounds what that costs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deltalake import DeltaTable  # noqa: E402

from jobs.config import load_pipeline_config  # noqa: E402
from udfs.calibration import auc, baseline_values, read_labels, signal_values  # noqa: E402
from udfs.engine import get_engine  # noqa: E402
from udfs.likelihood import likelihood_batch, likelihood_prompts  # noqa: E402
from udfs.prompts import encode_text  # noqa: E402


def judge_signals(root: str, labels) -> list[tuple[str, list[float | None]]]:
    """Each judge's expected and parsed score per labelled pair, from a run's ``calibration`` table."""
    path = f"{root}/calibration"
    if not DeltaTable.is_deltatable(path):
        return []
    table = DeltaTable(path).to_pandas()
    found = []
    for (iteration, judge), rows in table.groupby(["iteration", "judge_model_id"]):
        for column in ("expected_score", "score"):
            by_label = dict(zip(rows["label_id"], rows[column]))
            found.append((f"judge M{iteration - 1} {column} ({judge})", signal_values(labels, by_label, column)))
    return found


def shared_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "conf/local.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--model", help="scorer model directory (default: the config's likelihood scorer)")
    parser.add_argument("--repeat", type=int, default=2, help="timed passes; the best is reported")
    args = parser.parse_args()
    os.chdir(ROOT)
    cfg = load_pipeline_config(args.config, args.overrides)
    model = args.model or cfg.likelihood_model()
    labels = read_labels(cfg.report.judge_labels)
    batch = pd.DataFrame(
        {
            "likelihood_id": [p.label_id for p in labels],
            "generation_id": [p.label_id for p in labels],
            "segment_id": [p.label_id for p in labels],
            "instruction": [p.instruction for p in labels],
            "text": [p.output for p in labels],
        }
    )
    engine = get_engine(model, cfg.engine)
    likelihood_batch(engine, batch.head(2), "warm-up", "labels")
    seconds = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        rows = likelihood_batch(engine, batch, Path(model).name, "labels")
        seconds.append(time.perf_counter() - start)
    ok = rows[rows["status"] == "ok"]
    print(
        f"scorer {model}: {len(ok)}/{len(rows)} labelled pairs scored, "
        f"statuses {rows['status'].value_counts().to_dict()}"
    )

    good = [p.label == "good" for p in labels]
    signals = [
        (f"-{column}", signal_values(labels, dict(zip(rows["likelihood_id"], rows[column])), column))
        for column in ("ifd", "conditional_loss")
    ]
    signals.append(("-answer_loss", [None if v != v else -v for v in rows["answer_loss"]]))
    signals += [("length", baseline_values(labels, "length")), ("random", baseline_values(labels, "random"))]
    signals += judge_signals(os.path.abspath(cfg.storage.root), labels)
    for name, values in signals:
        value = auc(good, values)
        rated = sum(v is not None for v in values)
        print(f"AUC {name:<40} {'n/a' if value is None else f'{value:.3f}'}  ({rated} of {len(labels)} rated)")
    means = ok.groupby(pd.Series([p.label for p in labels])[ok.index])[["ifd", "conditional_loss"]].mean()
    print(
        "mean by label: "
        + ", ".join(f"{k}: ifd {r.ifd:.3f}, loss {r.conditional_loss:.3f}" for k, r in means.iterrows())
    )

    # The same token ids as one-token generations: requests that may read the prefix cache.
    prompts, answers = [], []
    for p in labels:
        conditional, alone = likelihood_prompts(engine, p.instruction)
        prompts += [conditional, alone]
        answers += [p.output, p.output]
    ids = [engine.encode(q) + encode_text(engine.tokenizer, a) for q, a in zip(prompts, answers)]
    from vllm.inputs import TokensPrompt  # the benchmark times vLLM itself here

    from vllm import SamplingParams

    plain = []
    for _ in range(args.repeat):
        engine.llm.reset_prefix_cache()
        start = time.perf_counter()
        engine.llm.generate(
            [TokensPrompt(prompt_token_ids=i) for i in ids], SamplingParams(max_tokens=1), use_tqdm=False
        )
        plain.append(time.perf_counter() - start)
    total = sum(len(i) for i in ids)
    # what an ideal prefix cache serves: each request's longest prefix shared with an earlier one
    cacheable = sum(max((shared_prefix(ids[n], ids[m]) for m in range(n)), default=0) for n in range(len(ids)))
    print(
        f"likelihood pass: {min(seconds):.2f} s for {len(labels)} pairs ({total} prompt tokens, "
        f"{total / min(seconds):.0f} tokens/s) (loaded); the same ids as 1-token generations with the prefix "
        f"cache: {min(plain):.2f} s; tokens a prefix cache could serve: {cacheable / total:.1%}"
    )


if __name__ == "__main__":
    main()
