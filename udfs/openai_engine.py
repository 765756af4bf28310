"""``engine.name: openai``: the ``udfs.engine.LLMEngine`` of any OpenAI-compatible endpoint (a shared
``vllm serve``, Databricks Model Serving, a provider), over ``udfs.openai_client``'s retrying client.

The model's tokenizer stays local (``engine.endpoint.tokenizer``, else the model directory): chats are rendered,
prompts fitted and truncated, and the judge's rating continuations spelt with the same tokenizer and the same
code as the in-process engine (``udfs.engine.TokenizerPrompts``), and prompts go out as those token ids, so
greedy rows match ``udfs.vllm_engine`` on the same model. Only the tokenizer files are needed (no weights).
Asking the endpoint to tokenise (vLLM's ``/tokenize``) would cost a round trip per row and still leave the chat
template unknown for providers, so a model directory without a tokenizer is a configuration error.

One request per row, each with the row's seed (the completions API: ``seed``); up to
``engine.endpoint.max_concurrency`` in flight. Scores need an endpoint that returns log-probabilities of chosen
tokens: the judge's expected score asks vLLM's ``logprob_token_ids`` (with ``return_tokens_as_token_ids``) as
the in-process engine does, the likelihood stage asks ``prompt_logprobs``; an endpoint that answers without them
gives the row ``no_logprobs_from_endpoint``. A request that fails for good is its row's error (reason from
``udfs.openai_client``), never a lost row.
"""

from __future__ import annotations

import os
from typing import Sequence

from udfs.engine import Completion, SamplingConfig, TokenizerPrompts, continuation_logprobs_by_depth
from udfs.openai_client import EndpointConfig, OpenAIClient, RequestFailed

NO_LOGPROBS = "no_logprobs_from_endpoint"
_ID_PREFIX = "token_id:"  # vLLM's spelling of a token under return_tokens_as_token_ids


class OpenAIEngine(TokenizerPrompts):
    def __init__(self, args: dict):
        """``args`` from ``udfs.engine.engine_args``: the model path, the context length and the endpoint."""
        endpoint: EndpointConfig = args["endpoint"]
        self.model_path = args["model"]
        self.max_model_len = args["max_model_len"]
        self.model = endpoint.model or self.model_path
        self.prompt_format = endpoint.prompt_format
        self.tokenizer = load_tokenizer(endpoint.tokenizer or self.model_path, args.get("trust_remote_code", False))
        self.client = OpenAIClient(endpoint)

    def generate(self, prompts: Sequence[str], sampling: SamplingConfig, seeds: Sequence[int]) -> list[Completion]:
        extra = {} if sampling.repetition_penalty == 1.0 else {"repetition_penalty": sampling.repetition_penalty}
        bodies = [
            {
                **self._prompt(prompt),
                "max_tokens": sampling.max_tokens,
                "temperature": sampling.temperature,
                "top_p": sampling.top_p,
                "seed": seed,
                **extra,
            }
            for prompt, seed in zip(prompts, seeds)
        ]
        return [_completion(answer) for answer in self.client.map("/completions", bodies)]

    def continuation_logprobs(
        self, prompts: Sequence[str], continuations: Sequence[str]
    ) -> list[dict[str, float] | str | None]:
        return continuation_logprobs_by_depth(self.encode, prompts, continuations, self.max_model_len, self._next)

    def _next(self, prefixes: list[list[int]], wanted: list[list[int]]) -> list[dict[int, float] | str]:
        bodies = [
            {
                "model": self.model,
                "prompt": ids,
                "max_tokens": 1,
                "temperature": 0.0,
                "logprobs": 1,
                "logprob_token_ids": tokens,
                "return_tokens_as_token_ids": True,
            }
            for ids, tokens in zip(prefixes, wanted)
        ]
        return [_next_token_logprobs(answer) for answer in self.client.map("/completions", bodies)]

    def answer_logprobs(self, prompts: Sequence[str], answers: Sequence[str]) -> list[list[float] | str | None]:
        spans = [self.answer_ids(prompt, answer) for prompt, answer in zip(prompts, answers)]
        asked = [i for i, (start, ids) in enumerate(spans) if start < len(ids) < self.max_model_len]  # + 1 generated
        bodies = [
            {"model": self.model, "prompt": spans[i][1], "max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0}
            for i in asked
        ]
        found = dict(zip(asked, self.client.map("/completions", bodies)))
        result: list[list[float] | str | None] = []
        for i, (start, ids) in enumerate(spans):
            if i in found:
                result.append(_answer_logprobs(found[i], start, ids))
            else:
                result.append([] if start == len(ids) else None)
        return result

    def _prompt(self, prompt: str) -> dict:
        return {"model": self.model, "prompt": self.encode(prompt) if self.prompt_format == "token_ids" else prompt}

    def close(self) -> None:
        self.client.close()


def load_tokenizer(path: str, trust_remote_code: bool):
    """The Hugging Face tokenizer in ``path``, or a configuration error naming the key that points at it."""
    from transformers import AutoTokenizer

    if not os.path.isdir(path):
        raise ValueError(
            f"engine.endpoint.tokenizer: {path} is not a directory; the openai engine renders chats and fits prompts "
            "with the model's tokenizer files (tokenizer.json, tokenizer_config.json): point engine.endpoint.tokenizer "
            "(or the model) at a directory holding them"
        )
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ValueError(f"engine.endpoint.tokenizer: no tokenizer in {path}: {exc}") from None


def _completion(answer: dict | RequestFailed) -> Completion:
    if isinstance(answer, RequestFailed):
        return _failed(answer.reason)
    try:
        choice, usage = answer["choices"][0], answer.get("usage") or {}
        return Completion(
            text=choice["text"],
            finish_reason=choice.get("finish_reason") or "abort",
            prompt_tokens=usage.get("prompt_tokens") or 0,
            output_tokens=usage.get("completion_tokens") or 0,
            cached_tokens=(usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0,
        )
    except (KeyError, IndexError, TypeError):
        return _failed("endpoint_bad_response")


def _failed(reason: str) -> Completion:
    return Completion(text="", finish_reason="abort", prompt_tokens=0, output_tokens=0, error=reason)


def _next_token_logprobs(answer: dict | RequestFailed) -> dict[int, float] | str:
    """log P of the asked next tokens by id, from vLLM's ``top_logprobs`` keyed ``token_id:N``."""
    if isinstance(answer, RequestFailed):
        return answer.reason
    try:
        top = answer["choices"][0]["logprobs"]["top_logprobs"][0]
        return {int(token.removeprefix(_ID_PREFIX)): float(lp) for token, lp in top.items()}
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        # no logprobs, or tokens as text (an endpoint that ignores return_tokens_as_token_ids): none to trust
        return NO_LOGPROBS


def _answer_logprobs(answer: dict | RequestFailed, start: int, ids: list[int]) -> list[float] | str:
    """log P of each answer token ``ids[start:]`` from vLLM's ``prompt_logprobs`` (one mapping per position)."""
    if isinstance(answer, RequestFailed):
        return answer.reason
    try:
        found = answer["choices"][0]["prompt_logprobs"]
        return [float(found[i][str(ids[i])]["logprob"]) for i in range(start, len(ids))]
    except (KeyError, IndexError, TypeError, ValueError):
        return NO_LOGPROBS
