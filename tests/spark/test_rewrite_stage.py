"""The rewrite stage in the job: mechanics on conf/tiny.yaml, resuming, and training on rewrites with lineage
(the real SmolLM2-135M-Instruct writing rewrites through vLLM: tests/spark/test_real_smollm2.py).

The mechanics run on the fake engine (``engine.name: fake``: deterministic text, every answer ended by eos), so
the loop's LLM stages cost nothing and M1 and M2 train for two steps on the tiny session model. Faithfulness is
measured on word 1-grams there, so the fake engine's words pass for some segments and fail for others.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
from deltalake import DeltaTable

from jobs.augment import main
from tests.conftest import ROOT, SAMPLE_PAGES, SAMPLE_SEED, sample_pages, write_warc
from udfs.ids import model_fingerprint

pytestmark = pytest.mark.slow

MIN_FAITHFULNESS = 0.6
KS = (1.0, 3.0)


def table(root: Path, name: str):
    return DeltaTable(str(root / "tables" / name)).to_pandas()


def by_stage(summary: dict) -> dict:
    return {(s["stage"].rsplit("_v", 1)[0], s["iteration"]): s for s in summary["stages"]}


@pytest.fixture(scope="module")
def loop(spark, tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("rewrite")
    warc = write_warc(root / "crawl.warc.gz", sample_pages(SAMPLE_PAGES[:2]))
    seed = root / "seed.jsonl"
    seed.write_text("".join(SAMPLE_SEED.read_text().splitlines(keepends=True)[:16]))
    args = ["--config", str(ROOT / "conf/tiny.yaml")]
    for item in [
        f"input.corpus={warc}",
        f"input.seed={seed}",
        f"storage.root={root}/tables",
        f"models.dir={root}/models",
        f"models.base={tiny_model}",
        f"models.backward={tiny_model}",
        f"models.seed_model={tiny_model}",
        "models.train_overrides=[optim.max_steps=2, optim.max_seq_len=512, tracking.enabled=false]",
        "engine.name=fake",
        "engine.commit_rows=4",  # several chunks per stage
        "iterations.score_column=expected_score",
        f"iterations.min_score=[{KS[0]}, {KS[1]}]",
        "rewrite.enabled=true",
        "rewrite.train_on=rewrite",
        "rewrite.ngram=1",
        f"rewrite.min_faithfulness={MIN_FAITHFULNESS}",
        "report.judge_labels=null",
    ]:
        args += ["--set", item]
    steps: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        steps["curated_only"] = main([*args, "--stages", "ingest,segment,models,augment,curate", "--iterations", "1"])
        with pytest.raises(SystemExit) as stopped:
            main([*args, "--stages", "train", "--iterations", "1"])
        steps["train_too_early"] = str(stopped.value)
        steps["plan"] = main([*args, "--dry-run", "--iterations", "1"])
        steps["first"] = main([*args, "--iterations", "1"])
        steps["rewrites_first"] = table(root, "rewrites")
        steps["full"] = main(args)
        steps["again"] = main(args)
        for name in ("scores", "rewrites", "curated"):  # as the loop with rewriting left them
            steps[name] = table(root, name)
        for i in (1, 2):
            model = root / "models" / f"m{i}"
            steps[f"m{i}"] = (model_fingerprint(str(model)), json.loads((model / "training_meta.json").read_text()))
        steps["without"] = main([*args, "--set", "rewrite.train_on=segment", "--set", "rewrite.enabled=false"])
    return root, steps


def curated(steps: dict, iteration: int) -> set[str]:
    """The pairs iteration ``iteration`` curated in the loop with rewriting (its one judge)."""
    scores = steps["scores"]
    mine = scores[(scores["iteration"] == iteration) & (scores["status"] == "ok")]
    return set(mine[mine["expected_score"] >= KS[iteration - 1]]["generation_id"])


def test_every_curated_pair_is_rewritten_once_with_a_status_and_its_figures(loop):
    _, steps = loop
    rewrites = steps["rewrites"]
    wanted = curated(steps, 1) | curated(steps, 2)
    assert wanted and set(rewrites["generation_id"]) == wanted
    assert rewrites["rewrite_id"].is_unique and len(rewrites) == len(wanted)  # a pair both iterations keep: once
    assert set(rewrites["status"]) <= {"ok", "dropped"}
    ok = rewrites[rewrites["status"] == "ok"]
    unfaithful = rewrites[rewrites["reason"] == "unfaithful_rewrite"]
    assert len(ok) > 0 and (ok["faithfulness"] >= MIN_FAITHFULNESS).all() and ok["reason"].isna().all()
    assert (unfaithful["faithfulness"] < MIN_FAITHFULNESS).all() and unfaithful["answer"].notna().all()
    assert set(rewrites["reason"].dropna()) <= {"unfaithful_rewrite", "truncated", "empty_answer", "prompt_too_long"}
    assert set(ok["answer_end"]) == {"eos"}  # the fake engine never writes </answer>
    assert (ok["n_new_numbers"] == ok["new_numbers"].map(lambda s: len(json.loads(s)))).all()
    assert (rewrites["min_faithfulness"] == MIN_FAITHFULNESS).all() and set(rewrites["prompt_version"]) == {
        "rewrite_v1"
    }


def test_train_waits_for_the_rewrites_and_the_plan_counts_them(loop):
    _, steps = loop
    assert "not rewritten" in steps["train_too_early"] and "run the rewrite stage first" in steps["train_too_early"]
    step = {(s["stage"], s["iteration"]): s for s in steps["plan"]["steps"]}
    assert [s["stage"] for s in steps["plan"]["steps"]][4:7] == ["curate", "rewrite", "train"]
    assert step[("rewrite", 1)]["todo"]["rewrites"] == step[("rewrite", 1)]["inputs"]["curated_pairs_now"] > 0


def test_iteration_2_rewrites_only_the_pairs_iteration_1_did_not(loop):
    _, steps = loop
    first = steps["rewrites_first"]
    assert set(first["generation_id"]) == curated(steps, 1)
    rewrite_2 = by_stage(steps["full"])[("rewrite", 2)]
    assert rewrite_2["rows_in"] == len(curated(steps, 2) - curated(steps, 1))
    assert rewrite_2["extra"]["faithfulness"]["rewrites"] == len(curated(steps, 2))


def test_models_train_on_the_ok_rewrites_and_the_lineage_names_them(loop):
    _, steps = loop
    rewrites = steps["rewrites"]
    ok = rewrites[rewrites["status"] == "ok"].set_index("generation_id")
    lineage = steps["curated"]
    for iteration in (1, 2):
        model_id, meta = steps[f"m{iteration}"]
        mine = lineage[lineage["trained_model_id"] == model_id]
        with_rewrite = curated(steps, iteration) & set(ok.index)
        assert set(mine["generation_id"]) == with_rewrite
        assert (mine["rewrite_id"] == ok.loc[list(mine["generation_id"]), "rewrite_id"].to_numpy()).all()
        augmented = meta["provenance"]["augmented"]
        assert augmented["output"] == "rewrite" and meta["config"]["augmented"]["output"] == "rewrite"
        assert augmented["rows"] == len(with_rewrite)
        assert augmented["without_rewrite"] == len(curated(steps, iteration)) - len(with_rewrite)
        assert "rewrites" in augmented["tables"]


def test_a_rerun_adds_no_rewrite_and_the_report_shows_them(loop):
    root, steps = loop
    again = by_stage(steps["again"])
    assert again[("rewrite", 1)]["rows_written"] == again[("rewrite", 2)]["rows_written"] == 0
    assert again[("rewrite", 1)]["rows_in"] == again[("rewrite", 2)]["rows_in"] == 0
    report = (root / "tables/reports" / f"report-{steps['again']['run_id']}.html").read_text()
    assert "curated segments rewritten" in report and "no rewrites in this run" not in report


def test_with_rewriting_off_the_stage_is_not_run_and_models_train_on_segments_again(loop):
    root, steps = loop
    assert ("rewrite", 1) not in by_stage(steps["without"])
    lineage = table(root, "curated")
    m1 = model_fingerprint(str(root / "models/m1"))
    mine = lineage[lineage["trained_model_id"] == m1]
    assert set(mine["generation_id"]) == curated(steps, 1) and mine["rewrite_id"].isna().all()
    assert m1 != steps["m1"][0]  # trained on other answers: another model
