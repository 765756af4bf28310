"""Credentials never reach logs, tables or reports: ``udfs.redact`` masks them by key name and by shape."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from udfs.redact import MASK, is_sensitive_key, redact, redact_text


def test_credential_keys_are_masked_by_word_not_substring():
    for key in (
        "spark.hadoop.fs.s3a.secret.key",
        "HF_TOKEN",
        "access_token",
        "apiKey",
        "db-password",
        "credentials",
        "fs.azure.sas.container.account",
        "aws_secret_access_key",
    ):
        assert is_sensitive_key(key), key
    for key in (
        "max_tokens",
        "prompt_tokens",
        "tokens",
        "monkey",
        "keyword",
        "passport",
        "score_id",
        "kv_cache_memory_bytes",
    ):
        assert not is_sensitive_key(key), key


def test_nested_config_keeps_everything_but_the_secrets():
    config = {
        "spark": {"conf": {"spark.hadoop.fs.s3a.secret.key": "XYZ", "spark.ui.enabled": "false"}},
        "augment": {"sampling": {"max_tokens": 64}},
        "hf_token": None,
        "tracking": {"password": ""},
        "models": {"train_overrides": ["optim.max_steps=12", "tracking.token=abc123"]},
    }
    out = redact(config)
    assert out["spark"]["conf"] == {"spark.hadoop.fs.s3a.secret.key": MASK, "spark.ui.enabled": "false"}
    assert out["augment"] == {"sampling": {"max_tokens": 64}}
    assert out["hf_token"] is None and out["tracking"] == {"password": ""}  # nothing to hide: kept as is
    assert out["models"]["train_overrides"] == ["optim.max_steps=12", f"tracking.token={MASK}"]
    assert config["spark"]["conf"]["spark.hadoop.fs.s3a.secret.key"] == "XYZ"  # a copy: the input is untouched


def test_values_shaped_like_credentials_are_masked_anywhere():
    cases = {
        "s3a://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI@bucket/path": f"s3a://{MASK}@bucket/path",
        "key id AKIAIOSFODNN7EXAMPLE here": f"key id {MASK} here",
        "Authorization: Bearer abcdefghijklmnop": f"Authorization: Bearer {MASK}",
        "token hf_abcdefghijklmnopqrstuvwxyz123456": f"token {MASK}",
        "sk-proj-abcdefghijklmnopqrstuvwx": MASK,
        "ghp_" + "a" * 36: MASK,
        "dapi" + "0123456789abcdef" * 2: MASK,
        "--set spark.conf.spark.hadoop.fs.s3a.secret.key=XYZ --set x=1": (
            f"--set spark.conf.spark.hadoop.fs.s3a.secret.key={MASK} --set x=1"
        ),
        "password='hunter two' user=bob": f"password={MASK} user=bob",
    }
    for text, expected in cases.items():
        assert redact_text(text) == expected, text


def test_our_ids_hashes_and_paths_are_not_credentials():
    kept = [
        "0f3a" * 8,
        "ab" * 32,
        "m1-0123456789ab",
        "s3://bucket/humpback/tables",
        "score: 5",
        "max_tokens=64",
        "https://docs.python.org/3/library/bisect.html",
    ]
    assert [redact_text(t) for t in kept] == kept


SECRET = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="\"',;&"), min_size=1, max_size=30
)


@given(secret=SECRET, noise=st.text(max_size=40), key=st.sampled_from(["secret", "api_key", "HF_TOKEN", "db.password"]))
def test_a_planted_secret_never_survives_in_json(secret, noise, key):
    data = {"config": {key: secret, "note": noise}, "argv": [f"{key}={secret}"]}
    out = redact(data)
    assert out["config"][key] == MASK and out["argv"] == [f"{key}={MASK}"]
    assert redact(out) == out  # idempotent: masking twice changes nothing


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(alphabet="abcdefgh _.-=:/", max_size=20),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.sampled_from(["a", "b_c", "max_tokens"]), children, max_size=3)
        ),
    )
)
def test_data_without_credentials_is_unchanged(data):
    assert json.dumps(redact(data)) == json.dumps(data)
