"""Prompt encoding and the judge's rating continuations on three real tokenizer families, without vLLM."""

from __future__ import annotations

import pytest

from tests.tokenizer_families import FAMILIES, build_tokenizer
from training.data import IGNORE_INDEX, encode
from udfs.curation import SCORE_CONTINUATIONS, judge_conversation, score_prompt_suffix
from udfs.engine import continuation_paths
from udfs.prompts import FALLBACK_CHAT_TEMPLATE, PromptTemplate, encode_prompt, messages, render_chat


@pytest.fixture(scope="module", params=FAMILIES)
def tokenizer(request):
    return build_tokenizer(request.param)


def judge_prompt(tokenizer, reasoning: str = "The answer is helpful.") -> str:
    template = PromptTemplate.load("conf/prompts/score_v1.txt")
    prompt = render_chat(tokenizer, judge_conversation(template, "How do I sort a list?", "Use sorted(xs)."), True)
    return prompt + score_prompt_suffix(reasoning + "\nScore: 4")


def test_every_rating_continuation_is_spelt_after_one_shared_prefix(tokenizer):
    prompt = judge_prompt(tokenizer)
    encode_ = lambda text: encode_prompt(tokenizer, text)  # noqa: E731
    root, paths = continuation_paths(encode_, prompt, list(SCORE_CONTINUATIONS))
    prompt_ids = encode_(prompt)
    assert set(paths) == set(SCORE_CONTINUATIONS) and root and root == prompt_ids[: len(root)]
    for text, path in paths.items():
        assert root + list(path) == encode_(prompt + text)  # the joint tokenisation, continued from root
        assert tokenizer.decode(root + list(path), skip_special_tokens=False).endswith("Score:" + text)


def test_the_space_and_digit_forms_differ_by_family():
    # why single next tokens could not work: the rating is one, two or a merged token depending on the family
    spelt = {}
    for family in FAMILIES:
        tok = build_tokenizer(family)
        ids = encode_prompt(tok, "x Score:")
        _, paths = continuation_paths(lambda t, tok=tok: encode_prompt(tok, t), "x Score:", [" 5", "5"])
        spelt[family] = {k: tok.convert_ids_to_tokens(list(v)) for k, v in paths.items()}
        assert ids  # the prompt alone encodes
    assert spelt["smollm2"][" 5"] == ["Ġ", "5"]
    assert spelt["sentencepiece"][" 5"] == ["▁", "5"]
    assert spelt["base"][" 5"] == ["Ġ5"]


def test_a_continuation_that_merges_with_the_prompt_backs_off_to_a_shared_prefix():
    # a toy tokenizer where ":5" is one token: "Score:" ends in ":", "Score:5" does not
    def encode_(text: str) -> list[str]:
        out, i = [], 0
        while i < len(text):
            step = 2 if text[i : i + 2] == ":5" else 1
            out.append(text[i : i + step])
            i += step
        return out

    root, paths = continuation_paths(encode_, "Score:", [" 5", "5", ""])
    assert root == list("Score")  # backed off before ":" so both continuations start at the same position
    assert paths == {" 5": (":", " ", "5"), "5": (":5",)}  # "" adds no token: left out


def test_bos_exactly_once_in_training_and_inference(tokenizer):
    chat = messages("How do I sort a list?", assistant="Use sorted(xs).")
    prompt = render_chat(tokenizer, chat[:-1], add_generation_prompt=True)
    ids = encode_prompt(tokenizer, prompt)
    bos = tokenizer.bos_token_id
    assert ids[0] == bos and ids[1] != bos
    encoded = encode(tokenizer, chat, max_seq_len=512)
    assert encoded.input_ids[: encoded.labels.count(IGNORE_INDEX)] == ids  # training masks what vLLM is sent


def test_the_double_bos_trap_is_real_for_the_sentencepiece_family():
    tok = build_tokenizer("sentencepiece")
    prompt = render_chat(tok, messages("hi"), add_generation_prompt=True)
    assert tok(prompt)["input_ids"][:2] == [tok.bos_token_id] * 2  # what vLLM's text prompts would get
    assert encode_prompt(tok, prompt)[:2] != [tok.bos_token_id] * 2


def test_base_tokenizer_gets_the_documented_plain_format():
    tok = build_tokenizer("base")
    assert tok.chat_template is None
    chat = messages("Sort a list.", system="Be brief.", assistant="sorted(xs)")
    prompt = render_chat(tok, chat[:-1], add_generation_prompt=True)
    assert prompt == "Be brief.\n\n### Instruction:\nSort a list.\n\n### Response:\n"
    assert render_chat(tok, chat, add_generation_prompt=False) == prompt + "sorted(xs)"
    assert tok.apply_chat_template(chat, chat_template=FALLBACK_CHAT_TEMPLATE, tokenize=False).endswith("sorted(xs)")
