"""Unit tests for udfs.decontam: eval-set files, n-gram and whole-prompt matches, the per-process cache."""

import json
from pathlib import Path

import pytest

from udfs.decontam import EvalSet, load_eval_index, overlap

ROOT = Path(__file__).resolve().parents[2]
LONG_PROMPT = "Explain why the quick brown fox jumps over the lazy dog in every typing lesson ever written"


def write_jsonl(path, prompts, field="prompt"):
    path.write_text("".join(json.dumps({field: p, "id": i}) + "\n" for i, p in enumerate(prompts)))
    return str(path)


def test_long_prompt_matches_any_shared_ngram(tmp_path):
    index = load_eval_index(write_jsonl(tmp_path / "e.jsonl", [LONG_PROMPT]), "prompt", 13, 5)
    # 13 consecutive words of the prompt, with other case and punctuation, inside other text
    copied = "Some intro. THE quick-brown fox jumps over the lazy dog, in every typing lesson ever! More text."
    assert overlap(copied, index) >= 1
    assert overlap("The quick brown fox jumps over the lazy dog in every typing class.", index) == 0


def test_short_prompts_match_whole_and_tiny_ones_are_ignored(tmp_path):
    path = tmp_path / "e.txt"
    path.write_text("What is the capital of France?\n\nHello there\n")
    index = load_eval_index(str(path), "prompt", 13, 5)
    assert (index.prompts, index.ignored) == (1, 1)
    assert overlap("Quiz: what is the capital of France? Paris.", index) == 1
    assert overlap("What is the capital of Spain?", index) == 0
    assert overlap("Hello there, general Kenobi.", index) == 0


def test_index_is_loaded_once_per_process(tmp_path):
    path = write_jsonl(tmp_path / "e.jsonl", [LONG_PROMPT])
    assert load_eval_index(path, "prompt", 13, 5) is load_eval_index(path, "prompt", 13, 5)


def test_bad_files_are_errors_naming_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok prompt here with words"}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not JSON"):
        load_eval_index(str(bad), "prompt", 13, 5)
    with pytest.raises(ValueError, match=r":1: no string field 'question'"):
        load_eval_index(write_jsonl(tmp_path / "q.jsonl", ["x"]), "question", 13, 5)


def test_eval_set_config_is_validated(tmp_path):
    with pytest.raises(ValueError, match="snake_case"):
        EvalSet("My Eval", str(ROOT / "data/sample/eval-prompts.jsonl"))
    with pytest.raises(ValueError, match="no such file"):
        EvalSet("mine", str(tmp_path / "missing.jsonl"))


def test_the_sample_eval_file_loads():
    index = load_eval_index(str(ROOT / "data/sample/eval-prompts.jsonl"), "prompt", 13, 5)
    assert index.prompts == 5 and index.long_grams
