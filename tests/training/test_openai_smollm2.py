"""``engine.name: openai`` against a real ``vllm serve`` of SmolLM2-135M-Instruct on CPU, behind the fault-injecting
proxy of ``tests.openai_fault_server``: the rows equal the in-process ``VLLMEngine``'s on the same inputs (greedy
instructions and judge text token for token, expected scores and likelihoods within float tolerance) although
requests were refused, failed and dropped on the way; every row is written once.

The server runs with the CPU settings of the in-process engine (``ENGINE``: float32, a 64 MiB KV cache, eager,
no chunked prefill). Starting it takes ~1-2 min here (imports and the engine-core process), hence ``slow``."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest

from tests.conftest import ROOT
from tests.openai_fault_server import FaultyEndpoint
from tests.training.test_smollm2_vllm import APPETITE, COLORSYS, ENGINE, PAIRS, REWRITE_PAIRS
from udfs.engine import SamplingConfig, engine_args
from udfs.ids import seed_from_id
from udfs.likelihood import likelihood_batch
from udfs.llm_rows import augment_batch, judge_batch
from udfs.openai_client import EndpointConfig, OpenAIClient
from udfs.openai_engine import OpenAIEngine
from udfs.prompts import PromptTemplate

pytestmark = pytest.mark.slow

GREEDY = SamplingConfig(temperature=0.0, top_p=1.0, max_tokens=32)
SEGMENTS = [COLORSYS, APPETITE, "Lists keep their order; sets do not.", APPETITE[:250]]


def serve_command(model: str, port: int) -> list[str]:
    """``vllm serve`` with the in-process engine's CPU settings (``ENGINE``)."""
    return [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        model,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        ENGINE.dtype,
        "--max-model-len",
        str(ENGINE.max_model_len),
        "--kv-cache-memory-bytes",
        str(ENGINE.kv_cache_memory_bytes),
        "--enforce-eager",
        "--no-enable-chunked-prefill",  # vLLM-CPU cannot rewind seeded sampling after a partial prefill
        "--max-num-seqs",
        "16",
        "--disable-log-stats",
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def batches():
    ids = [f"{i + 1:08x}" + "c" * 24 for i in range(len(SEGMENTS))]
    segments = pd.DataFrame({"generation_id": ids, "segment_id": ids, "text": SEGMENTS})
    pairs = REWRITE_PAIRS
    judged = pd.DataFrame(
        {
            "score_id": ids[: len(pairs)],
            "generation_id": ids[: len(pairs)],
            "segment_id": ids[: len(pairs)],
            "instruction": [p[0] for p in pairs],
            "text": [p[1] for p in pairs],
        }
    )
    scored = judged.rename(columns={"score_id": "likelihood_id"}).assign(
        instruction=[p[0] for p in PAIRS] + [REWRITE_PAIRS[2][0]], text=[p[1] for p in PAIRS] + [REWRITE_PAIRS[2][1]]
    )
    return segments, judged, scored


def rows(engine) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    segments, judged, scored = batches()
    backward = PromptTemplate.load(ROOT / "conf/prompts/backtranslate_v1.txt")
    judge = PromptTemplate.load(ROOT / "conf/prompts/score_v1.txt")
    return (
        augment_batch(engine, segments, "smollm2", backward, GREEDY, ENGINE, 2000),
        judge_batch(engine, judged, "smollm2", judge, SamplingConfig(0.0, 1.0, 48), ENGINE),
        likelihood_batch(engine, scored, "smollm2", "pool"),
    )


def test_a_served_smollm2_behind_faults_writes_the_in_process_engines_rows(smollm2, tmp_path):
    pytest.importorskip("vllm")
    from udfs.vllm_engine import VLLMEngine

    local = VLLMEngine(engine_args(str(smollm2), ENGINE))
    try:
        want = rows(local)
    finally:
        local.close()
        del local

    port = free_port()
    log = open(tmp_path / "vllm-serve.log", "wb")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        serve_command(str(smollm2), port), stdout=log, stderr=log, env=env, start_new_session=True
    )
    try:
        upstream = f"http://127.0.0.1:{port}"
        probe = OpenAIClient(EndpointConfig(f"{upstream}/v1"))
        deadline = time.monotonic() + 400
        while not probe.healthy():
            assert server.poll() is None, (tmp_path / "vllm-serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "vllm serve did not become healthy"
            time.sleep(1)
        seeds = [seed_from_id(g) for g in batches()[0]["generation_id"]]
        faulty = {seeds[1]: ["429", "500"], seeds[2]: ["drop", "503"], seeds[3]: ["drop"]}

        def plan(body: dict, attempt: int) -> str | None:
            if "seed" in body and body.get("max_tokens") == GREEDY.max_tokens:  # an augment request
                return (faulty.get(body["seed"], []) + [None] * 3)[attempt]
            return "503" if attempt == 0 and body["prompt"][-1] % 3 == 0 else None  # judge, logprob, likelihood

        with FaultyEndpoint(plan, upstream=upstream) as proxy:
            endpoint = EndpointConfig(proxy.url, request_timeout_seconds=120, backoff_seconds=0.05)
            remote = OpenAIEngine(
                engine_args(str(smollm2), dataclasses.replace(ENGINE, name="openai", endpoint=endpoint))
            )
            got = rows(remote)
            faults = proxy.faults()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()

    assert {"429", "500", "503", "drop"} <= set(faults) and remote.client.retries == len(faults)
    (aug_want, judge_want, lik_want), (aug_got, judge_got, lik_got) = want, got
    for a, b, key in (
        (aug_want, aug_got, "generation_id"),
        (judge_want, judge_got, "score_id"),
        (lik_want, lik_got, "likelihood_id"),
    ):
        assert list(b[key]) == list(a[key])  # every row once, in order
        assert list(b["status"]) == list(a["status"]) and list(b["reason"]) == list(a["reason"])
    assert aug_got["raw_text"].str.len().gt(0).all()  # kept or dropped, every row's text was generated
    assert list(aug_got["raw_text"]) == list(aug_want["raw_text"])  # greedy: token for token
    assert list(aug_got["prompt_tokens"]) == list(aug_want["prompt_tokens"])
    assert list(judge_got["raw_text"]) == list(judge_want["raw_text"])
    assert judge_got["expected_score_failure"].isna().all()
    assert list(judge_got["expected_score"]) == pytest.approx(list(judge_want["expected_score"]), abs=1e-3)
    assert list(lik_got["conditional_loss"]) == pytest.approx(list(lik_want["conditional_loss"]), abs=1e-3)
    assert list(lik_got["ifd"]) == pytest.approx(list(lik_want["ifd"]), abs=1e-3)
