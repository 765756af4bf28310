import pytest

from udfs.augment import backward_conversation, clean_instruction
from udfs.ids import seed_from_id, stable_id
from udfs.prompts import PromptTemplate, messages


def test_templates_are_versioned_by_file_name():
    assert PromptTemplate.load("conf/prompts/score_v1.txt").version == "score_v1"
    assert PromptTemplate.load("conf/prompts/backtranslate_v1.txt").fields == {"output"}


def test_web_text_with_braces_is_inserted_verbatim():
    template = PromptTemplate("t_v1", "Rate:\n{answer}\nfor {instruction}")
    out = template.render(instruction="x", answer="def f(): return {'a': '{instruction}'}")
    assert out == "Rate:\ndef f(): return {'a': '{instruction}'}\nfor x"


def test_missing_placeholder_is_an_error():
    with pytest.raises(KeyError, match="score_v1"):
        PromptTemplate.load("conf/prompts/score_v1.txt").render(instruction="x")


def test_backward_conversation_is_one_user_turn():
    conv = backward_conversation(PromptTemplate("b_v1", "Text:\n{output}"), "Some segment")
    assert conv == [{"role": "user", "content": "Text:\nSome segment"}]
    assert messages("q", system="s", assistant="a")[0] == {"role": "system", "content": "s"}


def test_clean_instruction_reasons():
    assert clean_instruction("  How do I sort a list?  ", "stop").text == "How do I sort a list?"
    assert clean_instruction("   ", "stop").reason == "empty_instruction"
    assert clean_instruction("How do", "length").reason == "instruction_truncated"
    assert clean_instruction("x" * 50, "stop", max_chars=10).reason == "instruction_too_long"


def test_ids_are_deterministic_and_sensitive():
    assert stable_id("a", 1) == stable_id("a", 1)
    assert stable_id("a", 1) != stable_id("a", "1")
    assert 0 <= seed_from_id(stable_id("x")) < 2**31
