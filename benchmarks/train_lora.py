"""LoRA vs full fine-tuning of a small real model (SmolLM2-135M-Instruct) on CPU: tokens/s, time, held-out loss.

    .venv/bin/python benchmarks/train_lora.py [--base DIR] [--threads 1] [--full-steps 4] \
        [--set optim.lr=5e-4 ...]

The seed set is split as in benchmarks/train_evidence.py (20 % held out, seed 0). Each direction is trained
with the CPU LoRA recipe (conf/train/lora_cpu_{forward,backward}.yaml, plus ``--set`` overrides) on the
train split; the forward direction also with full fine-tuning at the paper's lr, the same batches and
sequence length, for ``--full-steps`` steps. Printed: held-out answer loss per token before -> after,
training tokens/s and seconds. Measured here (1 thread, shared 2-core machine):

    forward  lora   6 steps lr 1e-03: held-out loss/token 2.729 -> 2.568 (-0.160); 140 tokens/s, train 75 s
    forward  full   3 steps lr 1e-05: held-out loss/token 2.729 -> 2.691 (-0.038); 144 tokens/s, train 36 s
    backward lora   6 steps lr 1e-03: held-out loss/token 2.961 -> 2.192 (-0.769); 158 tokens/s, train 49 s
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.train_evidence import answer_loss  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.data import Example, read_seed  # noqa: E402
from training.pretrained import ensure_smollm2  # noqa: E402
from training.train import train  # noqa: E402
from udfs.config import load_config  # noqa: E402

SEED = ROOT / "data/sample/seed.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="a Hugging Face model directory (default: the built-in SmolLM2)")
    parser.add_argument("--threads", type=int, default=1)  # 2 OpenMP threads on a shared machine: 10x slower
    parser.add_argument("--full-steps", type=int, default=4, help="0: no full fine-tuning run")
    parser.add_argument("--directions", default="forward,backward")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--work-dir", default=str(ROOT / "work/bench/lora"))
    args = parser.parse_args()
    args.base = args.base or str(ensure_smollm2(ROOT / "work/models"))  # converted once, as by the demo
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    work = Path(args.work_dir)

    pairs = read_seed(SEED, system_prompt=None)
    random.Random(0).shuffle(pairs)
    cut = round(len(pairs) * 0.2)
    held_out, train_split = pairs[:cut], pairs[cut:]
    train_file = work / "train.jsonl"
    train_file.parent.mkdir(parents=True, exist_ok=True)
    train_file.write_text(
        "".join(json.dumps({"instruction": e.instruction, "output": e.output}) + "\n" for e in train_split)
    )
    print(f"{args.base}: {len(train_split)} train, {len(held_out)} held-out pairs; overrides {args.overrides}")
    for direction in args.directions.split(","):
        runs = {"lora": args.overrides}
        if direction == "forward" and args.full_steps:
            runs["full"] = [
                "lora.enabled=false",
                "optim.lr=1.0e-5",
                "optim.final_lr=9.0e-6",
                f"optim.max_steps={args.full_steps}",
            ]
        before = None
        for name, overrides in runs.items():
            cfg = load_config(
                TrainConfig,
                ROOT / f"conf/train/lora_cpu_{direction}.yaml",
                [
                    f"base_model={args.base}",
                    f"output_dir={work / f'{direction}-{name}'}",
                    f"seed.path={train_file}",
                    "tracking.enabled=false",
                    "optim.checkpoint_every=0",
                    *overrides,
                ],
            )
            examples = [Example(cfg.seed.system_prompt, e.instruction, e.output, "seed") for e in held_out]
            if before is None:
                before = answer_loss(args.base, cfg, examples)
            began = time.monotonic()
            result = train(cfg)
            seconds = time.monotonic() - began
            meta = json.loads((Path(result.output_dir) / "training_meta.json").read_text())
            after = answer_loss(result.output_dir, cfg, examples)
            print(
                f"{direction:8s} {name:4s} {result.steps:3d} steps lr {cfg.optim.lr:.0e}: held-out loss/token "
                f"{before:.3f} -> {after:.3f} ({after - before:+.3f}); {meta['tokens_per_second']:.0f} tokens/s, "
                f"train {meta['seconds']:.0f} s (with load and save {seconds:.0f} s), "
                f"{meta['trainable_parameters']:,} trainable parameters",
                flush=True,
            )


if __name__ == "__main__":
    main()
