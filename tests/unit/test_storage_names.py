"""storage.root as a path or a Unity Catalog ``catalog.schema``: parsing, table names, and what needs delta-spark."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs.config import load_pipeline_config
from jobs.catalog import CatalogSchema, delta_rs_uri, parse_catalog_schema, storage_options
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


def test_delta_rs_opens_local_volume_and_object_store_roots_as_themselves(tmp_path):
    assert delta_rs_uri("s3://bucket/humpback") == "s3://bucket/humpback"
    assert delta_rs_uri("s3a://bucket/humpback") == "s3://bucket/humpback"
    assert delta_rs_uri("abfss://c@acct.dfs.core.windows.net/t") == "abfss://c@acct.dfs.core.windows.net/t"
    assert delta_rs_uri("gs://bucket/t") == "gs://bucket/t"
    assert delta_rs_uri("/Volumes/main/humpback/tables") == "/Volumes/main/humpback/tables"
    assert delta_rs_uri(f"file://{tmp_path}/t") == f"{tmp_path}/t"
    assert delta_rs_uri("uc://main.humpback.t") == "uc://main.humpback.t"


def test_dbfs_is_the_databricks_mount_for_delta_rs(tmp_path):
    assert delta_rs_uri("dbfs:/humpback/tables", dbfs_fuse=str(tmp_path)) == f"{tmp_path}/humpback/tables"
    with pytest.raises(ConfigError, match=r"storage\.root='dbfs:/humpback/tables' is on DBFS.*delta-spark"):
        delta_rs_uri("dbfs:/humpback/tables", dbfs_fuse=str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match=r"hdfs://nn/t.*delta-spark"):
        delta_rs_uri("hdfs://nn/t")


def test_storage_options_come_from_the_spark_conf_and_the_environment():
    conf = {
        "spark.hadoop.fs.s3a.access.key": "AKIA_CONF",
        "spark.hadoop.fs.s3a.secret.key": "conf-secret",
        "spark.hadoop.fs.s3a.endpoint": "minio.local:9000",
        "spark.hadoop.fs.azure.account.key.acct.dfs.core.windows.net": "azure-key",
        "spark.sql.shuffle.partitions": "2",
    }
    options = storage_options(conf, environ={"AWS_SECRET_ACCESS_KEY": "env-secret", "HOME": "/root"})
    assert options == {
        "AWS_ACCESS_KEY_ID": "AKIA_CONF",
        "AWS_SECRET_ACCESS_KEY": "env-secret",  # the environment wins
        "AWS_ENDPOINT_URL": "https://minio.local:9000",
        "AZURE_STORAGE_ACCOUNT_NAME": "acct",
        "AZURE_STORAGE_ACCOUNT_KEY": "azure-key",
    }
    assert storage_options({"spark.hadoop.fs.s3a.endpoint": "http://127.0.0.1:9000"}, environ={}) == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_ALLOW_HTTP": "true",
    }


def test_a_storage_never_logs_its_credentials(caplog, tmp_path, monkeypatch):
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)  # the environment would win over the conf

    class Conf:
        def getAll(self):
            return [("spark.hadoop.fs.s3a.secret.key", "very-secret-value")]

    spark = type("Spark", (), {"sparkContext": type("Context", (), {"getConf": lambda self: Conf()})()})()
    with caplog.at_level("DEBUG"):
        storage = Storage(spark, str(tmp_path / "tables"), engine="delta-rs")
    assert storage.options["AWS_SECRET_ACCESS_KEY"] == "very-secret-value"
    assert "very-secret-value" not in caplog.text and str(tmp_path) in caplog.text
