"""Evidence that the recipe learns: held-out loss of the base model vs the forward and backward models.

    .venv/bin/python benchmarks/train_evidence.py [--held-out 0.2] [--steps 60] [--threads 1] [--work-dir work/bench]

The committed seed set (data/sample/seed.jsonl) is split at random (seed 0) into train and held-out pairs.
A tiny base model (``training.bootstrap`` defaults) is built from the train split's texts only, so no model
has seen a held-out pair. Then, with the local recipes (conf/train/local_*.yaml) on the train split:

- forward, M0: mean loss per token of each held-out output given its instruction, base vs M0;
- backward, M_yx: mean log-likelihood per token of the true held-out instruction given its output in the
  backtranslation prompt, base vs M_yx.

Both are scored exactly as trained: the chat template, loss on the answer tokens only (``training.data``).
The base model knows the texts' words but not the chat format, so part of the gain is the format.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.bootstrap import BaseModelConfig, build_base_model  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.evaluate import answer_loss  # noqa: E402
from training.data import Example, read_seed  # noqa: E402
from training.train import train  # noqa: E402
from udfs.config import load_config  # noqa: E402

SEED = ROOT / "data/sample/seed.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held-out", type=float, default=0.2)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work-dir", default=str(ROOT / "work/bench"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    work = Path(args.work_dir) / "evidence"

    pairs = read_seed(SEED, system_prompt=None)
    random.Random(0).shuffle(pairs)
    cut = round(len(pairs) * args.held_out)
    held_out, train_split = pairs[:cut], pairs[cut:]
    train_file = work / "train.jsonl"
    train_file.parent.mkdir(parents=True, exist_ok=True)
    train_file.write_text(
        "".join(json.dumps({"instruction": e.instruction, "output": e.output}) + "\n" for e in train_split)
    )
    texts = [f"{e.instruction}\n{e.output}" for e in train_split]
    base = build_base_model(texts, str(work / "base"), BaseModelConfig())

    print(f"seed pairs: {len(train_split)} train, {len(held_out)} held out; {args.steps} steps per model")
    for direction, name in (("forward", "M0"), ("backward", "M_yx")):
        cfg = load_config(
            TrainConfig,
            ROOT / f"conf/train/local_{direction}.yaml",
            [
                f"base_model={base}",
                f"output_dir={work / name}",
                f"seed.path={train_file}",
                f"optim.max_steps={args.steps}",
                "tracking.enabled=false",
            ],
        )
        result = train(cfg)
        # Held-out examples carry the seed tag, as the train split's do.
        examples = [Example(cfg.seed.system_prompt, e.instruction, e.output, "seed") for e in held_out]
        before, after = answer_loss(base, cfg, examples), answer_loss(result.output_dir, cfg, examples)
        what = "output | instruction" if direction == "forward" else "instruction | output"
        print(
            f"{direction:8s} {name:4s} held-out loss/token of {what}: base {before:.3f} -> {after:.3f} "
            f"({after - before:+.3f}); log-likelihood/token {-before:.3f} -> {-after:.3f}; "
            f"perplexity {torch.tensor(before).exp():.1f} -> {torch.tensor(after).exp():.1f}"
        )


if __name__ == "__main__":
    main()
