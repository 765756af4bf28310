"""LLM throughput: the Spark pandas-UDF path vs bare vLLM, vLLM vs Hugging Face generate, the judge with and
without prefix caching, and augment prompts served in bfloat16, float32 and ``engine.dtype: auto``, on the same
model and prompts. Prints one line per figure.

    python benchmarks/llm_throughput.py [--model work/models/myx] [--judge work/models/m0] [--segments 96]
    python benchmarks/llm_throughput.py --only dtype --model work/models/smollm2-135m-instruct-<sha> --segments 32

``--only dtype`` prints this CPU's bf16 flags, what ``auto`` chooses on it, and augment prompts per second of
wall clock and per CPU second of this process (the engine runs in it) in each dtype: the CPU seconds compare
the dtypes on a machine shared with other work.

The models default to those `make demo` builds; on a GPU node pass real model directories and bigger numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jobs.config import load_pipeline_config  # noqa: E402
from udfs.augment import backward_conversation  # noqa: E402
from udfs.curation import judge_conversation  # noqa: E402
from udfs.engine import EngineConfig, SamplingConfig, drop_engine, get_engine  # noqa: E402
from udfs.hardware import NATIVE_BF16_FLAGS, choose_dtype, this_device  # noqa: E402
from udfs.ids import seed_from_id, stable_id  # noqa: E402
from udfs.prompts import PromptTemplate  # noqa: E402
from udfs.readers import read_records  # noqa: E402
from udfs.segment import SegmentConfig, segment_document  # noqa: E402


def sample_segments(n: int) -> list[str]:
    texts = []
    for record in read_records(str(ROOT / "data/sample/python-docs-sample.warc.gz")):
        if record.status == "ok":
            texts += [c.text for c in segment_document(record.html, SegmentConfig()) if c.status == "ok"]
    return (texts * (n // max(1, len(texts)) + 1))[:n]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def spark_vs_bare(model: str, engine: EngineConfig, texts: list[str], sampling: SamplingConfig) -> None:
    from pyspark.sql import SparkSession

    from udfs.spark_udfs import backtranslate

    template = PromptTemplate.load(ROOT / "conf/prompts/backtranslate_v1.txt")
    rows = pd.DataFrame(
        {
            "generation_id": [stable_id("bench", i) for i in range(len(texts))],
            "segment_id": [f"s{i}" for i in range(len(texts))],
            "text": texts,
        }
    )
    llm = get_engine(model, engine)
    prompts = [llm.render_chat(backward_conversation(template, t)) for t in texts]
    seeds = [seed_from_id(g) for g in rows["generation_id"]]
    llm.generate(prompts[:4], sampling, seeds[:4])  # warm-up
    outs, bare_s = timed(lambda: llm.generate(prompts, sampling, seeds))
    bare_tokens = sum(o.output_tokens for o in outs)
    drop_engine()  # the Spark worker loads its own copy: never two on the same cores at once

    # As conf/local.yaml: the one LLM task may use every core (Spark gives Python workers OMP_NUM_THREADS=1).
    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.executorEnv.OMP_NUM_THREADS", str(os.cpu_count()))
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    df = spark.createDataFrame(rows).repartition(1)  # one engine copy, as in conf/local.yaml
    fn = backtranslate(model, "bench", engine, sampling, template, 10_000)
    # Steady state, as in a long stage: time the faster of two full runs, so a run that lands on a fresh Python
    # worker (and loads the engine there) is not what is measured.
    (result, spark_s), (_, again_s) = [timed(lambda: df.mapInPandas(fn, _schema()).toPandas()) for _ in range(2)]
    print(f"Spark runs: {spark_s:.1f} s, {again_s:.1f} s (the first includes loading the engine in the worker)")
    spark_s = min(spark_s, again_s)
    spark_tokens = int(result["output_tokens"].sum())
    spark.stop()
    print(
        f"generation, bare LLM.generate: {bare_tokens / bare_s:,.0f} output tokens/s "
        f"({bare_tokens} tokens, {bare_s:.1f} s)"
    )
    print(
        f"generation, Spark pandas UDF:  {spark_tokens / spark_s:,.0f} output tokens/s "
        f"({spark_tokens} tokens, {spark_s:.1f} s)"
    )
    print(f"Spark path / bare vLLM: {(spark_tokens / spark_s) / (bare_tokens / bare_s):.2f}x (target >= 0.9x)")


def _schema() -> str:
    from udfs.tables import CANDIDATES

    return CANDIDATES.schema


def vllm_vs_hf(model: str, engine: EngineConfig, texts: list[str], max_tokens: int) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    template = PromptTemplate.load(ROOT / "conf/prompts/backtranslate_v1.txt")
    llm = get_engine(model, engine)
    prompts = [llm.render_chat(backward_conversation(template, t)) for t in texts]
    greedy = SamplingConfig(temperature=0.0, top_p=1.0, max_tokens=max_tokens)
    outs, vllm_s = timed(lambda: llm.generate(prompts, greedy, [0] * len(prompts)))
    vllm_tokens = sum(o.output_tokens for o in outs)
    drop_engine()

    tokenizer = AutoTokenizer.from_pretrained(model, padding_side="left")
    hf = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
    hf_tokens, start = 0, time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(prompts), 16):
            batch = tokenizer(prompts[i : i + 16], return_tensors="pt", padding=True, add_special_tokens=False)
            out = hf.generate(**batch, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
            for row in out[:, batch["input_ids"].shape[1] :].tolist():  # generated tokens up to and with eos
                hf_tokens += row.index(tokenizer.eos_token_id) + 1 if tokenizer.eos_token_id in row else len(row)
    hf_s = time.perf_counter() - start
    print(
        f"vLLM generate: {vllm_tokens / vllm_s:,.0f} tokens/s; "
        f"HF generate (batch 16): {hf_tokens / hf_s:,.0f} tokens/s; "
        f"vLLM / HF: {(vllm_tokens / vllm_s) / (hf_tokens / hf_s):.2f}x"
    )


def judge_prefix_caching(model: str, engine: EngineConfig, texts: list[str]) -> None:
    template = PromptTemplate.load(ROOT / "conf/prompts/score_v1.txt")
    sampling = SamplingConfig(temperature=0.0, top_p=1.0, max_tokens=8)
    rates = {}
    for caching in (False, True):
        llm = get_engine(model, dataclasses.replace(engine, enable_prefix_caching=caching))
        prompts = [llm.render_chat(judge_conversation(template, "How do I use this?", t[:1200])) for t in texts]
        llm.generate(prompts[:2], sampling, [0, 0])  # warm-up; the timed batch starts with a cold cache for its texts
        outs, seconds = timed(lambda: llm.generate(prompts, sampling, [0] * len(prompts)))
        prompt_tokens = sum(o.prompt_tokens for o in outs)
        hits = sum(o.cached_tokens for o in outs) / prompt_tokens
        rates[caching] = len(prompts) / seconds
        print(
            f"judge, prefix caching {'on ' if caching else 'off'}: {rates[caching]:.1f} pairs/s, "
            f"{prompt_tokens / seconds:,.0f} prompt tokens/s, prefix-cache hit rate {hits:.0%}"
        )
        drop_engine()
    print(f"judge with / without prefix caching: {rates[True] / rates[False]:.2f}x (target >= 1.5x)")


def dtype_comparison(model: str, engine: EngineConfig, texts: list[str], sampling: SamplingConfig) -> None:
    """Augment prompts per second in bfloat16, float32 and auto (what ``choose_dtype`` picks on this CPU)."""
    device = this_device()
    flags = sorted(device.cpu_flags & (NATIVE_BF16_FLAGS | {"avx2", "avx512f", "amx_tile"}))
    print(
        f"CPU flags: {' '.join(flags) or 'none of avx2/avx512f/avx512_bf16/amx'}; auto: "
        f"{choose_dtype('auto', device).describe()}"
    )
    template = PromptTemplate.load(ROOT / "conf/prompts/backtranslate_v1.txt")
    seeds = [seed_from_id(stable_id("bench", i)) for i in range(len(texts))]
    for dtype in ("bfloat16", "float32", "auto"):
        llm = get_engine(model, dataclasses.replace(engine, dtype=dtype))
        prompts = [llm.render_chat(backward_conversation(template, t)) for t in texts]
        llm.generate(prompts[:2], sampling, seeds[:2])  # warm-up
        cpu = time.process_time()
        outs, seconds = timed(lambda: llm.generate(prompts, sampling, seeds))
        cpu = time.process_time() - cpu
        tokens = sum(o.output_tokens for o in outs)
        print(
            f"augment, dtype {dtype:<8} ({llm.dtype.dtype}): {len(prompts) / seconds:.2f} prompts/s wall "
            f"({seconds:.1f} s), {len(prompts) / cpu:.3f} prompts per CPU second ({cpu:.1f} CPU s), {tokens} tokens"
        )
        drop_engine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "work/models/myx"))
    parser.add_argument("--judge", default=str(ROOT / "work/models/m0"))
    parser.add_argument("--segments", type=int, default=480, help="prompts per comparison (HF generate gets a fifth)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--config", default=str(ROOT / "conf/local.yaml"), help="the engine settings of this config")
    parser.add_argument("--only", choices=["dtype"], help="only the dtype comparison (needs --model only)")
    args = parser.parse_args()
    engine = dataclasses.replace(load_pipeline_config(args.config).engine, partitions=None, commit_rows=20000)
    if args.only == "dtype":
        if not (Path(args.model) / "config.json").is_file():
            sys.exit(f"no model at {args.model}: pass --model")
        dtype_comparison(args.model, engine, sample_segments(args.segments), SamplingConfig(0.7, 0.9, args.max_tokens))
        return
    for path in (args.model, args.judge):
        if not (Path(path) / "config.json").is_file():
            sys.exit(f"no model at {path}: run `make demo` first, or pass --model/--judge")
    texts = sample_segments(args.segments)
    print(f"{len(texts)} segments; model {args.model}; judge {args.judge}")
    spark_vs_bare(args.model, engine, texts, SamplingConfig(0.7, 0.9, args.max_tokens))
    vllm_vs_hf(args.model, engine, texts[: max(16, len(texts) // 5)], args.max_tokens)
    judge_prefix_caching(args.judge, engine, texts)


if __name__ == "__main__":
    main()
