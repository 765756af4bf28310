"""The dtype and the other machine-dependent settings are decided from the machine's facts, never from a config
tuned on another machine: each case here passes its own facts, whatever CPU runs the test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.config import load_pipeline_config
from jobs.run_summary import dtype_line, format_run
from jobs.session import local_defaults
from udfs.config import ConfigError
from udfs.engine import CPU_DEFAULT_KV_BYTES, EngineConfig, cpu_memory_plan
from udfs.hardware import Device, choose_dtype, cpu_flags

CONF = Path(__file__).resolve().parents[2] / "conf"
# The flags lines of /proc/cpuinfo (shortened) on an AVX2-only AMD EPYC and on a Sapphire Rapids Xeon.
AVX2_CPUINFO = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 ssse3 fma avx avx2 bmi2 sha_ni\n"
BF16_CPUINFO = "processor\t: 0\nflags\t\t: fpu avx avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
AVX2 = Device("cpu", cpu_flags(AVX2_CPUINFO))
AVX512_BF16 = Device("cpu", cpu_flags(BF16_CPUINFO))


def test_auto_is_float32_on_a_cpu_without_native_bf16_and_bf16_where_it_has_it():
    assert "avx2" in AVX2.cpu_flags and "avx512_bf16" not in AVX2.cpu_flags
    avx2 = choose_dtype("auto", AVX2)
    assert avx2.dtype == "float32"
    assert avx2.describe() == "dtype float32: CPU has no native bf16 (amx_bf16/avx512_bf16 absent)"
    assert choose_dtype("auto", AVX512_BF16).describe() == "dtype bfloat16: CPU has native bf16 (amx_bf16/avx512_bf16)"
    assert choose_dtype("auto", Device("cpu", frozenset({"avx512f", "avx512_bf16"}))).dtype == "bfloat16"
    assert choose_dtype("auto", Device("cpu", frozenset({"amx_bf16"}))).dtype == "bfloat16"
    assert choose_dtype("auto", Device("cpu", frozenset({"avx512f", "avx512_vnni"}))).dtype == "float32"
    assert choose_dtype("auto", Device("cpu", cpu_flags("no flags here"))).dtype == "float32"


def test_auto_on_a_gpu_follows_its_compute_capability():
    a100 = choose_dtype("auto", Device("cuda", cuda_name="A100", cuda_capability=(8, 0)))
    assert a100.dtype == "bfloat16" and "A100 (compute capability 8.0) has native bf16" in a100.reason
    assert choose_dtype("auto", Device("cuda", cuda_capability=(9, 0))).dtype == "bfloat16"
    t4 = choose_dtype("auto", Device("cuda", cuda_name="T4", cuda_capability=(7, 5)))
    assert t4.dtype == "float16" and "no bf16" in t4.reason
    # A GPU's choice does not depend on the host CPU's flags.
    assert choose_dtype("auto", Device("cuda", AVX512_BF16.cpu_flags, "V100", (7, 0))).dtype == "float16"


def test_a_dtype_set_in_the_config_is_kept_and_emulated_bf16_is_named():
    forced = choose_dtype("bfloat16", AVX2)
    assert forced.dtype == "bfloat16" and "no native bf16: emulated" in forced.reason
    assert choose_dtype("bfloat16", AVX512_BF16).describe() == "dtype bfloat16: set in the config"
    assert choose_dtype("float32", AVX512_BF16).dtype == "float32"
    with pytest.raises(ValueError, match="dtype must be one of auto, bfloat16, float16, float32, got 'bf16'"):
        choose_dtype("bf16", AVX2)


def test_a_bad_engine_dtype_is_an_error_naming_the_key_and_auto_is_the_default():
    with pytest.raises(ConfigError, match=r"engine\.dtype: must be one of 'auto', 'bfloat16', 'float16', 'float32'"):
        load_pipeline_config(str(CONF / "local.yaml"), ["engine.dtype=bf16"])
    assert load_pipeline_config(str(CONF / "local.yaml")).engine.dtype == "auto"
    assert EngineConfig().dtype == "auto"


def test_the_default_kv_cache_holds_the_same_tokens_in_float32_and_shrinks_to_fit(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 1000)
    (tmp_path / "config.json").write_text(json.dumps({"dtype": "bfloat16"}))
    assert cpu_memory_plan(str(tmp_path), None, "bfloat16", 8 << 30) == CPU_DEFAULT_KV_BYTES
    assert cpu_memory_plan(str(tmp_path), None, "float32", 8 << 30) == 2 * CPU_DEFAULT_KV_BYTES
    # 1.5 GiB free: the float32 default (2 GiB) would not fit, so it takes half of what the weights leave.
    assert cpu_memory_plan(str(tmp_path), None, "float32", 3 << 29) == ((3 << 29) - 2000) // 2
    # Weights stored in float32 and served in bfloat16 take half their file size.
    (tmp_path / "config.json").write_text(json.dumps({"torch_dtype": "float32"}))
    assert cpu_memory_plan(str(tmp_path), 4096, "bfloat16", 4096 + 500) == 4096
    with pytest.raises(ValueError, match="in float32"):
        cpu_memory_plan(str(tmp_path), 4096, "float32", 4096 + 500)


def test_the_run_summary_says_what_dtype_was_chosen_and_why():
    line = dtype_line("auto", "local[*]", AVX2)
    assert line == "engine dtype float32: CPU has no native bf16 (amx_bf16/avx512_bf16 absent)"
    assert dtype_line("auto", "local[2]", AVX512_BF16).startswith("engine dtype bfloat16: CPU has native bf16")
    assert "each executor" in dtype_line("auto", "spark://head:7077", AVX2)  # the driver's CPU says nothing there
    assert dtype_line("float32", "yarn", AVX2) == "engine dtype float32: set in the config"
    summary = {"run_id": "r1", "stages": [], "engine_dtype": line}
    assert line in format_run(summary, [], {"tables": "/t"}, "next").splitlines()


def test_a_local_master_gives_the_llm_task_every_core_of_this_machine():
    assert local_defaults("local[*]", cores=6) == {"spark.executorEnv.OMP_NUM_THREADS": "6"}
    assert local_defaults("spark://head:7077", cores=6) == {}
    assert int(local_defaults("local[2]")["spark.executorEnv.OMP_NUM_THREADS"]) >= 1
    assert "spark.executorEnv.OMP_NUM_THREADS" not in load_pipeline_config(str(CONF / "local.yaml")).spark.conf
