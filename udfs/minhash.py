"""MinHash signatures and LSH band keys of segment text, for near-duplicate detection (pure: numpy only).

A segment's *shingles* are the word n-grams of its dedup-normalised text (``udfs.text.normalize_for_dedup``).
Its signature holds, for each of ``num_perm`` hash functions, the minimum hash over its shingles; two
signatures agree at a position with probability equal to the Jaccard similarity of the shingle sets, so the
fraction of agreeing positions estimates it (``estimated_jaccard``). The first ``bands * rows`` positions are
cut into ``bands`` bands of ``rows`` values and each band is hashed to one 64-bit *band key*: two segments
share some band key with probability ``1 - (1 - J**rows)**bands``, an S-curve that is 0.5 near
``(1 / bands) ** (1 / rows)``. With datatrove's defaults (5-grams, 14 bands x 8 rows) that is J ~ 0.72:
pairs at J = 0.9 collide almost surely, pairs at J = 0.5 about 5 % of the time. ``jobs.stages.segment`` confirms a
colliding pair only when its estimated Jaccard reaches ``min_similarity``, which removes most of those.

Every hash here is defined in this module (CRC-32 of each word, a polynomial over 5 word hashes, 64-bit
multiply-add-shift permutations whose parameters come from BLAKE2b of the seed), so signatures stored by
earlier runs stay comparable across library upgrades. A change to them ships as a new ``MINHASH_VERSION``;
``DedupConfig.scheme`` names everything a stored signature depends on.

Chosen over ``datasketch`` and ``rensa`` on measured speed and stability: see ``benchmarks/minhash_throughput.py``.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from udfs.text import normalize_for_dedup

MINHASH_VERSION = "minhash_v1"

_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant (golden ratio) for polynomial hashing
_SHIFT = np.uint64(32)


@dataclass(frozen=True)
class DedupConfig:
    """Exact and near-duplicate detection over the segments table (the ``dedup:`` config section).

    Exact duplicates (same normalised-text hash) are always dropped. Near duplicates: defaults follow
    datatrove (5-grams, 14 bands x 8 rows: LSH threshold ~0.72); ``min_similarity`` is ours.
    """

    near_duplicates: bool = True  # false: exact duplicates only
    ngram: int = 5  # words per shingle
    num_perm: int = 112  # signature length; bands * rows of it are banded, all of it estimates similarity
    bands: int = 14  # LSH bands; a pair sharing one band's rows is a candidate
    rows: int = 8  # signature positions per band
    seed: int = 1  # of the permutations: stored signatures are comparable only under the same seed
    # A band collision is confirmed when the signatures' estimated Jaccard reaches this (0: collision alone).
    min_similarity: float = 0.7

    def __post_init__(self) -> None:
        for name in ("ngram", "num_perm", "bands", "rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands * rows ({self.bands} * {self.rows}) must be <= num_perm ({self.num_perm})")
        if not 0 <= self.min_similarity <= 1:
            raise ValueError(f"min_similarity must be in [0, 1], got {self.min_similarity}")
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be in [0, 2**63), got {self.seed}")

    @property
    def lsh_threshold(self) -> float:
        """The Jaccard similarity at which a pair shares a band key with probability ~0.5."""
        return (1 / self.bands) ** (1 / self.rows)

    @property
    def scheme(self) -> str:
        """Everything a stored signature and its band keys depend on: equal schemes compare, others are recomputed."""
        return f"{MINHASH_VERSION}/{self.ngram}gram/{self.num_perm}perm/seed{self.seed}/{self.bands}x{self.rows}"


@dataclass(frozen=True)
class MinHash:
    signature: np.ndarray  # (num_perm,) uint32
    band_keys: np.ndarray  # (bands,) int64


def shingle_hashes(text: str, ngram: int) -> np.ndarray:
    """64-bit hashes of the word n-grams of ``normalize_for_dedup(text)`` (uint64, repeats possible).

    A text shorter than ``ngram`` words is one shingle; a text without words has none.
    """
    words = normalize_for_dedup(text).split()
    if not words:
        return np.empty(0, dtype=np.uint64)
    word_hashes = np.fromiter((zlib.crc32(w.encode("utf-8")) for w in words), dtype=np.uint64, count=len(words))
    n = max(1, len(words) - ngram + 1)
    width = min(ngram, len(words))
    hashes = word_hashes[:n].copy()
    for k in range(1, width):  # h = ((w0 * MIX + w1) * MIX + w2) ... mod 2**64, vectorised over positions
        hashes = hashes * _MIX + word_hashes[k : k + n]
    return hashes


def signature(hashes: np.ndarray, num_perm: int, seed: int) -> np.ndarray | None:
    """The MinHash signature (uint32, ``num_perm`` values) of a set of shingle hashes; None for an empty set."""
    if hashes.size == 0:
        return None
    a, b = _permutations(num_perm, seed)
    # Multiply-add-shift: the top 32 bits of (a * x + b) mod 2**64 with random odd a (Dietzfelbinger). The top
    # bits of the minimum are the minimum of the top bits, so one shift per column, in place otherwise.
    values = np.multiply(hashes[:, None], a)
    values += b
    return (values.min(axis=0) >> _SHIFT).astype(np.uint32)


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One int64 key per band of ``rows`` signature values; the band's index is part of its key."""
    values = sig[: bands * rows].astype(np.uint64).reshape(bands, rows)
    keys = np.arange(1, bands + 1, dtype=np.uint64)
    for k in range(rows):
        keys = keys * _MIX + values[:, k]
    return keys.view(np.int64)


def minhash(text: str, cfg: DedupConfig) -> MinHash | None:
    """Signature and band keys of ``text`` under ``cfg``; None when its normalised text has no words."""
    sig = signature(shingle_hashes(text, cfg.ngram), cfg.num_perm, cfg.seed)
    return None if sig is None else MinHash(sig, band_keys(sig, cfg.bands, cfg.rows))


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """The fraction of positions where two signatures agree: an unbiased estimate of the shingle sets' Jaccard."""
    return float(np.mean(a == b))


@lru_cache(maxsize=8)
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Parameters (a odd, b) of the hash functions, from BLAKE2b so they never change with a numpy release."""

    def draw(name: str) -> np.ndarray:
        stream = b"".join(
            hashlib.blake2b(f"{name}:{seed}:{i}".encode(), digest_size=8).digest() for i in range(num_perm)
        )
        return np.frombuffer(stream, dtype="<u8").astype(np.uint64)

    return draw("a") | np.uint64(1), draw("b")
