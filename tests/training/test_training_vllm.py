"""A model saved by training loads in vLLM (CPU, in-process) and generates, stopping at eos.

This is the only training test that imports vLLM, and only inside the fixture.
"""

from __future__ import annotations

import os

import pytest
from transformers import AutoTokenizer

from training.data import IGNORE_INDEX, conversation, encode, load_examples
from udfs.prompts import PromptTemplate, render_chat

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def llm(trained):
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # engine in this process: no worker to spawn
    from vllm import LLM

    _, result = trained
    engine = LLM(
        model=result.output_dir,
        dtype="float32",
        max_model_len=1024,
        enforce_eager=True,
        kv_cache_memory_bytes=64 * 2**20,
        seed=0,
    )
    yield engine
    del engine


def test_vllm_generates_from_the_trained_model(llm, trained):
    from vllm import SamplingParams

    cfg, result = trained
    tokenizer = AutoTokenizer.from_pretrained(result.output_dir)
    chat = conversation(load_examples(cfg)[0][0], cfg.direction, PromptTemplate.load(cfg.backward_prompt))
    prompt = render_chat(tokenizer, chat[:-1], add_generation_prompt=True)
    [out] = llm.generate([prompt], SamplingParams(temperature=0.7, top_p=0.9, max_tokens=48, seed=0))
    # vLLM sees exactly the prompt tokens training masked: one bos, then the chat template.
    encoded = encode(tokenizer, chat, cfg.optim.max_seq_len)
    assert list(out.prompt_token_ids) == encoded.input_ids[: encoded.labels.count(IGNORE_INDEX)]
    completion = out.outputs[0]
    assert len(completion.token_ids) > 0 and isinstance(completion.text, str)
    assert completion.finish_reason in ("stop", "length")
