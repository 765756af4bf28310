"""Unit tests for udfs.minhash: determinism, the Jaccard estimate, band keys, the LSH S-curve and the config."""

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.config import load_pipeline_config
from tests.conftest import ROOT
from udfs.config import ConfigError
from udfs.minhash import DedupConfig, band_keys, estimated_jaccard, minhash, shingle_hashes, signature

CFG = DedupConfig()
TEXT = "The quick brown fox jumps over the lazy dog, then naps under the old oak tree until sunset."


def random_sets(rng, common: int, only_a: int, only_b: int) -> tuple[np.ndarray, np.ndarray]:
    """Two sets of distinct 64-bit shingle hashes with the given overlap (true Jaccard = common / union)."""
    values = rng.choice(2**62, size=common + only_a + only_b, replace=False).astype(np.uint64)
    shared, a, b = np.split(values, [common, common + only_a])
    return np.concatenate([shared, a]), np.concatenate([shared, b])


@given(st.text(max_size=300))
def test_same_text_gives_the_same_signature(text):
    first, second = minhash(text, CFG), minhash(text, CFG)
    if first is None:
        assert second is None and not shingle_hashes(text, CFG.ngram).size
    else:
        assert first.signature.dtype == np.uint32 and len(first.signature) == CFG.num_perm
        assert np.array_equal(first.signature, second.signature) and np.array_equal(first.band_keys, second.band_keys)


def test_signature_ignores_case_punctuation_and_spacing():
    variant = "the QUICK brown fox -- jumps over the lazy dog then naps\n\nunder the old oak tree until SUNSET!"
    assert np.array_equal(minhash(TEXT, CFG).signature, minhash(variant, CFG).signature)


def test_signature_is_the_same_in_another_process():
    """Stored signatures are compared across runs: nothing may depend on PYTHONHASHSEED or process state."""
    code = f"from udfs.minhash import DedupConfig, minhash; print(minhash({TEXT!r}, DedupConfig()).band_keys.tolist())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PYTHONPATH": str(ROOT)},
    )
    assert out.stdout.strip() == str(minhash(TEXT, CFG).band_keys.tolist())


def test_word_order_and_seed_matter():
    reversed_words = " ".join(reversed(TEXT.split()))
    assert not np.array_equal(minhash(TEXT, CFG).signature, minhash(reversed_words, CFG).signature)
    assert not np.array_equal(minhash(TEXT, CFG).signature, minhash(TEXT, DedupConfig(seed=2)).signature)


def test_short_and_empty_texts():
    assert shingle_hashes("two words", 5).size == 1  # fewer words than n: the whole text is one shingle
    assert shingle_hashes("one two three four five six", 5).size == 2
    assert minhash("", CFG) is None and minhash("-- ... !!", CFG) is None  # no words: no signature


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 400), st.integers(0, 300), st.integers(0, 300))
def test_estimate_is_close_to_the_true_jaccard(seed, common, only_a, only_b):
    a, b = random_sets(np.random.default_rng(seed), common, only_a, only_b)
    true = common / (common + only_a + only_b)
    est = estimated_jaccard(signature(a, CFG.num_perm, CFG.seed), signature(b, CFG.num_perm, CFG.seed))
    # Each position agrees with probability J: 5 standard deviations of the binomial mean, plus slack for J near 0 or 1.
    assert abs(est - true) <= 5 * math.sqrt(true * (1 - true) / CFG.num_perm) + 0.03


def test_band_keys_follow_band_values():
    sig = np.arange(112, dtype=np.uint32)
    keys = band_keys(sig, 14, 8)
    assert keys.dtype == np.int64 and len(set(keys.tolist())) == 14  # same values in another band: another key
    changed = sig.copy()
    changed[8 * 3 + 5] += 1  # one value of band 3
    differs = band_keys(changed, 14, 8) != keys
    assert differs.tolist() == [i == 3 for i in range(14)]


def test_band_collisions_follow_the_lsh_s_curve():
    """Pairs well above the ~0.72 threshold share a band key, pairs well below rarely do."""
    rng = np.random.default_rng(0)

    def collision_rate(common, differ):
        hits = 0
        for _ in range(200):
            a, b = random_sets(rng, common, differ, differ)
            ka = band_keys(signature(a, CFG.num_perm, CFG.seed), CFG.bands, CFG.rows)
            kb = band_keys(signature(b, CFG.num_perm, CFG.seed), CFG.bands, CFG.rows)
            hits += bool(set(ka.tolist()) & set(kb.tolist()))
        return hits / 200

    assert collision_rate(180, 10) >= 0.97  # J = 0.9: expected 1.00
    assert collision_rate(100, 50) <= 0.15  # J = 0.5: expected 0.05
    assert abs(CFG.lsh_threshold - 0.72) < 0.01


@pytest.mark.parametrize(
    "override, message",
    [
        ("dedup.bands=20", r"dedup: bands \* rows \(20 \* 8\) must be <= num_perm \(112\)"),
        ("dedup.min_similarity=1.5", r"dedup: min_similarity must be in \[0, 1\]"),
        ("dedup.ngram=0", r"dedup: ngram must be >= 1"),
        ("dedup.band=3", r"unknown config key\(s\): dedup\.band\b"),
    ],
)
def test_bad_dedup_config_is_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_pipeline_config(str(ROOT / "conf/local.yaml"), [override])


def test_scheme_names_what_a_signature_depends_on():
    assert CFG.scheme == "minhash_v1/5gram/112perm/seed1/14x8"
    assert DedupConfig(num_perm=128, bands=16).scheme != CFG.scheme
    assert DedupConfig(min_similarity=0.9).scheme == CFG.scheme  # the threshold is applied at join time only
