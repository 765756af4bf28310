"""Every Delta table of the pipeline: its name, key column and schema, and how a row's status is counted.

Schemas are Spark DDL strings (``"name type, ..."``), the form ``mapInPandas`` and ``createDataFrame`` take.
A table's key is the deterministic id that makes its stage idempotent (``udfs.ids``): appends skip rows
whose key is present. ``status_key`` is the one way rows are counted by status and reason, used by the
stage reports (and so the ``runs`` table), the run summary and the report alike.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Table:
    name: str
    key: str  # the id column appends are keyed by
    schema: str  # Spark DDL

    @property
    def columns(self) -> list[str]:
        return ddl_columns(self.schema)


def ddl_columns(schema: str) -> list[str]:
    """The column names of a DDL schema string, in order."""
    return [c.split()[0] for c in schema.split(", ")]


def ddl_types(schema: str) -> dict[str, str]:
    """Column name -> DDL type of a schema string (flat types only, as this project's tables have)."""
    return {c.split()[0]: c.split()[1] for c in schema.split(", ")}


def status_key(status: str, reason: str | None) -> str:
    """The counted key of a row: ``status`` or ``status:code``. An error's reason is "code: message"; the
    message (after the first ": ") is left out so counts stay few. Qualified codes keep their qualifier:
    ``dropped:eval_overlap:<set>`` is counted per evaluation set."""
    return f"{status}:{reason.split(': ', 1)[0].strip()}" if reason else status


# The ingest ledger: one row per work unit read (files are split into units, see udfs.readers.plan_units).
FILES = Table(
    "files",
    "unit_id",
    (
        "unit_id string, file_id string, path string, size long, mtime_ns long, unit_start long, unit_end long, "
        "units_in_file int, records long, status_counts string, ingested_at string"
    ),
)
# The ingest stage's work list, handed to the executors (not stored).
UNITS_SCHEMA = "unit_id string, path string, start long, end long"
# A document points at its record (source_path, offset, length, content_hash): html is null unless
# ingest.store_html, or the record cannot be read back by offset (udfs.readers.can_read_back).
DOCUMENTS = Table(
    "documents",
    "doc_id",
    (
        "doc_id string, source_path string, offset long, length long, url string, record_id string, fetch_date string, "
        "http_status int, content_type string, content_hash string, html string, status string, reason string, "
        "charset string, charset_source string"
    ),
)
# What the readers yield: documents rows plus the work unit each came from (for the ingest ledger).
READ_SCHEMA = DOCUMENTS.schema + ", unit_id string"
# What segmentation yields, one row per section; the segment stage adds dedup's columns before storing.
SEGMENT_ROWS_SCHEMA = (
    "segment_id string, doc_id string, url string, section_index int, header_level int, header string, "
    "text string, n_chars int, text_hash string, status string, reason string, "
    "part int, lang string, lang_score double, measurements string"
)
# Added to segments by dedup: the signature (uint32 values stored bit for bit as int) and band keys of an ok
# segment, and the scheme they follow (set on every row, so a row group written under the current scheme is
# skipped when looking for stale signatures).
MINHASH_SCHEMA = "minhash array<int>, minhash_bands array<bigint>, minhash_scheme string"
MINHASH_COLUMNS = ddl_columns(MINHASH_SCHEMA)
SEGMENTS = Table("segments", "segment_id", f"{SEGMENT_ROWS_SCHEMA}, duplicate_of string, {MINHASH_SCHEMA}")
CANDIDATES = Table(
    "candidates",
    "generation_id",
    (
        "generation_id string, segment_id string, instruction string, raw_text string, finish_reason string, "
        "prompt_tokens int, cached_tokens int, truncated_tokens int, output_tokens int, model_id string, "
        "prompt_version string, sampling string, seed long, status string, reason string"
    ),
)
SCORES = Table(
    "scores",
    "score_id",
    (
        "score_id string, generation_id string, segment_id string, iteration int, judge_model_id string, "
        "prompt_version string, score int, expected_score double, expected_score_failure string, "
        "parse_failure string, raw_text string, finish_reason string, prompt_tokens int, cached_tokens int, "
        "truncated_tokens int, output_tokens int, "
        "input_flags string, cascade_probability double, status string, reason string"
    ),
)
# Curated pairs rewritten into answers by an aligned model (jobs.stages.rewrite): one row per (curated generation,
# rewriter, prompt version, sampling, seed), with the answer's faithfulness to its segment (udfs.rewrite).
REWRITES = Table(
    "rewrites",
    "rewrite_id",
    (
        "rewrite_id string, generation_id string, segment_id string, answer string, raw_text string, "
        "finish_reason string, answer_end string, faithfulness double, new_numbers string, n_new_numbers int, "
        "new_entities string, n_new_entities int, min_faithfulness double, prompt_tokens int, cached_tokens int, "
        "truncated_tokens int, output_tokens int, model_id string, prompt_version string, sampling string, "
        "seed long, status string, reason string"
    ),
)
# Likelihood scores (udfs.likelihood): one row per (pair, scorer model, format version). ``source`` is "pool"
# (a candidate: generation_id and segment_id are its own) or "labels" (a row of report.judge_labels: both
# hold its label id, as calibration does).
LIKELIHOODS = Table(
    "likelihoods",
    "likelihood_id",
    (
        "likelihood_id string, generation_id string, segment_id string, source string, scorer_model_id string, "
        "format_version string, conditional_loss double, answer_loss double, ifd double, context_tokens int, "
        "answer_tokens int, status string, reason string"
    ),
)
# The calibrate stage's input rows (data/sample/judge_labels.jsonl), handed to the judge (not stored).
LABELS_SCHEMA = "label_id string, instruction string, output string, label string, kind string"
# The scores columns a calibration row does not have: its key and label id stand for the score's ids (a label
# has no generation or segment), and calibration judges every label, so no cascade ran before the judge.
CALIBRATION_OMITS = ("score_id", "generation_id", "segment_id", "cascade_probability")


def calibration_schema(scores_schema: str) -> str:
    """A judge's scores row keyed by label instead of generation/segment, plus the label: every scores column
    but ``CALIBRATION_OMITS``, so a column the judge's rows gain is a calibration column too."""
    kept = [c for c in scores_schema.split(", ") if c.split()[0] not in CALIBRATION_OMITS]
    return ", ".join(["calibration_id string, label_id string, label string, kind string", *kept])


CALIBRATION = Table("calibration", "calibration_id", calibration_schema(SCORES.schema))
# Lineage of each trained model's augmented examples: one row per example; ``rewrite_id`` names the rewrite that
# was its answer (null: the segment was).
CURATED = Table(
    "curated",
    "curated_id",
    (
        "curated_id string, iteration int, trained_model_id string, score_id string, generation_id string, "
        "segment_id string, doc_id string, url string, generation_model_id string, augment_prompt_version string, "
        "judge_model_id string, judge_prompt_version string, score int, expected_score double, score_column string, "
        "min_score double, training_data_sha256 string, status string, reason string, rewrite_id string"
    ),
)
# A run that raised is a ``failed`` row too: ``reason`` is its error (one line, type and message), ``failed_stage``
# the stage it was in, ``committed`` what it had committed by then (table -> versions and rows added).
RUNS = Table(
    "runs",
    "run_id",
    (
        "run_id string, started_at string, finished_at string, seconds double, config string, stages string, "
        "tables string, curation string, yields string, status string, reason string, failed_stage string, "
        "committed string"
    ),
)

# The tables a training set is read from, at pinned versions.
POOL_TABLES = (SEGMENTS.name, CANDIDATES.name, SCORES.name)
# Token counts of the LLM tables, summed into their stage reports.
TOKEN_COLUMNS = ("prompt_tokens", "cached_tokens", "output_tokens")
