"""A failure during a run: one line on the console, the traceback in the run's log file, no commit made."""

import errno
import logging

import pytest

from jobs import console
from jobs.augment import main
from jobs.storage import Storage
from tests.conftest import ROOT


@pytest.fixture
def restore_logging(monkeypatch):
    for name in console.ENVIRONMENT:  # restored after the test: later tests must not log into its folder
        monkeypatch.delenv(name, raising=False)
    yield
    for handler in [h for h in logging.getLogger().handlers if getattr(h, "_humpback", False)]:
        logging.getLogger().removeHandler(handler)
        handler.close()


def test_out_of_disk_during_a_write_leaves_the_table_unchanged(spark, tmp_path, monkeypatch, restore_logging):
    root = tmp_path / "tables"
    args = ["--config", str(ROOT / "conf/tiny.yaml"), "--set", f"storage.root={root}", "--stages", "ingest"]
    storage = Storage(spark, str(root))
    written = Storage._write_files

    def disk_full(self, name, df):
        actions = written(self, name, df)
        if name == "documents":  # the data files are written; the disk fills before the commit
            raise OSError(errno.ENOSPC, "No space left on device", f"{self.path(name)}/{actions[0].path}")
        return actions

    monkeypatch.setattr(Storage, "_write_files", disk_full)
    with pytest.raises(SystemExit) as stop:
        main(args)
    line = str(stop.value.code)
    assert line.startswith("error: out of disk space writing ") and "the commit was not made" in line
    assert "\n" not in line and "Traceback" not in line
    assert storage.version("documents") is None  # no commit: the table does not exist yet
    log_file = line.rsplit("(traceback: ", 1)[1].rstrip(")")
    with open(log_file, encoding="utf-8") as log:
        text = log.read()
    assert "Traceback" in text and "No space left on device" in text

    monkeypatch.setattr(Storage, "_write_files", written)
    main(args)  # space freed: the same command writes the table
    assert storage.read("documents").count() == 29
