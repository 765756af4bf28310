"""The judge with prefix-aware ordering vs the order rows arrive in, on the same pool: seconds, prefix-cache
hits, and whether the scores are the same. Prints one line per figure.

    python benchmarks/judge_prefix_order.py [--config conf/local.yaml] [--pairs 0] [--repeat 2] [--prompt PATH]

Reads the pool (ok candidates and their segments) under ``storage.root`` and judges it with M0 (``make demo``
builds both), through ``udfs.llm_rows.judge_batch`` and the vLLM engine as the curate stage does: the pool is
cut into the stage's commit chunks (``engine.commit_rows``) and each chunk into ``engine.batch_size`` batches.
"without": each chunk in score-id order, a hash, as rows reach a task today; "with": each chunk sorted by
``udfs.curation.prefix_order`` of the prompt, as the curate stage now sorts each task's rows. The prefix
cache is emptied before every pass; passes alternate, and the best of ``--repeat`` is reported. Rerun on a
quiet machine for a figure to quote.
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
from udfs.curation import prefix_order  # noqa: E402
from udfs.engine import get_engine  # noqa: E402
from udfs.ids import keyed_id, stable_id  # noqa: E402
from udfs.llm_rows import judge_batch  # noqa: E402
from udfs.prompts import PromptTemplate  # noqa: E402


def pool(root: str, limit: int) -> pd.DataFrame:
    candidates = DeltaTable(f"{root}/candidates").to_pandas(
        columns=["generation_id", "segment_id", "instruction", "status"], filters=[("status", "=", "ok")]
    )
    segments = DeltaTable(f"{root}/segments").to_pandas(columns=["segment_id", "text"])
    rows = candidates.merge(segments, on="segment_id").sort_values("generation_id")
    rows = rows.assign(score_id=[keyed_id(g, "judge_prefix_order") for g in rows["generation_id"]])
    rows = rows[["score_id", "generation_id", "segment_id", "instruction", "text"]].reset_index(drop=True)
    return rows.head(limit) if limit else rows


def judge(engine, rows: pd.DataFrame, order: list[str], cfg, judge_id: str, template) -> tuple[float, pd.DataFrame]:
    chunks = max(1, -(-len(rows) // cfg.engine.commit_rows))
    bucket = [int(stable_id(s)[:8], 16) % chunks for s in rows["score_id"]]
    engine.llm.reset_prefix_cache()
    out = []
    start = time.perf_counter()
    for chunk in range(chunks):
        mine = rows[[b == chunk for b in bucket]].sort_values(order or ["score_id"]).reset_index(drop=True)
        for i in range(0, len(mine), cfg.engine.batch_size):
            batch = mine.iloc[i : i + cfg.engine.batch_size].reset_index(drop=True)
            out.append(judge_batch(engine, batch, judge_id, template, cfg.curate.sampling, cfg.engine, 1))
    return time.perf_counter() - start, pd.concat(out).sort_values("score_id").reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "conf/local.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--pairs", type=int, default=0, help="judge only the first N pairs (0: the whole pool)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--prompt", help="judge prompt file (default: curate.prompt)")
    args = parser.parse_args()
    os.chdir(ROOT)
    cfg = load_pipeline_config(args.config, args.overrides)
    template = PromptTemplate.load(args.prompt or cfg.curate.prompt)
    rows = pool(os.path.abspath(cfg.storage.root), args.pairs)
    judge_path = cfg.iteration_model(0)
    engine = get_engine(judge_path, cfg.engine)
    order = prefix_order(template)
    judge(engine, rows.head(2), [], cfg, "warm-up", template)
    best: dict[str, tuple[float, pd.DataFrame]] = {}
    for _ in range(args.repeat):
        for name, by in (("without", []), ("with", order)):
            seconds, scored = judge(engine, rows, by, cfg, Path(judge_path).name, template)
            print(f"pass {name} prefix ordering: {seconds:.1f} s", flush=True)
            if name not in best or seconds < best[name][0]:
                best[name] = (seconds, scored)
    for name, (seconds, scored) in best.items():
        cached, prompt = scored["cached_tokens"].sum(), scored["prompt_tokens"].sum()
        print(
            f"{name:<7} prefix ordering: {seconds:.1f} s for {len(rows)} pairs ({template.version}, sort by "
            f"{order if name == 'with' else 'score id'}), prefix-cache hits {cached / prompt:.1%} of {prompt} prompt "
            "tokens"
        )
    (slow, a), (fast, b) = best["without"], best["with"]
    # vLLM's results depend a little on what shares a batch (bf16 on CPU), so greedy texts can differ
    same = {c: int((a[c].fillna(-1) == b[c].fillna(-1)).sum()) for c in ("score", "raw_text")}
    same["expected_score within 0.05"] = int(((a["expected_score"] - b["expected_score"]).abs() < 0.05).sum())
    print(f"speed-up {slow / fast:.2f}x; rows alike in both orders: {same} of {len(rows)}")


if __name__ == "__main__":
    main()
