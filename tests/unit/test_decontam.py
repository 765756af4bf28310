"""Unit tests for udfs.decontam: eval-set files, n-gram and whole-prompt matches, the per-process cache."""

import json
from pathlib import Path

import pytest

from jobs.config import load_pipeline_config
from jobs.preflight import UsageError, check_decontamination
from udfs.decontam import Decontamination, EvalSet, load_eval_index, overlap, overlap_reason

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


def test_eval_set_config_is_validated_and_a_missing_file_stops_the_run_before_spark(tmp_path):
    with pytest.raises(ValueError, match="snake_case"):
        EvalSet("My Eval", str(ROOT / "data/sample/eval-prompts.jsonl"))
    # A config names the files of the machine it runs on (conf/cluster.yaml: the cluster's): it loads anywhere,
    # and the run checks the files before Spark starts.
    missing = EvalSet("mine", str(tmp_path / "missing.jsonl"))
    assert not missing.exists() and EvalSet("remote", "s3://bucket/evals.jsonl").exists()
    with pytest.raises(UsageError, match=r"segment\.decontamination: no prompt file for 'mine' at '.*missing.jsonl'"):
        check_decontamination([missing])


def test_the_cluster_config_decontaminates_against_its_evaluation_files():
    cfg = load_pipeline_config(str(ROOT / "conf/cluster.yaml"))
    assert [s.name for s in cfg.segment.decontamination] == ["alpaca_eval", "mt_bench"]
    with pytest.raises(UsageError, match=r"'alpaca_eval' at '/dbfs/humpback/evals/alpaca_eval.jsonl'"):
        check_decontamination(cfg.segment.decontamination)  # not on this machine: the run would stop, naming it


def test_a_check_names_the_first_set_any_text_overlaps(tmp_path):
    first = EvalSet("first", write_jsonl(tmp_path / "a.jsonl", ["What is the capital of France?"]))
    second = EvalSet("second", write_jsonl(tmp_path / "b.jsonl", [LONG_PROMPT, "What is the capital of France?"]))
    check = Decontamination((first, second))
    assert check.reason("Quiz: what is the capital of France?") == "eval_overlap:first"
    assert check.reason("Nothing here.", LONG_PROMPT.upper()) == "eval_overlap:second"
    assert check.reason("Nothing here.", None, "") is None
    assert Decontamination().reason(LONG_PROMPT) is None  # no sets: nothing is checked
    assert overlap_reason({"a": 0, "b": 2, "c": 1}) == "eval_overlap:b" and overlap_reason({"a": 0}) is None


def test_an_eval_set_on_an_object_store_is_read_through_fsspec():
    import fsspec

    with fsspec.open("memory://evals/remote.jsonl", "wt") as f:
        f.write(json.dumps({"prompt": LONG_PROMPT}) + "\n")
    check = Decontamination((EvalSet("remote", "memory://evals/remote.jsonl"),))
    assert check.reason(f"copied: {LONG_PROMPT}") == "eval_overlap:remote"


def test_a_relative_eval_set_path_is_made_absolute_where_it_is_validated(tmp_path, monkeypatch):
    """The driver validates the config; executors open the file from their own working directories."""
    write_jsonl(tmp_path / "e.jsonl", [LONG_PROMPT])
    monkeypatch.chdir(tmp_path)
    assert EvalSet("mine", "e.jsonl").path == str(tmp_path / "e.jsonl")


def test_the_sample_eval_file_loads():
    index = load_eval_index(str(ROOT / "data/sample/eval-prompts.jsonl"), "prompt", 13, 5)
    assert index.prompts == 5 and index.long_grams
