"""The LLM engine inside Spark: one vLLM engine per Python worker, reused across batches; seeded rows repeat."""

import dataclasses

import pytest

from udfs.engine import EngineConfig, SamplingConfig, engine_loads, get_engine

pytestmark = pytest.mark.slow

ENGINE = EngineConfig(
    dtype="float32",
    max_model_len=512,
    kv_cache_memory_bytes=64 * 2**20,
    enforce_eager=True,
    enable_chunked_prefill=False,
    max_num_seqs=16,
)


def test_one_engine_per_worker_across_batches(spark, tiny_model):
    def probe(batches):
        import os

        import pandas as pd

        before = engine_loads()  # Spark may reuse a worker that already loaded an engine
        for batch in batches:
            engine = get_engine(tiny_model, ENGINE)
            outs = engine.generate(list(batch["prompt"]), SamplingConfig(0.7, 0.9, 4), list(batch["seed"]))
            yield pd.DataFrame(
                {
                    "pid": os.getpid(),
                    "loads": engine_loads() - before,
                    "text": [o.text for o in outs],
                    "seed": batch["seed"],
                }
            )

    df = spark.createDataFrame([(f"question {i}", i % 3) for i in range(24)], "prompt string, seed long").repartition(1)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "5")  # 5 batches in the one task
    try:
        rows = df.mapInPandas(probe, "pid long, loads long, text string, seed long").toPandas()
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    assert len(rows) == 24
    assert rows.groupby("pid")["loads"].max().le(1).all()  # five batches, at most one model load per worker


def test_same_seed_same_text(tiny_model):
    engine = get_engine(tiny_model, ENGINE)
    prompt = engine.render_chat([{"role": "user", "content": "How do I sort a list?"}])
    first = engine.generate([prompt, prompt], SamplingConfig(1.0, 1.0, 12), [7, 8])
    again = engine.generate([prompt], SamplingConfig(1.0, 1.0, 12), [7])
    assert again[0].text == first[0].text
    assert get_engine(tiny_model, ENGINE) is engine
    # batching and commit settings are not engine arguments: changing them must not reload the model
    assert get_engine(tiny_model, dataclasses.replace(ENGINE, batch_size=1, commit_rows=5, overflow="drop")) is engine
    logprobs = engine.continuation_logprobs([prompt + "Score:"], (" 1", "2"))[0]
    assert set(logprobs) == {" 1", "2"} and all(v <= 0 for v in logprobs.values())
    # a model retrained at the same path has another id: the cached engine must not serve it
    assert get_engine(tiny_model, ENGINE, "m1-retrained") is not engine


def test_a_prompt_over_the_context_is_truncated_or_dropped_never_a_failed_batch(tiny_model):
    import pandas as pd

    from udfs.prompts import PromptTemplate
    from udfs.spark_udfs import backtranslate

    template = PromptTemplate("b_v1", "Instruction for:\n{output}")
    batch = pd.DataFrame(
        {"generation_id": ["a" * 32, "b" * 32], "segment_id": ["s1", "s2"], "text": ["short text", "word " * 2000]}
    )

    def run(cfg):
        fn = backtranslate(tiny_model, "tiny", cfg, SamplingConfig(0.7, 0.9, 8), template, 2000)
        return pd.concat(fn(iter([batch])))

    dropped = run(dataclasses.replace(ENGINE, overflow="drop"))
    assert list(dropped["generation_id"]) == ["a" * 32, "b" * 32]  # order and count match the input
    assert (dropped["status"].iloc[1], dropped["reason"].iloc[1]) == ("dropped", "prompt_too_long")
    assert dropped["raw_text"].iloc[0] is not None and pd.isna(dropped["truncated_tokens"].iloc[0])

    truncated = run(dataclasses.replace(ENGINE, overflow="truncate"))
    assert truncated["raw_text"].iloc[1] is not None and truncated["truncated_tokens"].iloc[1] > 1000
    assert truncated["prompt_tokens"].iloc[1] + 8 <= ENGINE.max_model_len


def test_a_judge_batch_of_only_too_long_rows_is_reported_not_failed(tiny_model):
    import pandas as pd

    from udfs.prompts import PromptTemplate
    from udfs.spark_udfs import judge

    template = PromptTemplate("s_v1", "Rate:\n{instruction}\n{answer}")
    batch = pd.DataFrame(
        {
            "score_id": ["c" * 32],
            "generation_id": ["g"],
            "segment_id": ["s"],
            "instruction": ["Why?"],
            "text": ["word " * 2000],
        }
    )
    fn = judge(tiny_model, "tiny", dataclasses.replace(ENGINE, overflow="drop"), SamplingConfig(0.0, 1.0, 8), template)
    rows = pd.concat(fn(iter([batch])))
    assert list(zip(rows["status"], rows["reason"])) == [("dropped", "prompt_too_long")]
