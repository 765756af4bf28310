"""A deterministic stand-in for vLLM (``engine.name: fake``): the LLM row logic tested in milliseconds.

Like datatrove's dummy inference server, it keeps the engine's contract and none of its cost: chats render
by a plain template, a token is a whitespace-separated word, and text is made from a hash of the model's
content, the seed and the prompt, so the same row always gets the same completion. The model's content
(``udfs.ids.model_contents``: config, recipe, weight sizes), not its path: a model in a pytest temp folder
(``/tmp/pytest-of-x/pytest-123/m07``) must answer the same from run to run, or a test's "some rows are
rejected" holds by chance. A model name that is no directory (unit tests name models that do not exist)
stands for itself. A judge prompt (one asking for "Score:") gets
reasoning ending in "Score: N" for most rows and a line without a score for the others, so both the parsed
and the failure paths run. Logprobs of the rating tokens come from the same hash.

``engine.fake_fault`` makes it fail the way real engines do, for tests of the failure paths: ``hang`` never
returns from ``generate`` or a logprobs call (a wedged GPU, a dead engine-core process the client still waits
on), ``raise`` dies in it (CUDA error, out of memory).
"""

from __future__ import annotations

import hashlib
import math
import threading
from pathlib import Path
from typing import Sequence

from udfs.engine import Completion, SamplingConfig
from udfs.ids import model_contents, stable_id

_WORDS = (
    "explain",
    "how",
    "the",
    "list",
    "works",
    "write",
    "a",
    "short",
    "guide",
    "to",
    "python",
    "code",
    "with",
    "examples",
)


def _hash(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode("utf-8")).digest()[:8], "big")


class FakeEngine:
    def __init__(self, args: dict):
        """``args`` from ``udfs.engine.engine_args``; the model path, the context length and the fault are used."""
        self.model_path = args["model"]
        path = Path(self.model_path)
        self.identity = stable_id(*model_contents(path)) if path.is_dir() else self.model_path
        self.max_model_len = args["max_model_len"]
        self.fault = args.get("fault", "none")

    def render_chat(self, conversation: Sequence[dict[str, str]]) -> str:
        return "".join(f"<{turn['role']}> {turn['content']}\n" for turn in conversation) + "<assistant>"

    def count_tokens(self, prompts: Sequence[str]) -> list[int]:
        return [len(p.split()) for p in prompts]

    def truncate(self, text: str, n_tokens: int) -> str:
        return " ".join(text.split()[:n_tokens])

    def generate(self, prompts: Sequence[str], sampling: SamplingConfig, seeds: Sequence[int]) -> list[Completion]:
        self._fail(f"generating {len(prompts)} prompts")
        return [self._complete(p, sampling.max_tokens, s) for p, s in zip(prompts, seeds)]

    def _complete(self, prompt: str, max_tokens: int, seed: int) -> Completion:
        h = _hash(self.identity, seed, prompt)
        words = [_WORDS[(h >> (4 * i)) % len(_WORDS)] for i in range(3 + h % 6)]
        if "Score:" in prompt:  # a judge: reasoning, then a score line for three rows in four
            last = f"Score: {1 + (h >> 40) % 5}" if h % 4 else "I cannot rate this."
            words = [*words, "\n" + last]
        text = " ".join(words)
        finish = "stop"
        if len(text.split()) > max_tokens:
            text, finish = " ".join(text.split()[:max_tokens]), "length"
        return Completion(
            text=text, finish_reason=finish, prompt_tokens=len(prompt.split()), output_tokens=len(text.split())
        )

    def continuation_logprobs(
        self, prompts: Sequence[str], continuations: Sequence[str]
    ) -> list[dict[str, float] | None]:
        """A deterministic distribution over ``continuations`` per prompt; None for a prompt past the context
        (whitespace words, as ``count_tokens`` counts)."""
        self._fail(f"scoring {len(prompts)} prompts")
        result: list[dict[str, float] | None] = []
        for prompt in prompts:
            if len(prompt.split()) + 1 > self.max_model_len:
                result.append(None)
                continue
            logits = {t: (_hash(self.identity, prompt, t) % 1000) / 250 for t in continuations}
            norm = math.log(sum(math.exp(v) for v in logits.values()))
            result.append({t: v - norm for t, v in logits.items()})
        return result

    def answer_logprobs(self, prompts: Sequence[str], answers: Sequence[str]) -> list[list[float] | None]:
        """A deterministic log-probability per answer word: a word that the prompt also has costs half, so an
        instruction sharing the answer's words lowers its conditional loss as a real model's would."""
        self._fail(f"scoring {len(prompts)} answers")
        result: list[list[float] | None] = []
        for prompt, answer in zip(prompts, answers):
            words = answer.split()
            if len(prompt.split()) + len(words) + 1 > self.max_model_len:
                result.append(None)
                continue
            seen = {w.lower() for w in prompt.split()}
            costs = [1 + (_hash(self.identity, w) % 1000) / 250 for w in words]
            result.append([-c / 2 if w.lower() in seen else -c for w, c in zip(words, costs)])
        return result

    def _fail(self, doing: str) -> None:
        if self.fault == "hang":
            threading.Event().wait()  # never set: blocks until the process exits
        if self.fault == "raise":
            raise RuntimeError(f"fake engine died {doing} (engine.fake_fault=raise)")

    def close(self) -> None:
        """Nothing to free."""
