"""The usual mistakes each give one line naming the thing and what to do (jobs.preflight)."""

import errno
import gzip
import os
import struct

import pytest

from jobs import preflight
from jobs.preflight import UsageError


def test_corpus_glob_matching_nothing(tmp_path):
    with pytest.raises(UsageError, match=r"input.corpus: nothing matches .*nope.*check the path or glob"):
        preflight.corpus_files(str(tmp_path / "nope" / "*.warc.gz"))


def test_corpus_of_unreadable_formats(tmp_path):
    (tmp_path / "a.docx").write_bytes(b"x")
    with pytest.raises(UsageError, match="none is WARC, WET, HTML, JSONL or Parquet"):
        preflight.corpus_files(str(tmp_path))


def test_empty_corpus(tmp_path):
    (tmp_path / "a.warc").write_bytes(b"")
    (tmp_path / "b.jsonl").write_bytes(b"")
    with pytest.raises(UsageError, match="are empty: the corpus has no pages"):
        preflight.corpus_files(str(tmp_path))
    with gzip.open(tmp_path / "c.warc.gz", "wb") as f:
        f.write(b"WARC/1.0\r\n")
    assert len(preflight.corpus_files(str(tmp_path))) == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"instruction": "a", "output": "b"}\nnot json\n', r"seed.jsonl:2 is not JSON"),
        ('{"prompt": "a", "response": "b"}\n', r"seed.jsonl:1 needs string fields 'instruction' and 'output'"),
        ('["a", "b"]\n', r"needs string fields"),
        ("\n\n", "has no pairs"),
    ],
)
def test_seed_file_that_is_not_instruction_output_jsonl(tmp_path, text, message):
    seed = tmp_path / "seed.jsonl"
    seed.write_text(text)
    with pytest.raises(UsageError, match=message):
        preflight.check_seed(str(seed))


def test_seed_file_ok_and_missing(tmp_path):
    seed = tmp_path / "seed.jsonl"
    seed.write_text('{"instruction": "a", "output": "b"}\n\n{"instruction": "c", "output": "d"}\n')
    assert preflight.check_seed(str(seed)) == 2
    with pytest.raises(UsageError, match="input.seed: no file at"):
        preflight.check_seed(str(tmp_path / "missing.jsonl"))


def test_model_directory_missing_weights_or_tokenizer(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    with pytest.raises(UsageError, match=r"models.base: .* lacks weights .*, a tokenizer"):
        preflight.check_model_dir("models.base", str(model))
    (model / "model.safetensors").write_bytes(b"0")
    with pytest.raises(UsageError, match=r"lacks a tokenizer \(tokenizer.json"):
        preflight.check_model_dir("models.base", str(model))
    (model / "tokenizer.json").write_text("{}")
    # every file present, but the weights are one byte: a copy cut short is named, not loaded
    with pytest.raises(UsageError, match=r"models.base: .*model.safetensors: truncated safetensors file \(1 bytes"):
        preflight.check_model_dir("models.base", str(model))
    (model / "model.safetensors").write_bytes(struct.pack("<Q", 2) + b"{}")  # a whole file with no tensors
    preflight.check_model_dir("models.base", str(model))
    with pytest.raises(UsageError, match="no model directory at"):
        preflight.check_model_dir("models.backward", str(tmp_path / "absent"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permissions")
def test_storage_root_not_writable(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    with pytest.raises(UsageError, match=r"storage.root: cannot write to .*choose a writable folder"):
        preflight.check_writable("storage.root", str(locked / "tables"))


def test_storage_root_under_a_file_is_not_writable(tmp_path):
    (tmp_path / "file").write_text("x")  # fails for root too: a path under a regular file
    with pytest.raises(UsageError, match=r"storage.root: cannot write to .*(Not a directory|File exists)"):
        preflight.check_writable("storage.root", str(tmp_path / "file" / "tables"))


def test_out_of_disk_is_one_line_also_when_wrapped():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/t/segments/part-0.parquet")
        except OSError as inner:
            raise RuntimeError("write failed") from inner
    except RuntimeError as exc:
        line = preflight.describe_failure(exc)
    assert line.startswith("out of disk space writing /t/segments/part-0.parquet: the commit was not made")
    assert "\n" not in line
    assert preflight.describe_failure(Exception("java.io.IOException: No space left on device")).startswith(
        "out of disk space"
    )
    assert preflight.describe_failure(ValueError("other")) is None


def test_the_job_stops_with_one_line_before_spark_starts(tmp_path, capsys):
    from jobs.augment import main
    from tests.conftest import ROOT

    with pytest.raises(SystemExit) as stop:
        main(
            [
                "--config",
                str(ROOT / "conf/local.yaml"),
                "--set",
                f"storage.root={tmp_path}",
                "--set",
                f"input.corpus={tmp_path}/crawl/*.warc.gz",
            ]
        )
    assert str(stop.value.code).startswith("error: input.corpus: nothing matches")
    assert "\n" not in str(stop.value.code)


@pytest.mark.parametrize(
    "overrides, master, databricks, warned",
    [
        ([], "local[2]", False, False),  # this machine, local tables
        (["segment.decontamination=[]"], "local[2]", False, False),  # a local try-out: no warning
        (["segment.decontamination=[]"], "spark://head:7077", False, True),  # a cluster
        (["segment.decontamination=[]"], "local[*]", True, True),  # a Databricks single-node cluster
        (["segment.decontamination=[]", "storage.root=s3://bucket/tables"], "local[2]", False, True),
        (["segment.decontamination=[]", "storage.root=/Volumes/main/humpback/tables"], "local[2]", False, True),
        (["segment.decontamination=[]", "storage.root=main.humpback"], "local[2]", False, True),
    ],
)
def test_a_non_local_run_without_evaluation_sets_is_warned_loudly(monkeypatch, overrides, master, databricks, warned):
    from jobs.config import load_pipeline_config
    from tests.conftest import ROOT

    if databricks:
        monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "16.4")
    else:
        monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    cfg = load_pipeline_config(str(ROOT / "conf/tiny.yaml"), overrides)
    warning = preflight.decontamination_warning(cfg, master)
    assert (warning is not None) == warned
    if warned:
        assert warning.startswith("NO DECONTAMINATION: segment.decontamination lists no evaluation prompt files")
