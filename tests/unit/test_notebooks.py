from pathlib import Path

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.py"))


def test_every_notebook_is_databricks_source_format():
    assert NOTEBOOKS
    for path in NOTEBOOKS:
        assert path.read_text().startswith("# Databricks notebook source\n"), path.name
