"""``engine.name: openai`` against a fault-injecting endpoint on 127.0.0.1 (``tests.openai_fault_server``): 429s with
Retry-After, 500s, slow answers and dropped connections are retried; what still fails is an error row saying why;
every row is written once, in order, each request carries its row's seed; a dead endpoint fails the batch; the
API key goes into the Authorization header and nowhere else."""

from __future__ import annotations

import dataclasses
import logging
import time

import pandas as pd
import pytest

from tests.openai_fault_server import FaultyEndpoint, by_seed
from udfs.config import ConfigError, build, to_dict
from udfs.engine import EngineConfig, SamplingConfig, engine_args
from udfs.ids import seed_from_id
from udfs.likelihood import likelihood_batch
from udfs.llm_rows import augment_batch, judge_batch
from udfs.openai_client import EndpointConfig, EndpointRejected, EndpointUnavailable, OpenAIClient
from udfs.openai_engine import OpenAIEngine
from udfs.prompts import PromptTemplate
from udfs.redact import redact

TEMPLATE = PromptTemplate("b_v1", "Write the instruction this text answers:\n{output}")
JUDGE = PromptTemplate("j_v1", "Rate the answer to {instruction}:\n{answer}\nEnd with Score: N")
SAMPLING = SamplingConfig(temperature=0.7, top_p=0.9, max_tokens=16)
KEY = "sk-test" + "Q7f3" * 8  # the shape redact knows as an OpenAI key
FAST = dict(connect_timeout_seconds=2, request_timeout_seconds=0.5, max_retries=3, backoff_seconds=0.01)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    from tests.tokenizer_families import build_tokenizer

    path = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer("sentencepiece").save_pretrained(path)
    return str(path)


def engine_for(url: str, model: str, **settings) -> OpenAIEngine:
    cfg = EngineConfig(name="openai", max_model_len=512, endpoint=EndpointConfig(base_url=url, **settings))
    return OpenAIEngine(engine_args(model, cfg))


def segments(n: int) -> pd.DataFrame:
    ids = [f"{i:08x}" + "a" * 24 for i in range(1, n + 1)]
    return pd.DataFrame(
        {
            "generation_id": ids,
            "segment_id": [f"s{i}" for i in range(n)],
            "text": [f"Text number {i}." for i in range(n)],
        }
    )


def augment(engine: OpenAIEngine, batch: pd.DataFrame) -> pd.DataFrame:
    return augment_batch(engine, batch, "m", TEMPLATE, SAMPLING, EngineConfig(max_model_len=512), 2000)


def test_faults_are_retried_and_what_still_fails_is_an_error_row(tokenizer_dir):
    batch = segments(12)
    seeds = [seed_from_id(g) for g in batch["generation_id"]]
    retries = FAST["max_retries"]
    # The first four rows (as many as are in flight at once) are answered first: the batch is then known to
    # reach a live endpoint, and a request that fails for good is its row's error (the batch rule).
    faults = {
        seeds[4]: ["429", "500"],
        seeds[5]: ["drop"],
        seeds[6]: ["slow"],
        seeds[7]: ["503"] * (retries + 1),  # still failing after the last retry
        seeds[8]: ["400"],  # about this request: not retried
        seeds[9]: ["drop"] * (retries + 1),
        seeds[10]: ["slow"] * (retries + 1),
    }
    with FaultyEndpoint() as clean:
        expected = augment(engine_for(clean.url, tokenizer_dir, **FAST), batch)
    with FaultyEndpoint(by_seed(faults), slow_seconds=1.5) as endpoint:
        engine = engine_for(endpoint.url, tokenizer_dir, max_concurrency=4, **FAST)
        rows = augment(engine, batch)
    assert list(rows["generation_id"]) == list(batch["generation_id"])  # every row once, in order
    errors = dict(zip(rows["seed"], rows["reason"].where(rows["status"] == "error")))
    assert {s: r for s, r in errors.items() if isinstance(r, str)} == {
        seeds[7]: "endpoint_http:503",
        seeds[8]: "endpoint_http:400",
        seeds[9]: "endpoint_connection_error",
        seeds[10]: "endpoint_timeout",
    }
    fine = rows["status"] != "error"
    assert fine.sum() == 8
    # a retried request gets the very text a clean endpoint gives: the seed goes with every try
    assert list(rows[fine]["raw_text"]) == list(expected[fine]["raw_text"])
    assert (expected["status"] != "error").all()
    sent = [s.body["seed"] for s in endpoint.seen]
    assert set(sent) == set(seeds) and all(isinstance(s.body["prompt"], list) for s in endpoint.seen)
    tries = {seed: sent.count(seed) for seed in seeds}
    assert [tries[s] for s in seeds[4:11]] == [3, 2, 2, retries + 1, 1, retries + 1, retries + 1]
    assert all(tries[s] == 1 for s in seeds[:4] + seeds[11:])


def test_retry_after_is_honoured_and_backoff_is_jittered_exponential():
    waits: list[float] = []
    plan = by_seed({1: ["429", "429"], 2: ["500", "500", "500", "500"]})
    with FaultyEndpoint(plan, retry_after="7") as endpoint:
        client = OpenAIClient(EndpointConfig(endpoint.url, max_retries=4, backoff_seconds=1.0), sleep=waits.append)
        client.post("/completions", {"prompt": "a", "seed": 1})
        assert waits == [7.0, 7.0]  # the server's word, not our backoff
        waits.clear()
        client.post("/completions", {"prompt": "a", "seed": 2})
    assert len(waits) == 4 and all(0 <= w <= cap for w, cap in zip(waits, [1, 2, 4, 8]))


def test_a_dead_endpoint_fails_the_batch_instead_of_writing_error_rows(tokenizer_dir):
    with FaultyEndpoint(lambda body, attempt: "drop") as endpoint:
        engine = engine_for(endpoint.url, tokenizer_dir, max_concurrency=4, **FAST)
        start = time.monotonic()
        with pytest.raises(
            EndpointUnavailable, match="no request of this batch was answered: endpoint_connection_error"
        ):
            augment(engine, segments(40))
        # the first request to fail for good stops the others: not 40 rows' worth of retries
        assert len(endpoint.seen) < 4 * (FAST["max_retries"] + 1) + 4
    assert time.monotonic() - start < 5
    with FaultyEndpoint() as gone:
        pass
    with pytest.raises(EndpointUnavailable, match="endpoint_connection_error"):  # nothing listens there any more
        augment(engine_for(gone.url, tokenizer_dir, **FAST), segments(3))


def test_the_key_is_sent_and_never_shown(tokenizer_dir, monkeypatch, caplog):
    monkeypatch.setenv("TEST_ENDPOINT_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    plan = by_seed({seed_from_id(segments(1)["generation_id"][0]): ["500"] * 9})
    with FaultyEndpoint(plan) as endpoint:
        engine = engine_for(endpoint.url, tokenizer_dir, api_key_env="TEST_ENDPOINT_KEY", **FAST)
        rows = augment(engine, segments(3))
        assert list(rows["reason"])[0] == "endpoint_http:500" and (rows["status"] != "error").sum() == 2
        assert {s.authorization for s in endpoint.seen} == {f"Bearer {KEY}"}
    with FaultyEndpoint(lambda body, attempt: "401") as endpoint:
        engine = engine_for(endpoint.url, tokenizer_dir, api_key_env="TEST_ENDPOINT_KEY", **FAST)
        with pytest.raises(EndpointRejected, match="HTTP 401") as rejected:  # a wrong key: no row would pass
            augment(engine, segments(3))
    assert len(endpoint.seen) == 1 or all(s.fault == "401" for s in endpoint.seen)
    shown = [str(rejected.value), repr(rejected.value), caplog.text, str(redact(to_dict(engine_cfg_with_key())))]
    assert "injected 500 for Bearer ***" in caplog.text  # the server's echo, masked
    assert not [text for text in shown if KEY in text or KEY[10:30] in text]


def engine_cfg_with_key() -> EngineConfig:
    return build(EngineConfig, {"name": "openai", "endpoint": {"base_url": "http://h/v1", "api_key_env": "K"}})


def test_endpoint_settings_are_validated_naming_the_key(tokenizer_dir, monkeypatch):
    with pytest.raises(ConfigError, match="endpoint.base_url is required with name: openai"):
        build(EngineConfig, {"name": "openai"}, "engine")
    with pytest.raises(ConfigError, match=r"unknown config key\(s\): engine.endpoint.retries"):
        build(EngineConfig, {"name": "openai", "endpoint": {"base_url": "http://h/v1", "retries": 3}}, "engine")
    with pytest.raises(ConfigError, match="endpoint.api_key_env must be the NAME") as pasted:
        build(EngineConfig, {"endpoint": {"api_key_env": KEY.replace("-", "=")}}, "engine")
    assert KEY[10:30] not in str(pasted.value)
    with pytest.raises(ConfigError, match="endpoint.max_concurrency must be >= 1"):
        build(EngineConfig, {"endpoint": {"max_concurrency": 0}}, "engine")
    monkeypatch.delenv("NO_SUCH_KEY_VARIABLE", raising=False)
    with pytest.raises(ValueError, match="environment variable NO_SUCH_KEY_VARIABLE is not set"):
        OpenAIClient(EndpointConfig("http://127.0.0.1:9/v1", api_key_env="NO_SUCH_KEY_VARIABLE"))
    with pytest.raises(ValueError, match="engine.endpoint.tokenizer: /no/such/model is not a directory"):
        engine_for("http://127.0.0.1:9/v1", "/no/such/model")
    assert engine_for("http://127.0.0.1:9/v1", "/no/such/model", tokenizer=tokenizer_dir).model == "/no/such/model"


def judge_rows(engine: OpenAIEngine, n: int) -> pd.DataFrame:
    ids = [f"{i:08x}" + "b" * 24 for i in range(1, n + 1)]
    batch = pd.DataFrame(
        {
            "score_id": ids,
            "generation_id": ids,
            "segment_id": ids,
            "instruction": [f"How do I sort list {i}?" for i in range(n)],
            "text": [f"Use sorted(xs) {i} times." for i in range(n)],
        }
    )
    return judge_batch(engine, batch, "j", JUDGE, SamplingConfig(0.0, 1.0, 16), EngineConfig(max_model_len=512))


def test_expected_scores_from_the_endpoint_or_the_reason_there_are_none(tokenizer_dir):
    with FaultyEndpoint() as endpoint:
        scored = judge_rows(engine_for(endpoint.url, tokenizer_dir, **FAST), 4)
        asks = [s.body for s in endpoint.seen if "logprob_token_ids" in s.body]
    assert (scored["status"] == "ok").all() and scored["expected_score_failure"].isna().all()
    assert scored["expected_score"].between(1, 5).all() and scored["expected_score"].nunique() > 1
    assert asks and all(a["return_tokens_as_token_ids"] and a["temperature"] == 0.0 for a in asks)
    with FaultyEndpoint(logprobs=False) as endpoint:  # a provider that answers without logprobs
        blind = judge_rows(engine_for(endpoint.url, tokenizer_dir, **FAST), 4)
    assert (blind["status"] == "ok").all() and blind["expected_score"].isna().all()
    assert set(blind["expected_score_failure"]) == {"no_logprobs_from_endpoint"}
    assert list(blind["raw_text"]) == list(scored["raw_text"])
    # A judge request that fails for good is an error row (the last row: rows are sent in order, one at a time,
    # so the batch has been answered before); a logprob request that does is that row's expected-score failure.
    plan = DoomSecondScoredPrompt(seed_from_id(f"{4:08x}" + "b" * 24))
    with FaultyEndpoint(plan) as endpoint:
        mixed = judge_rows(engine_for(endpoint.url, tokenizer_dir, max_concurrency=1, **FAST), 4)
    assert list(mixed["status"]) == ["ok", "ok", "ok", "error"] and mixed["reason"][3] == "endpoint_http:503"
    assert list(mixed["expected_score_failure"][:3]) == [None, "endpoint_http:503", None]
    assert mixed["expected_score"][[0, 2]].between(1, 5).all()


class DoomSecondScoredPrompt:
    """A plan: 503 for every try of the generation with ``seed`` and of the logprob requests for the second
    judge prompt that asks for them."""

    def __init__(self, seed: int):
        self.seed, self.roots = seed, []

    def __call__(self, body: dict, attempt: int) -> str | None:
        if body.get("seed") == self.seed:
            return "503"
        if "logprob_token_ids" not in body:
            return None
        # Asked depth by depth, a judge prompt comes first alone, then followed by a token or two of a rating.
        prompt = body["prompt"]
        root = next((r for r in self.roots if prompt[: len(r)] == r), None)
        if root is None:
            self.roots.append(prompt)
            root = prompt
        return "503" if len(self.roots) > 1 and root == self.roots[1] else None


def test_likelihoods_from_prompt_logprobs_or_an_error_row(tokenizer_dir):
    batch = pd.DataFrame(
        {
            "likelihood_id": ["l1", "l2"],
            "generation_id": ["g1", "g2"],
            "segment_id": ["s1", "s2"],
            "instruction": ["How do I sort?", "Why?"],
            "text": ["Use sorted(xs).", "Because it works."],
        }
    )
    with FaultyEndpoint() as endpoint:
        rows = likelihood_batch(engine_for(endpoint.url, tokenizer_dir, **FAST), batch, "s", "pool")
        asks = [s.body for s in endpoint.seen]
    assert (rows["status"] == "ok").all() and (rows["conditional_loss"] > 0).all()
    assert len(asks) == 4 and all(a["prompt_logprobs"] == 0 and a["max_tokens"] == 1 for a in asks)
    with FaultyEndpoint(logprobs=False) as endpoint:
        blind = likelihood_batch(engine_for(endpoint.url, tokenizer_dir, **FAST), batch, "s", "pool")
    assert list(blind["status"]) == ["error", "error"] and set(blind["reason"]) == {"no_logprobs_from_endpoint"}


def test_engine_args_carry_the_endpoint_so_a_new_endpoint_is_a_new_engine():
    cfg = EngineConfig(name="openai", endpoint=EndpointConfig("http://a/v1"))
    other = dataclasses.replace(cfg, endpoint=EndpointConfig("http://b/v1"))
    assert engine_args("m", cfg) != engine_args("m", other)
    assert "endpoint" not in engine_args("m", EngineConfig())
