"""Training throughput of our recipe vs a plain Hugging Face ``Trainer``: same tiny model, same data, same steps.

    .venv/bin/python benchmarks/train_throughput.py [--steps 30] [--repeats 3] [--threads 1] [--work-dir work/bench]

Both fine-tune the tiny local base model (``training.bootstrap`` defaults, built from the seed texts and
cached in --work-dir) on data/sample/seed.jsonl encoded by ``training.data`` (forward chat, prompt masked,
max_seq_len 1024), batch 8 as 2 micro-batches of 4, AdamW with weight decay 0.1, dropout 0.1, gradient
clipping 1.0, fp32 on CPU. The Trainer is the plain one: random batches padded to their longest example
(``DataCollatorForSeq2Seq``); its linear schedule decays to 0 rather than to final_lr, which costs nothing.

Throughput is tokens trained per second of the training loop, padding excluded (the tokens the model learns
from); padding waste is the fraction of pad tokens in the micro-batches trained. Our run has checkpoints
and MLflow off, as the Trainer has saving and reporting off. Runs alternate, ``--repeats`` times each; the
median is reported. ``--threads 1`` by default: on a shared 2-core machine two OpenMP threads mostly wait on
each other.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.bootstrap import BaseModelConfig, build_base_model  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.data import encode_examples, load_examples, read_seed  # noqa: E402
from training.train import train  # noqa: E402
from udfs.config import load_config  # noqa: E402

SEED = ROOT / "data/sample/seed.jsonl"


def recipe_config(base: str, output_dir: Path, steps: int) -> TrainConfig:
    return load_config(
        TrainConfig,
        ROOT / "conf/train/local_forward.yaml",
        [
            f"base_model={base}",
            f"output_dir={output_dir}",
            f"seed.path={SEED}",
            f"optim.max_steps={steps}",
            "optim.checkpoint_every=0",
            "tracking.enabled=false",
        ],
    )


def run_ours(base: str, steps: int, tmp: Path) -> dict[str, float]:
    cfg = recipe_config(base, tmp / "ours", steps)
    began = time.perf_counter()
    train(cfg)
    wall = time.perf_counter() - began
    meta = json.loads((tmp / "ours" / "training_meta.json").read_text())
    loop_seconds = meta["tokens"] / meta["tokens_per_second"]
    return {
        "tokens_per_second": meta["tokens_per_second"],
        "padding_waste": meta["padding_waste"],
        "tokens": meta["tokens"],
        "loop_seconds": loop_seconds,
        "wall_seconds": wall,
    }


def run_trainer(base: str, steps: int, tmp: Path) -> dict[str, float]:
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    began = time.perf_counter()
    cfg = recipe_config(base, tmp / "trainer", steps)
    tokenizer = AutoTokenizer.from_pretrained(base)
    encoded, _ = encode_examples(tokenizer, load_examples(cfg)[0], cfg)
    dataset = [{"input_ids": e.input_ids, "labels": e.labels} for e in encoded]
    pad = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    counts = {"tokens": 0, "slots": 0}

    def collate(rows):  # the Trainer's own collator, counting what it hands to the model
        batch = pad(rows)
        counts["tokens"] += int(batch["attention_mask"].sum())
        counts["slots"] += batch["attention_mask"].numel()
        return batch

    class LoopTimer(TrainerCallback):
        def on_train_begin(self, *args, **kwargs):
            counts["began"] = time.perf_counter()

        def on_train_end(self, *args, **kwargs):
            counts["ended"] = time.perf_counter()

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model.config.attention_dropout = cfg.optim.dropout
    args = TrainingArguments(
        output_dir=str(tmp / "trainer"),
        max_steps=steps,
        per_device_train_batch_size=cfg.optim.micro_batch_size,
        gradient_accumulation_steps=cfg.optim.batch_size // cfg.optim.micro_batch_size,
        learning_rate=cfg.optim.lr,
        weight_decay=cfg.optim.weight_decay,
        max_grad_norm=cfg.optim.grad_clip,
        lr_scheduler_type="linear",
        seed=cfg.optim.seed,
        use_cpu=True,
        save_strategy="no",
        report_to=[],
        logging_steps=steps,
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collate, callbacks=[LoopTimer()])
    trainer.train()
    loop_seconds = counts["ended"] - counts["began"]
    return {
        "tokens_per_second": counts["tokens"] / loop_seconds,
        "padding_waste": 1 - counts["tokens"] / counts["slots"],
        "tokens": counts["tokens"],
        "loop_seconds": loop_seconds,
        "wall_seconds": time.perf_counter() - began,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work-dir", default=str(ROOT / "work/bench"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    texts = [f"{e.instruction}\n{e.output}" for e in read_seed(SEED, system_prompt=None)]
    base = build_base_model(texts, str(Path(args.work_dir) / "base-seed"), BaseModelConfig())

    runs: dict[str, list[dict[str, float]]] = {"ours": [], "trainer": []}
    for repeat in range(args.repeats):
        for name, run in (("ours", run_ours), ("trainer", run_trainer)):
            with tempfile.TemporaryDirectory() as tmp:
                runs[name].append(run(base, args.steps, Path(tmp)))
            print(
                f"repeat {repeat + 1} {name:8s} " + " ".join(f"{k}={v:.4g}" for k, v in runs[name][-1].items()),
                flush=True,
            )

    median = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
    print(
        f"\n{args.steps} steps of batch 8 (micro-batch 4) on {SEED.relative_to(ROOT)}, max_seq_len 1024, CPU, "
        f"{args.threads} thread(s); medians of {args.repeats}"
    )
    print(f"{'':8s} {'tokens/s':>9s} {'padding':>8s} {'tokens':>7s} {'loop s':>7s} {'wall s':>7s}")
    for name, m in median.items():
        print(
            f"{name:8s} {m['tokens_per_second']:9.0f} {m['padding_waste']:8.1%} {m['tokens']:7.0f} "
            f"{m['loop_seconds']:7.1f} {m['wall_seconds']:7.1f}"
        )
    speedup = median["ours"]["tokens_per_second"] / median["trainer"]["tokens_per_second"]
    print(
        f"speed-up (tokens/s, ours / Trainer): {speedup:.2f}x (target >= 1.0x); "
        f"our padding waste {median['ours']['padding_waste']:.1%} (target <= 5 %)"
    )


if __name__ == "__main__":
    main()
