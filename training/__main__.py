"""Fine-tune one model from a config file.

    python -m training --config conf/train/local_backward.yaml [--set dotted.key=value ...]
    torchrun --nproc_per_node 2 -m training --config conf/train/local_forward.yaml   # see training/distributed.py

e.g. ``--set seed.path=/data/seed.jsonl --set optim.max_steps=10``. Prints the resolved config, then the result
(rank 0 only when torchrun starts several processes). Killed and run again, it resumes from its last checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os

from training.config import TrainConfig
from training.train import train
from udfs.config import ConfigError, load_config, to_dict
from udfs.redact import redact


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="YAML file, e.g. conf/train/local_forward.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="dotted.key=value")
    args = parser.parse_args(argv)
    main_process = int(os.environ.get("RANK", "0")) == 0  # torchrun sets RANK; the other ranks only warn
    logging.basicConfig(
        level=logging.INFO if main_process else logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    try:
        cfg = load_config(TrainConfig, args.config, args.overrides)
    except ConfigError as exc:
        parser.error(str(exc))
    if main_process:
        print(json.dumps(redact(to_dict(cfg)), indent=2), flush=True)
    result = train(cfg)
    if main_process:
        summary = dataclasses.asdict(result)
        summary["curated_score_ids"] = len(
            result.curated_score_ids
        )  # a count: the pipeline writes the ids to `curated`
        print(json.dumps(redact(summary), indent=2, default=str))


if __name__ == "__main__":
    main()
