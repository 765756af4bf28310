"""The LLM rows on the real SmolLM2-135M-Instruct (converted once per test run) through ``VLLMEngine``, with
fixed human-written inputs, so that what the model writes does not follow the pipeline's generated
instructions or model ids.

Likelihoods: vLLM's prompt log-probabilities (``VLLMEngine.answer_logprobs``) equal a transformers forward
pass over the same token ids, and the batch gives a matched pair a lower IFD than a mismatched one.
Rewrites: the rewriter's prompt, opened inside ``<answer>``, gets answers that end and parse from the real
model, and the answer copies a short segment when no penalty works against copying."""

from __future__ import annotations

import os

import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.conftest import ROOT
from udfs.engine import EngineConfig, SamplingConfig, engine_args
from udfs.likelihood import likelihood_batch, likelihood_prompts
from udfs.llm_rows import rewrite_batch
from udfs.prompts import PromptTemplate, encode_prompt
from udfs.rewrite import RewriteSettings, parse_answer

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

ENGINE = EngineConfig(
    dtype="float32",
    max_model_len=1024,
    kv_cache_memory_bytes=64 * 2**20,
    enforce_eager=True,
    enable_chunked_prefill=False,
)
# Two segments of the sample pages (tutorial/appetite.html, library/colorsys.html), as segmenting leaves them, and
# questions a person would ask of them. Greedy decoding of a 135M model is sensitive to every character: with
# the colorsys segment cut differently (no "Source code" line, no last blank line) the no-penalty answer looped.
COLORSYS = (
    "Source code: Lib/colorsys.py\n\n"
    "The colorsys module defines bidirectional conversions of color values between colors expressed in the RGB "
    "(Red Green Blue) color space used in computer monitors and three other coordinate systems: YIQ, HLS (Hue "
    "Lightness Saturation) and HSV (Hue Saturation Value). Coordinates in all of these color spaces are floating "
    "point values. In the YIQ space, the Y coordinate is between 0 and 1, but the I and Q coordinates can be "
    "positive or negative. In all other spaces, the coordinates are all between 0 and 1.\n\n"
)
APPETITE = (
    "Python is extensible: if you know how to program in C it is easy to add a new built-in function or module "
    "to the interpreter, either to perform critical operations at maximum speed, or to link Python programs to "
    "libraries that may only be available in binary form (such as a vendor-specific graphics library). Once you "
    "are really hooked, you can link the Python interpreter into an application written in C and use it as an "
    "extension or command language for that application.\n\nBy the way, the language is named after the BBC "
    "show \u201cMonty Python\u2019s Flying Circus\u201d and has nothing to do with reptiles."
)
REWRITE_PAIRS = [
    ("What is the colorsys module?", COLORSYS),
    ("Why is Python called Python?", APPETITE),
    ("Can I extend Python with C?", APPETITE),
]


@pytest.fixture(scope="module")
def engine(smollm2):
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from udfs.vllm_engine import VLLMEngine

    engine = VLLMEngine(engine_args(str(smollm2), ENGINE))
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


def rewrites(engine, pairs, sampling: SamplingConfig) -> pd.DataFrame:
    ids = [f"{i + 1:032x}" for i in range(len(pairs))]  # rewrite ids are hex digests: the seed is read from them
    batch = pd.DataFrame(
        {
            "rewrite_id": ids,
            "generation_id": ids,
            "segment_id": ids,
            "instruction": [p[0] for p in pairs],
            "text": [p[1] for p in pairs],
        }
    )
    template = PromptTemplate.load(ROOT / "conf/prompts/rewrite_v1.txt")
    return rewrite_batch(engine, batch, "smollm2", template, sampling, ENGINE, RewriteSettings(min_faithfulness=0.5))


def test_the_real_model_ends_and_its_answers_parse(engine):
    # Greedy with a light repetition penalty: without one the 135M model loops to max_tokens on these
    # pairs (truncated); stopping without closing the marker is how it ends (answer_end "eos").
    rows = rewrites(engine, REWRITE_PAIRS, SamplingConfig(temperature=0.0, max_tokens=256, repetition_penalty=1.1))
    assert list(rows["finish_reason"]) == ["stop"] * len(REWRITE_PAIRS), rows["raw_text"].tolist()
    assert rows["output_tokens"].between(1, 255).all()
    for row in rows.itertuples():
        parsed = parse_answer(row.raw_text, row.finish_reason)
        assert row.answer == parsed.answer and row.answer_end == parsed.end in {"marker", "eos"}
        assert row.answer.strip() and "<answer>" not in row.answer and "</answer>" not in row.answer
        assert 0 <= row.faithfulness <= 1 and row.reason in {None, "unfaithful_rewrite"}


def test_without_a_penalty_the_answer_copies_a_short_segment(engine):
    rows = rewrites(engine, REWRITE_PAIRS[:1], SamplingConfig(temperature=0.0, max_tokens=256))
    row = rows.iloc[0]
    assert row["status"] == "ok" and row["answer_end"] in {"marker", "eos"}, row["raw_text"]
    assert row["faithfulness"] >= 0.5 and row["n_new_numbers"] == 0
