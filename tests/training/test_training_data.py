"""Tokenizer, chat formatting by direction, prompt masking, and the curated-pair query over Delta tables."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from training.config import TrainConfig
from training.data import IGNORE_INDEX, Example, conversation, encode, encode_examples, load_examples
from training.tokenizer import build_tokenizer
from udfs.config import load_config
from udfs.prompts import PromptTemplate, messages, render_chat

BACKWARD = PromptTemplate.load("conf/prompts/backtranslate_v1.txt")
EXAMPLE = Example("Answer in the style of an AI Assistant.", "How do I copy a list?", "Use items.copy().", "seed")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    build_tokenizer(["How do I copy a list? Use items.copy() or list(items).", "Score: 5"] * 20, str(out), 300)
    return AutoTokenizer.from_pretrained(out)  # as vLLM and training load it


def split(tokenizer, enc):
    """(prompt text, answer ids) of an encoded example."""
    n = enc.labels.count(IGNORE_INDEX)
    assert enc.labels[:n] == [IGNORE_INDEX] * n and IGNORE_INDEX not in enc.labels[n:]
    assert enc.labels[n:] == enc.input_ids[n:]
    return tokenizer.decode(enc.input_ids[:n]), enc.input_ids[n:]


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=200))
def test_any_text_round_trips(tokenizer, text):
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_tokenizer_special_tokens_and_digits(tokenizer):
    assert len({tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}) == 3
    for digit in "12345":
        assert len(tokenizer(digit, add_special_tokens=False)["input_ids"]) == 1
    assert tokenizer("Score: 5")["input_ids"][0] == tokenizer.bos_token_id
    chat = render_chat(tokenizer, messages("q", system="s", assistant="a"), add_generation_prompt=False)
    assert chat == "<|system|>\ns<|eos|><|user|>\nq<|eos|><|assistant|>\na<|eos|>"


def test_forward_prompt_has_tag_and_instruction_and_loss_is_on_output_and_eos(tokenizer):
    enc = encode(tokenizer, conversation(EXAMPLE, "forward", BACKWARD), max_seq_len=512)
    prompt, answer = split(tokenizer, enc)
    assert prompt == (
        "<|bos|><|system|>\nAnswer in the style of an AI Assistant.<|eos|>"
        "<|user|>\nHow do I copy a list?<|eos|><|assistant|>\n"
    )
    assert tokenizer.decode(answer) == "Use items.copy().<|eos|>"
    assert answer[-1] == tokenizer.eos_token_id


def test_backward_prompt_is_the_output_in_the_template_and_the_answer_is_the_instruction(tokenizer):
    enc = encode(tokenizer, conversation(EXAMPLE, "backward", BACKWARD), max_seq_len=512)
    prompt, answer = split(tokenizer, enc)
    user = BACKWARD.render(output="Use items.copy().")
    assert prompt == f"<|bos|><|user|>\n{user}<|eos|><|assistant|>\n"  # no system tag
    assert tokenizer.decode(answer) == "How do I copy a list?<|eos|>"


def test_prompt_ids_are_what_inference_sends(tokenizer):
    chat = conversation(EXAMPLE, "forward", BACKWARD)
    enc = encode(tokenizer, chat, max_seq_len=512)
    prompt_ids = tokenizer(render_chat(tokenizer, chat[:-1], add_generation_prompt=True))["input_ids"]
    assert enc.input_ids[: len(prompt_ids)] == prompt_ids and enc.labels.count(IGNORE_INDEX) == len(prompt_ids)


def test_long_answers_are_truncated_and_long_prompts_dropped_and_counted(tokenizer, tmp_path):
    seed = tmp_path / "seed.jsonl"
    rows = [("short?", "x " * 300), ("long " * 300, "y")]
    seed.write_text("".join(json.dumps({"instruction": i, "output": o}) + "\n" for i, o in rows))
    cfg = load_config(TrainConfig, None, ["base_model=b", "output_dir=o", f"seed.path={seed}", "optim.max_seq_len=128"])
    examples, _ = load_examples(cfg)
    encoded, counts = encode_examples(tokenizer, examples, cfg)
    assert counts == {"seed": 1, "dropped_prompt_too_long": 1}
    assert len(encoded[0].input_ids) == len(encoded[0].labels) == 128


def test_seed_pairs_overlapping_an_evaluation_set_are_left_out_and_recorded(tmp_path):
    from training.data import excluded_counts
    from training.train import model_config

    question = "What is the capital city of Australia?"
    evals = tmp_path / "eval.jsonl"
    evals.write_text(json.dumps({"prompt": question}) + "\n")
    seed = tmp_path / "seed.jsonl"
    rows = [(question, "Canberra."), ("How do I sort a list?", "Use sorted()."), ("Quiz?", f"Q: {question} A: no")]
    seed.write_text("".join(json.dumps({"instruction": i, "output": o}) + "\n" for i, o in rows))
    sets = json.dumps([{"name": "geo_eval", "path": str(evals), "field": "prompt"}])
    base = ["base_model=b", "output_dir=o", f"seed.path={seed}"]
    cfg = load_config(TrainConfig, None, [*base, f"seed.decontamination={sets}"])
    examples, provenance = load_examples(cfg)
    assert [e.instruction for e in examples] == ["How do I sort a list?"]
    assert provenance["seed"]["rows"] == 1
    assert provenance["seed"]["excluded"] == [
        {"pair": 1, "reason": "eval_overlap:geo_eval"},  # the instruction is the prompt
        {"pair": 3, "reason": "eval_overlap:geo_eval"},  # the output contains it
    ]
    assert excluded_counts(provenance) == {"eval_overlap:geo_eval": 2}
    unchecked = load_config(TrainConfig, None, base)
    all_pairs, plain = load_examples(unchecked)
    assert len(all_pairs) == 3 and "excluded" not in plain["seed"] and excluded_counts(plain) == {}
    # Which sets were checked is not part of the model: the pairs left are (data_sha256).
    assert model_config(cfg) == model_config(unchecked)


def test_the_pipeline_checks_seed_pairs_against_its_segment_evaluation_sets():
    from jobs.config import load_pipeline_config
    from jobs.stages.models import train_config

    cfg = load_pipeline_config("conf/tiny.yaml", ["segment.decontamination_ngram=9"])
    train = train_config(cfg, "conf/train/local_forward.yaml", "/base", "/out")
    assert train.seed.decontamination == cfg.segment.decontamination and train.seed.decontamination
    assert (train.seed.decontamination_ngram, train.seed.decontamination_min_words) == (9, 5)


# --- curated pairs from Delta tables ---------------------------------------------------------------------

TABLES = ("segments", "candidates", "scores")
PINNED = [f"augmented.{t}_version=0" for t in TABLES]


def write_tables(root, segments, candidates, scores, mode="error"):
    from deltalake import write_deltalake

    for name, rows in zip(TABLES, (segments, candidates, scores)):
        frame = pd.DataFrame(rows)
        write_deltalake(str(root / name), frame.astype({"score": "Int64"}) if name == "scores" else frame, mode=mode)


def seg(sid, status="ok"):
    return {"segment_id": sid, "text": f"text of {sid}", "status": status, "reason": None}


def cand(gid, sid, status="ok"):
    return {"generation_id": gid, "segment_id": sid, "instruction": f"instruction {gid}", "status": status}


def score(gid, value, judge="m0", status="ok"):
    expected = None if value is None else value - 0.25
    return {
        "score_id": f"{gid}-{judge}",
        "generation_id": gid,
        "judge_model_id": judge,
        "score": value,
        "expected_score": expected,
        "status": status,
    }


@pytest.fixture
def tables(tmp_path):
    """Version 0: seven candidates in every state; version 1 appends one more passing pair (g9)."""
    write_tables(
        tmp_path,
        [seg("s1"), seg("s2"), seg("s3", status="dropped")],
        [
            cand("g1", "s1"),
            cand("g2", "s1"),
            cand("g3", "s2"),
            cand("g4", "s2", status="error"),
            cand("g5", "s3"),
            cand("g6", "s2"),
            cand("g7", "s2"),
        ],
        [
            score("g1", 5),
            score("g2", 4),
            score("g3", None),
            score("g4", 5),
            score("g5", 5),
            score("g6", 5, judge="m1"),
            score("g7", 5, status="error"),
            score("g1", 5, judge="m1"),
        ],
    )
    write_tables(tmp_path, [seg("s9")], [cand("g9", "s9")], [score("g9", 5)], mode="append")
    return tmp_path


def curated(seed_file, root, *overrides):
    """load_examples over the tables: (augmented (instruction, output, system) rows, provenance)."""
    paths = [f"augmented.{t}_table={root / t}" for t in TABLES]
    cfg = load_config(TrainConfig, None, ["base_model=b", "output_dir=o", f"seed.path={seed_file}", *paths, *overrides])
    examples, provenance = load_examples(cfg)
    assert [e.source for e in examples[:8]] == ["seed"] * 8  # seed first, in file order
    assert all(e.score_id is None for e in examples[:8]) and all(e.score_id for e in examples[8:])
    return [(e.instruction, e.output, e.system) for e in examples[8:]], provenance


def test_curated_pairs_pass_the_score_threshold_and_every_status(seed_file, tables):
    pairs, provenance = curated(seed_file, tables, *PINNED)
    # g2 scores 4; g3 null; g4 candidate error; g5 segment dropped; g7 score error; g9 only in version 1.
    # g1 is scored by two judges and appears once; g6 passes by judge m1 (no judge filter).
    assert pairs == [
        ("instruction g1", "text of s1", "Answer with knowledge from web search."),
        ("instruction g6", "text of s2", "Answer with knowledge from web search."),
    ]
    assert {t: provenance["augmented"]["tables"][t]["version"] for t in TABLES} == dict.fromkeys(TABLES, 0)
    assert provenance["examples_by_source"] == {"seed": 8, "augmented": 2}


def test_each_curated_example_names_the_score_that_passed_it(seed_file, tables):
    paths = [f"augmented.{t}_table={tables / t}" for t in TABLES]
    cfg = load_config(TrainConfig, None, ["base_model=b", "output_dir=o", f"seed.path={seed_file}", *paths, *PINNED])
    examples, _ = load_examples(cfg)
    # g1 passes by both judges: the lowest score id is its lineage, deterministically
    assert [e.score_id for e in examples if e.source == "augmented"] == ["g1-m0", "g6-m1"]


def test_judge_filter_and_lower_threshold(seed_file, tables):
    pairs, _ = curated(seed_file, tables, "augmented.judge_model_id=m0", "augmented.min_score=4", *PINNED)
    assert [p[0] for p in pairs] == ["instruction g1", "instruction g2"]


def test_expected_score_column(seed_file, tables):
    pairs, _ = curated(
        seed_file,
        tables,
        "augmented.score_column=expected_score",
        "augmented.min_score=4.5",
        "augmented.judge_model_id=m0",
    )
    assert [p[0] for p in pairs] == ["instruction g1", "instruction g9"]  # 4.75 passes, 3.75 does not


def test_both_rule_needs_the_parsed_and_the_expected_score(seed_file, tables):
    # expected = score - 0.25: with k = 4.5, g2 (4 / 3.75) fails both, g1 and g9 (5 / 4.75) pass both.
    both = curated(
        seed_file, tables, "augmented.score_column=both", "augmented.min_score=4.5", "augmented.judge_model_id=m0"
    )[0]
    assert [p[0] for p in both] == ["instruction g1", "instruction g9"]
    # with k = 4.8 the parsed 5 passes but the expected 4.75 does not: "both" keeps nothing
    assert (
        curated(
            seed_file, tables, "augmented.score_column=both", "augmented.min_score=4.8", "augmented.judge_model_id=m0"
        )[0]
        == []
    )
    assert [p[0] for p in curated(seed_file, tables, "augmented.min_score=4.8", "augmented.judge_model_id=m0")[0]] == [
        "instruction g1",
        "instruction g9",
    ]


def test_unpinned_reads_latest_and_records_the_version_and_the_hash_follows_the_data(seed_file, tables):
    pinned, pinned_provenance = curated(seed_file, tables, *PINNED)
    latest, latest_provenance = curated(seed_file, tables)
    assert {t: latest_provenance["augmented"]["tables"][t]["version"] for t in TABLES} == dict.fromkeys(TABLES, 1)
    assert latest == [*pinned, ("instruction g9", "text of s9", "Answer with knowledge from web search.")]
    assert latest_provenance["sha256"] != pinned_provenance["sha256"]
    assert curated(seed_file, tables, *PINNED)[1]["sha256"] == pinned_provenance["sha256"]


def test_as_of_pins_every_table_to_its_version_at_that_time(seed_file, tables):
    from deltalake import DeltaTable

    # history() is newest first: the last entry is version 0. The latest of the three tables' version 0.
    committed = max(DeltaTable(str(tables / t)).history()[-1]["timestamp"] for t in TABLES)
    as_of = datetime.fromtimestamp(committed / 1000, timezone.utc).isoformat()
    pairs, provenance = curated(seed_file, tables, f"augmented.as_of={as_of}")
    assert pairs == curated(seed_file, tables, *PINNED)[0]
    read = provenance["augmented"]["tables"]
    assert [(read[t]["version"], read[t]["as_of"]) for t in TABLES] == [(0, as_of)] * 3


def test_tables_are_mlflow_dataset_inputs_at_the_version_read(seed_file, tables):
    from training.tracking import dataset_inputs

    _, provenance = curated(seed_file, tables, *PINNED)
    inputs = {i.dataset.name: (json.loads(i.dataset.source), i.dataset.digest) for i in dataset_inputs(provenance)}
    assert inputs["seed"][0] == {"uri": str(seed_file)}
    assert inputs["scores"][0]["path"] == str(tables / "scores") and inputs["scores"][1] == "v0"
    latest = {i.dataset.name: json.loads(i.dataset.source) for i in dataset_inputs(curated(seed_file, tables)[1])}
    assert latest["scores"] == {"path": str(tables / "scores"), "delta_table_version": 1}
    assert set(inputs) == {"seed", *TABLES}


def test_longest_baseline_keeps_as_many_pairs_as_the_judge_rule(seed_file, tmp_path):
    # the judge (m0, score >= 5) keeps g1 and g3; longest keeps the two longest answers of m0's pool, whatever
    # their status (g4 was ruled out by the cascade), and names the pair's scores row
    segments = [{"segment_id": f"s{i}", "text": "x" * (10 * i), "status": "ok", "reason": None} for i in range(1, 5)]
    write_tables(
        tmp_path,
        segments,
        [cand(f"g{i}", f"s{i}") for i in range(1, 5)],
        [score("g1", 5), score("g2", 2), score("g3", 5), score("g4", None, status="dropped"), score("g2", 5, "m1")],
    )
    base = ["augmented.judge_model_id=m0", *PINNED]
    pairs, _ = curated(seed_file, tmp_path, "augmented.score_column=longest", *base)
    assert [p[0] for p in pairs] == ["instruction g3", "instruction g4"]
    pairs, _ = curated(seed_file, tmp_path, "augmented.score_column=longest", "augmented.baseline_k=3", *base)
    assert [p[0] for p in pairs] == ["instruction g2", "instruction g3", "instruction g4"]
    random, _ = curated(seed_file, tmp_path, "augmented.score_column=random", *base)
    again, _ = curated(seed_file, tmp_path, "augmented.score_column=random", *base)
    assert len(random) == 2 and random == again
    other = {
        tuple(
            p[0]
            for p in curated(
                seed_file, tmp_path, "augmented.score_column=random", f"augmented.baseline_seed={s}", *base
            )[0]
        )
        for s in range(8)
    }
    assert len(other) > 1  # the seed draws another set
