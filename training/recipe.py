"""Which training recipe (conf/train/*.yaml) fits a base model: decided from its directory, nothing loaded.

- the tiny model built from scratch here (``training.bootstrap``, marked by bootstrap.json): the toy recipe,
  conf/train/local_*.yaml, whose high learning rate only suits a model that knows next to nothing;
- a real pretrained model on GPUs: the paper's recipe, conf/train/forward.yaml and backward.yaml;
- a small real model (up to ``CPU_MAX_PARAMETERS``) on CPU: conf/train/lora_cpu_*.yaml, LoRA with short
  sequences and few steps, which lowers held-out loss within minutes where full fine-tuning at 50-75 tokens/s
  would take hours; a bigger one on CPU is refused rather than left running for days.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from training.bootstrap import MARKER
from training.memory import ModelShape

CONF = Path("conf/train")
CPU_MAX_PARAMETERS = 1_000_000_000


@dataclass(frozen=True)
class Recipe:
    forward: str  # config file of the forward models (M0, M1, M2)
    backward: str  # config file of the backward model M_yx
    reason: str


def recipe_for(base_model: str | Path | None, device: Literal["cpu", "cuda"]) -> Recipe:
    """The recipe files for ``base_model`` (a Hugging Face directory; None: the built-in tiny model) on
    ``device``; paths relative to the repository root."""
    if base_model is None or (Path(base_model) / MARKER).is_file():
        return Recipe(
            str(CONF / "local_forward.yaml"),
            str(CONF / "local_backward.yaml"),
            "tiny model trained from scratch: the toy recipe",
        )
    parameters = ModelShape.from_dir(base_model).parameters
    if device == "cuda":
        return Recipe(
            str(CONF / "forward.yaml"),
            str(CONF / "backward.yaml"),
            f"pretrained model, {parameters / 1e9:.2f}B parameters, on GPU: the paper's recipe",
        )
    if parameters > CPU_MAX_PARAMETERS:
        raise ValueError(
            f"{base_model} has {parameters / 1e9:.2f}B parameters: too big to fine-tune on CPU "
            f"(at most {CPU_MAX_PARAMETERS / 1e9:.0f}B); train it on GPUs with {CONF / 'forward.yaml'}"
        )
    return Recipe(
        str(CONF / "lora_cpu_forward.yaml"),
        str(CONF / "lora_cpu_backward.yaml"),
        f"pretrained model, {parameters / 1e6:.0f}M parameters, on CPU: LoRA, short sequences",
    )
