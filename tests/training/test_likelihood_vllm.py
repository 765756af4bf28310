"""The likelihood stage's log-probabilities: vLLM's prompt log-probabilities (``VLLMEngine.answer_logprobs``)
equal a transformers forward pass over the same token ids, on SmolLM2-135M-Instruct (converted once per test
run), and the batch gives a matched pair a lower IFD than a mismatched one."""

from __future__ import annotations

import os

import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from udfs.engine import EngineConfig, engine_args
from udfs.likelihood import likelihood_batch, likelihood_prompts
from udfs.prompts import encode_prompt

pytestmark = pytest.mark.slow

PAIRS = [
    (
        "How do I reverse a list in Python?",
        "Call the list's reverse() method to reverse it in place, or use slicing, items[::-1], to get a reversed copy.",
    ),
    (
        "What is the capital of France?",
        "Call the list's reverse() method to reverse it in place, or use slicing, items[::-1], to get a reversed copy.",
    ),
]


@pytest.fixture(scope="module")
def engine(smollm2):
    pytest.importorskip("vllm")
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from udfs.vllm_engine import VLLMEngine

    cfg = EngineConfig(
        dtype="float32",
        max_model_len=1024,
        kv_cache_memory_bytes=64 * 2**20,
        enforce_eager=True,
        enable_chunked_prefill=False,
    )
    engine = VLLMEngine(engine_args(str(smollm2), cfg))
    yield engine
    engine.close()


def forward_logprobs(model, ids: list[int], start: int) -> list[float]:
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return [logprobs[i - 1, ids[i]].item() for i in range(start, len(ids))]


def test_prompt_logprobs_match_a_forward_pass(engine, smollm2):
    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    model = AutoModelForCausalLM.from_pretrained(smollm2, torch_dtype=torch.float32).eval()
    prompts, answers = [], []
    for instruction, answer in PAIRS:
        prompts += likelihood_prompts(engine, instruction)
        answers += [answer, answer]
    got = engine.answer_logprobs(prompts, answers)
    for prompt, answer, lps in zip(prompts, answers, got):
        prompt_ids = encode_prompt(tokenizer, prompt)
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
        want = forward_logprobs(model, prompt_ids + answer_ids, len(prompt_ids))
        assert len(lps) == len(answer_ids) > 10
        assert lps == pytest.approx(want, abs=2e-3)
    too_long = engine.answer_logprobs([prompts[0]], [" word" * 1100])
    assert too_long == [None] and engine.answer_logprobs([prompts[0]], [""]) == [[]]


def test_a_matched_pair_has_a_lower_ifd(engine, smollm2):
    batch = pd.DataFrame(
        {
            "likelihood_id": ["a", "b"],
            "generation_id": ["a", "b"],
            "segment_id": ["a", "b"],
            "instruction": [p[0] for p in PAIRS],
            "text": [p[1] for p in PAIRS],
        }
    )
    rows = likelihood_batch(engine, batch, "smollm2", "pool")
    assert list(rows["status"]) == ["ok", "ok"]
    matched, mismatched = rows.iloc[0], rows.iloc[1]
    assert matched["answer_loss"] == pytest.approx(mismatched["answer_loss"])
    assert matched["ifd"] < mismatched["ifd"] and matched["conditional_loss"] < mismatched["conditional_loss"]
