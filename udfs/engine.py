"""The LLM engine interface the stages program against, the engines by name, and the per-worker engine cache.

``engine.name`` picks the implementation from ``ENGINES``: ``vllm`` (``udfs.vllm_engine``, the only module
that imports vLLM), ``openai`` (``udfs.openai_engine``: any OpenAI-compatible endpoint, ``engine.endpoint``) or
``fake`` (``udfs.fake_engine``, deterministic text for fast tests of the row logic in ``udfs.llm_rows``).
Implementations are imported by name when first used, so this module stays importable without vLLM and
imports neither implementation. A Spark Python worker keeps one engine in ``_CACHE`` and reuses it across
batches and tasks (Spark reuses Python workers), so the model loads once per worker rather than once per
batch. A different model replaces the cached one.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib
import json
import logging
import threading
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Protocol, Sequence

from udfs.hardware import VALUE_BYTES
from udfs.openai_client import EndpointConfig
from udfs.prompts import chat_prompt, encode_prompt, encode_text
from udfs.weights import check_weights

log = logging.getLogger(__name__)

# engine.name -> "module:class" of an ``LLMEngine`` whose constructor takes ``engine_args``' dict.
ENGINES = {
    "vllm": "udfs.vllm_engine:VLLMEngine",
    "openai": "udfs.openai_engine:OpenAIEngine",
    "fake": "udfs.fake_engine:FakeEngine",
}


@dataclass(frozen=True)
class EngineConfig:
    """LLM engine settings (the same keys on CPU here and on GPU clusters)."""

    name: Literal["vllm", "openai", "fake"] = "vllm"  # ENGINES: fake only for tests of the row logic
    # auto: bfloat16 where the device computes it natively, else float32 on CPU, float16 on older GPUs
    # (udfs.hardware.choose_dtype, decided on the machine that serves).
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    max_model_len: int = 4096  # context length served; a longer prompt is cut or dropped (overflow)
    tensor_parallel_size: int = 1  # GPUs one engine spans
    gpu_memory_utilization: float = 0.9  # share of each GPU's memory vLLM may take
    # The KV cache on CPU (null: cpu_memory_plan's, the same tokens whatever the dtype; vLLM would otherwise
    # reserve most of RAM); on GPUs the cache is what gpu_memory_utilization leaves after the weights, and this
    # stays null.
    kv_cache_memory_bytes: int | None = None
    enforce_eager: bool = False  # true: no CUDA graphs (slower, starts faster)
    enable_prefix_caching: bool = True  # the judge's rubric is prefilled once per batch
    max_num_seqs: int = 256  # sequences vLLM batches at once
    # None: vLLM's default. False on CPU: vLLM-CPU cannot rewind a seeded request's random generator after
    # a partial prefill ("CPU Generator does not use offset"), and per-row seeds are what make retries exact.
    enable_chunked_prefill: bool | None = None
    trust_remote_code: bool = False  # remote code in a model directory runs only if this says so
    batch_size: int = 512  # rows handed to one generate() call
    partitions: int | None = None  # Spark partitions for LLM stages (= engine copies); None: Spark's default
    commit_rows: int = 20000  # rows per Delta commit in LLM stages: a killed job redoes at most one chunk
    # GPUs each LLM task asks for through a stage-level resource profile, so only the LLM stages hold GPUs
    # (null: no profile; the cluster's default task resources apply, as on CPU here).
    task_gpus: float | None = None
    overflow: Literal["drop", "truncate"] = "truncate"  # a prompt over max_model_len: cut the web text, or drop the row
    # Seconds one batch (one generate call, and a judge's logprobs) may take before the task fails as a stalled
    # engine (udfs.watchdog); null: scaled to the batch and the task's device (udfs.watchdog.batch_deadline).
    batch_deadline_seconds: float | None = None
    # Tests of the failure paths only (engine.name: fake): "hang" never returns from generate, "raise" dies in it.
    fake_fault: Literal["none", "hang", "raise"] = "none"
    # The OpenAI-compatible endpoint of engine.name: openai (udfs.openai_client); the settings above that size a
    # local engine (dtype, memory, TP) are then the server's business and unused.
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)

    def __post_init__(self):
        if self.max_model_len < 16:
            raise ValueError(f"max_model_len must be >= 16, got {self.max_model_len}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        for name in ("tensor_parallel_size", "max_num_seqs", "batch_size", "commit_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.partitions is not None and self.partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {self.partitions}")
        if self.batch_deadline_seconds is not None and not self.batch_deadline_seconds > 0:
            raise ValueError(f"batch_deadline_seconds must be > 0 or null, got {self.batch_deadline_seconds}")
        if self.name == "openai" and self.endpoint.base_url is None:
            raise ValueError("endpoint.base_url is required with name: openai")
        if self.fake_fault != "none" and self.name != "fake":
            raise ValueError(f"fake_fault={self.fake_fault!r} is for the fake engine (name: fake), not {self.name!r}")


@dataclass(frozen=True)
class SamplingConfig:
    """Sampling for one stage (paper, self-augmentation: nucleus sampling, T=0.7, top_p=0.9)."""

    temperature: float = 0.7  # 0: greedy
    top_p: float = 0.9  # nucleus sampling's probability mass
    max_tokens: int = 256  # generated tokens at most; a longer output is cut (finish_reason length)
    # vLLM's repetition penalty (1.0: none). Small models loop ("The answer is: ... The answer is: ...") until
    # max_tokens; above 1.0 tokens already in the prompt or the output are made less likely (copying too).
    repetition_penalty: float = 1.0

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")

    def as_dict(self) -> dict:
        """The settings as ids and rows record them. A penalty of 1.0 (none) is left out, so rows generated
        before the key existed keep their ids."""
        settings = dataclasses.asdict(self)
        if self.repetition_penalty == 1.0:
            del settings["repetition_penalty"]
        return settings


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # "stop" | "length" | "abort"
    prompt_tokens: int
    output_tokens: int
    cached_tokens: int = 0  # prompt tokens served from vLLM's prefix cache
    # Why there is no completion (a remote request that failed for good, e.g. "endpoint_http:503"); the row is
    # then an error with this reason. None: a completion.
    error: str | None = None


class LLMEngine(Protocol):
    model_path: str

    def render_chat(self, conversation: Sequence[dict[str, str]]) -> str:
        """The conversation as a prompt, ending with the assistant's turn opening: what the engine's other
        calls take (vLLM's: ``udfs.prompts.chat_prompt``, whose contents stay text when encoded)."""

    def count_tokens(self, prompts: Sequence[str]) -> list[int]: ...

    def truncate(self, text: str, n_tokens: int) -> str:
        """The first ``n_tokens`` tokens of ``text``, as text."""

    def generate(self, prompts: Sequence[str], sampling: SamplingConfig, seeds: Sequence[int]) -> list[Completion]:
        """One completion per prompt, in input order; ``seeds`` make each row reproducible."""

    def continuation_logprobs(
        self, prompts: Sequence[str], continuations: Sequence[str]
    ) -> list[dict[str, float] | None]:
        """log P(text | prompt) of each continuation text after each prompt, whatever the tokenizer makes
        of the boundary (``continuation_paths``); None for a prompt too long to score, a failure kind (str)
        for one the engine could not score (``no_logprobs_from_endpoint``, ``endpoint_http:503``)."""

    def answer_logprobs(self, prompts: Sequence[str], answers: Sequence[str]) -> list[list[float] | None]:
        """log P of each token of each answer after its prompt, in one prefill per pair (no generation): the
        answer is encoded on its own after the prompt's ids, as training encodes it. [] for an answer with no
        tokens; None for a pair longer than the context; a failure kind (str) for a pair the engine could not
        score."""


def continuation_paths(
    encode: Callable[[str], list[int]], prompt: str, continuations: Sequence[str]
) -> tuple[list[int], dict[str, tuple[int, ...]]]:
    """The shared token prefix of ``prompt`` and the tokens that spell each continuation after it.

    A continuation is tokenised jointly with the prompt, as the model would see the text: a tokenizer may
    merge the prompt's last characters with the continuation's first ("Score:" + "5" can become ":5"), so
    the continuation's tokens are those after the longest common prefix with the prompt alone. The prefix
    is the shortest of these over all continuations, so every continuation is scored from the same
    position and their probabilities compare (each then includes the re-spelt end of the prompt).
    A continuation that leaves the prompt's tokens unchanged (empty, or dropped by the tokenizer) is left out.
    """
    prompt_ids = encode(prompt)
    joint = {text: ids for text in continuations if (ids := encode(prompt + text)) != prompt_ids}
    shared = len(prompt_ids)
    for ids in joint.values():
        k = 0
        while k < min(len(ids), len(prompt_ids)) and ids[k] == prompt_ids[k]:
            k += 1
        shared = min(shared, k)
    return prompt_ids[:shared], {text: tuple(ids[shared:]) for text, ids in joint.items()}


NextLogprobs = Callable[[list[list[int]], list[list[int]]], list["dict[int, float] | str"]]


def continuation_logprobs_by_depth(
    encode: Callable[[str], list[int]],
    prompts: Sequence[str],
    continuations: Sequence[str],
    max_model_len: int,
    next_logprobs: NextLogprobs,
) -> list[dict[str, float] | str | None]:
    """``LLMEngine.continuation_logprobs`` for an engine that can tell the log-probabilities of chosen next tokens:
    ``next_logprobs(token prefixes, wanted next token ids)`` answers, per prefix, log P of each wanted token it
    found (by id; a missing one counts as -inf) or a failure kind.

    Each continuation's tokens are asked one position at a time, as next tokens, not as prompt logprobs: vLLM
    skips the prefix cache for any request that asks for prompt logprobs (SamplingParams.skip_reading_prefix_cache),
    which would prefill the whole judge prompt once per candidate. Asked depth by depth, shallow first, each
    request is a cached prefix plus a few tokens."""
    plans = []
    for prompt in prompts:
        root, paths = continuation_paths(encode, prompt, continuations)
        longest = len(root) + max((len(p) for p in paths.values()), default=0)
        plans.append((root, paths) if root and paths and longest <= max_model_len else None)
    asks: dict[tuple[int, tuple[int, ...]], set[int]] = {}  # (prompt, tokens after root) -> next tokens
    for n, plan in enumerate(plans):
        for path in plan[1].values() if plan else ():
            for depth, token in enumerate(path):
                asks.setdefault((n, path[:depth]), set()).add(token)
    found: dict[tuple[int, tuple[int, ...]], dict[int, float] | str] = {}
    for depth in sorted({len(node) for _, node in asks}):
        keys = [key for key in asks if len(key[1]) == depth]
        prefixes = [plans[n][0] + list(node) for n, node in keys]  # type: ignore[index]
        found.update(zip(keys, next_logprobs(prefixes, [sorted(asks[k]) for k in keys])))
    result: list[dict[str, float] | str | None] = []
    for n, plan in enumerate(plans):
        if plan is None:
            result.append(None)
            continue
        answers = [found[(n, path[:d])] for path in plan[1].values() for d in range(len(path))]
        failures = sorted(answer for answer in answers if isinstance(answer, str))
        if failures:  # a position the engine could not score: the row says why
            result.append(failures[0])
            continue
        result.append(
            {
                text: sum(found[(n, path[:d])].get(t, float("-inf")) for d, t in enumerate(path))  # type: ignore[union-attr]
                for text, path in plan[1].items()
            }
        )
    return result


class TokenizerPrompts:
    """Prompt rendering, fitting and encoding with the model's own (Hugging Face) tokenizer ``self.tokenizer``:
    what every engine holding the tokenizer shares, so that all of them send the same token ids."""

    tokenizer: Any

    def render_chat(self, conversation: Sequence[dict[str, str]]) -> str:
        return chat_prompt(self.tokenizer, conversation, add_generation_prompt=True)

    def encode(self, prompt: str) -> list[int]:
        return encode_prompt(self.tokenizer, prompt)

    def count_tokens(self, prompts: Sequence[str]) -> list[int]:
        return [len(self.encode(p)) for p in prompts]  # exactly the ids generate() sends

    def truncate(self, text: str, n_tokens: int) -> str:
        return self.tokenizer.decode(encode_text(self.tokenizer, text)[:n_tokens])

    def answer_ids(self, prompt: str, answer: str) -> tuple[int, list[int]]:
        """The prompt's ids followed by the answer encoded on its own (as training encodes it), and where the
        answer starts: ``answer_logprobs``' tokens."""
        prompt_ids = self.encode(prompt)
        return len(prompt_ids), prompt_ids + encode_text(self.tokenizer, answer)


_CACHE: dict[str, Any] = {}
_LOCK = threading.Lock()
_LOADS = [0]  # engines created by this worker process (reported, and asserted by the reuse test)


def engine_loads() -> int:
    return _LOADS[0]


def engine_args(model_path: str, cfg: EngineConfig) -> dict:
    """The engine's constructor arguments: what makes two engines the same. Batching, chunking and
    scheduling settings (batch_size, partitions, commit_rows, task_gpus, overflow, batch_deadline_seconds) are
    not among them."""
    args = {
        "model": model_path,
        "dtype": cfg.dtype,
        "max_model_len": cfg.max_model_len,
        "tensor_parallel_size": cfg.tensor_parallel_size,
        "gpu_memory_utilization": cfg.gpu_memory_utilization,
        "kv_cache_memory_bytes": cfg.kv_cache_memory_bytes,
        "enforce_eager": cfg.enforce_eager,
        "enable_prefix_caching": cfg.enable_prefix_caching,
        "max_num_seqs": cfg.max_num_seqs,
        "trust_remote_code": cfg.trust_remote_code,
    }
    if cfg.enable_chunked_prefill is not None:  # None: the engine's own default
        args["enable_chunked_prefill"] = cfg.enable_chunked_prefill
    if cfg.fake_fault != "none":  # only ever set with the fake engine (validated), which takes it
        args["fault"] = cfg.fake_fault
    if cfg.name == "openai":
        args["endpoint"] = cfg.endpoint
    return args


# The default KV cache holds as many tokens as 1 GiB does in bfloat16 (SmolLM2: ~45k, 64 judge or augment
# prompts at once): in float32 that takes 2 GiB, so a CPU that serves in float32 batches as many requests.
CPU_DEFAULT_KV_BYTES = 1 << 30
CPU_DEFAULT_KV_DTYPE = "bfloat16"


def cpu_memory_plan(model_path: str, cfg_kv_bytes: int | None, dtype: str, available_bytes: int) -> int:
    """The KV-cache bytes of an engine serving in ``dtype`` on CPU, after checking that weights plus cache fit the
    memory this machine has free: a model that cannot fit fails before any work, saying what to change. Where the
    default cache (``cfg_kv_bytes`` None) would not fit, it shrinks to half of what the weights leave free."""
    stored = sum(p.stat().st_size for p in Path(model_path).glob("*.safetensors"))
    weights = stored * VALUE_BYTES[dtype] // stored_value_bytes(model_path)  # files are cast to dtype on load
    kv = cfg_kv_bytes
    if kv is None:
        kv = CPU_DEFAULT_KV_BYTES * VALUE_BYTES[dtype] // VALUE_BYTES[CPU_DEFAULT_KV_DTYPE]
        if weights < available_bytes < weights + kv:  # half of what is left, the rest for activations
            kv = (available_bytes - weights) // 2
    if weights + kv > available_bytes:
        gib = 1 << 30
        raise ValueError(
            f"engine: {model_path} needs about {(weights + kv) / gib:.1f} GiB on CPU in {dtype} (weights "
            f"{weights / gib:.1f} GiB + KV cache {kv / gib:.1f} GiB) but {available_bytes / gib:.1f} GiB is free: "
            "lower engine.kv_cache_memory_bytes, or use a smaller model"
        )
    return kv


def stored_value_bytes(model_path: str) -> int:
    """Bytes per weight in the model directory's files, from its config.json (2 when it does not say)."""
    config = Path(model_path) / "config.json"
    meta = json.loads(config.read_text()) if config.is_file() else {}
    return VALUE_BYTES.get(str(meta.get("dtype") or meta.get("torch_dtype")), 2)


def get_engine(model_path: str, cfg: EngineConfig, model_id: str | None = None) -> LLMEngine:
    """This worker's engine for ``model_path``: created on first use, then reused. ``model_id`` (the model's
    fingerprint) is part of the key: M1 retrained in place on a grown pool must not be served by the engine
    a reused worker still holds for the old M1."""
    args = engine_args(model_path, cfg)
    key = (cfg.name, args, model_id)
    with _LOCK:
        if _CACHE.get("key") != key:
            drop_engine()
            check_weights(model_path)  # a truncated copy fails here, naming its file, not deep in the engine
            log.info("loading %s engine for %s", cfg.name, model_path)
            _CACHE.update(key=key, engine=engine_class(cfg.name)(args))
            _LOADS[0] += 1
        return _CACHE["engine"]  # type: ignore[return-value]


def engine_class(name: str) -> type:
    """The ``LLMEngine`` implementation registered as ``name`` in ``ENGINES``, imported on first use."""
    module, cls = ENGINES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def drop_engine(close: bool = True) -> None:
    """Forget the cached engine (a dead engine, or before loading another model) and free its memory
    (``close=False``: an engine stuck in a call, which closing would wait on)."""
    engine = _CACHE.pop("engine", None)
    _CACHE.pop("key", None)
    if engine is not None and close:
        engine.close()  # type: ignore[attr-defined]
        del engine
        gc.collect()
