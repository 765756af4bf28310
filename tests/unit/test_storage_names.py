"""storage.root as a path or a Unity Catalog ``catalog.schema``: parsing, table names, and what needs delta-spark."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs.config import load_pipeline_config
from jobs.catalog import CatalogSchema, parse_catalog_schema
from jobs.storage import Storage
from tests.conftest import ROOT
from udfs.config import ConfigError

IDENTIFIER = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)
QUOTED = st.text(st.characters(blacklist_characters="`", blacklist_categories=("Cs",)), min_size=1, max_size=20)


@pytest.mark.parametrize(
    "root, parts",
    [
        ("main.humpback", ("main", "humpback")),
        ("  dev_2.humpback_runs ", ("dev_2", "humpback_runs")),
        ("`my-catalog`.`team data`", ("my-catalog", "team data")),
        ("`prod`.humpback", ("prod", "humpback")),
    ],
)
def test_catalog_schema_names_parse(root, parts):
    assert parse_catalog_schema(root) == CatalogSchema(*parts)


@pytest.mark.parametrize(
    "root",
    [
        "work/tables",
        "/data/humpback.tables",
        "./tables.v2",
        "tables",
        "dbfs:/humpback/tables",
        "s3://bucket/humpback",
        "abfss://c@acct.dfs.core.windows.net/t",
        "main.humpback.documents",
        "1st.schema",
        "main.",
        ".humpback",
        "main..humpback",
        "`unclosed.humpback",
        "",
    ],
)
def test_paths_and_other_names_are_not_schemas(root):
    assert parse_catalog_schema(root) is None


@given(IDENTIFIER, IDENTIFIER, IDENTIFIER)
def test_plain_names_round_trip_to_table_names(catalog, schema, table):
    uc = parse_catalog_schema(f"{catalog}.{schema}")
    assert uc == CatalogSchema(catalog, schema)
    assert uc.table(table) == f"`{catalog}`.`{schema}`.`{table}`"
    assert uc.uri(table) == f"uc://{catalog}.{schema}.{table}"


@given(QUOTED, QUOTED)
def test_quoted_names_keep_any_character_but_backticks(catalog, schema):
    assert parse_catalog_schema(f"`{catalog}`.`{schema}`") == CatalogSchema(catalog, schema)


@given(st.text(max_size=40))
def test_absolute_relative_and_url_paths_are_never_schemas(rest):
    for prefix in ("/", "./", "../", "s3://", "dbfs:/"):
        assert parse_catalog_schema(prefix + rest) is None


def test_delta_rs_rejects_a_catalog_schema_with_a_clear_config_error():
    with pytest.raises(ConfigError, match=r"storage\.root='main\.humpback' is a Unity Catalog schema.*delta-spark"):
        Storage(spark=None, root="main.humpback", engine="delta-rs")


def test_models_of_a_catalog_schema_go_to_its_models_volume():
    conf = str(ROOT / "conf/cluster.yaml")
    cfg = load_pipeline_config(conf, ["storage.root=main.humpback", "models.dir=null", "models.base=null"])
    assert cfg.model_path("backward") == "/Volumes/main/humpback/models/myx"
    cfg = load_pipeline_config(conf, ["storage.root=main.humpback", "models.dir=/Volumes/main/shared/models"])
    assert cfg.models_dir == "/Volumes/main/shared/models"
    assert (
        load_pipeline_config(conf, ["storage.root=/data/tables", "models.dir=null"]).models_dir == "/data/tables/models"
    )
