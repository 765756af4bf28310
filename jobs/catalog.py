"""Where the pipeline's tables live, parsed without Spark or Delta: Unity Catalog schema names
(``storage.root: catalog.schema``), the delta-rs form of a path root, and its storage options.

Apart from ``jobs.storage`` so that loading the config (which places models in the schema's volume) imports
neither pyspark nor deltalake, and so that training, which may run without Spark, opens tables the same way.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Mapping

from udfs.config import ConfigError

# A Unity Catalog name part: a plain identifier, or anything but backticks inside backticks.
_PART = r"(?:[A-Za-z_][A-Za-z0-9_]*|`[^`]+`)"
_CATALOG_SCHEMA = re.compile(rf"({_PART})\.({_PART})")

OBJECT_STORES = ("s3://", "abfss://", "gs://")  # the URL roots delta-rs and pyarrow reach without Hadoop
DBFS_FUSE = "/dbfs"  # where Databricks mounts dbfs:/ as a local path, for readers outside Spark

# Spark (Hadoop) settings of an object store -> the delta-rs storage option of the same meaning. The
# environment's standard variables (AWS_*, AZURE_STORAGE_*, GOOGLE_*) are read by delta-rs itself.
_HADOOP_OPTIONS = {
    "spark.hadoop.fs.s3a.access.key": "AWS_ACCESS_KEY_ID",
    "spark.hadoop.fs.s3a.secret.key": "AWS_SECRET_ACCESS_KEY",
    "spark.hadoop.fs.s3a.session.token": "AWS_SESSION_TOKEN",
    "spark.hadoop.fs.s3a.endpoint": "AWS_ENDPOINT_URL",
    "spark.hadoop.fs.s3a.endpoint.region": "AWS_REGION",
    "spark.hadoop.google.cloud.auth.service.account.json.keyfile": "GOOGLE_SERVICE_ACCOUNT",
}
_AZURE_KEY = re.compile(r"spark\.hadoop\.fs\.azure\.account\.key\.([^.]+)\.dfs\.core\.windows\.net")
# The environment variables executors need to reach the store (they may not share the driver's environment).
_ENV_PREFIXES = ("AWS_", "AZURE_", "GOOGLE_")


@dataclass(frozen=True)
class CatalogSchema:
    """A Unity Catalog schema that holds the pipeline's tables."""

    catalog: str
    schema: str

    def table(self, name: str) -> str:
        """The quoted three-part name Spark SQL and ``saveAsTable`` take."""
        return ".".join(f"`{part}`" for part in (self.catalog, self.schema, name))

    def uri(self, name: str) -> str:
        """The table as delta-rs opens it through Unity Catalog (credentials from DATABRICKS_HOST/DATABRICKS_TOKEN)."""
        return f"uc://{self.catalog}.{self.schema}.{name}"


def parse_catalog_schema(root: str) -> CatalogSchema | None:
    """``catalog.schema`` (each part an identifier or backtick-quoted) -> its parts; None for a path."""
    match = _CATALOG_SCHEMA.fullmatch(root.strip())
    if match is None:
        return None
    catalog, schema = (part.strip("`") for part in match.groups())
    return CatalogSchema(catalog, schema)


def uc_table(uri: str) -> str | None:
    """``uc://catalog.schema.table`` -> the quoted name Spark SQL takes; None for a path."""
    if not uri.startswith("uc://"):
        return None
    catalog, schema, table = uri.removeprefix("uc://").split(".", 2)
    return CatalogSchema(catalog, schema).table(table)


def delta_rs_uri(path: str, dbfs_fuse: str = DBFS_FUSE) -> str:
    """A path root or table as delta-rs and pyarrow open it: object-store URLs as given (``s3a://`` as
    ``s3://``), ``dbfs:/x`` as the Databricks FUSE path ``/dbfs/x``, anything else an absolute local path
    (``/Volumes/...`` is one on Databricks)."""
    path = path.strip()
    if path.startswith("s3a://"):
        path = "s3://" + path.removeprefix("s3a://")
    if path.startswith(OBJECT_STORES) or path.startswith("uc://"):
        return path
    if path.startswith("dbfs:"):
        if not os.path.isdir(dbfs_fuse):
            raise ConfigError(
                f"storage.root={path!r} is on DBFS, which delta-rs reaches through the {dbfs_fuse} mount of a "
                "Databricks cluster: there is none here. Run on Databricks, use delta-spark (storage.engine), "
                "or set storage.root to a local path or an s3://, abfss:// or gs:// URL"
            )
        return dbfs_fuse + "/" + path.removeprefix("dbfs:").lstrip("/")
    if "://" in path and not path.startswith("file://"):
        raise ConfigError(
            f"storage.root={path!r}: delta-rs opens local paths, dbfs:/, s3://, abfss:// and gs://; other schemes "
            "need delta-spark (storage.engine=delta-spark)"
        )
    return os.path.abspath(path.removeprefix("file://"))


def driver_path(root: str) -> str | None:
    """``storage.root`` as a folder this process can write files in with plain file calls (logs, reports,
    models), or None where there is none: ``dbfs:/x`` is ``/dbfs/x`` (Databricks' FUSE mount; ``open`` would
    otherwise make a folder named ``dbfs:`` in the working directory), a path (``/Volumes/...`` included) is
    itself, and an object store URL or a Unity Catalog ``catalog.schema`` has no such folder."""
    if root.startswith("dbfs:"):
        return "/dbfs/" + root.removeprefix("dbfs:").lstrip("/")
    if parse_catalog_schema(root) is not None or "://" in root:
        return None
    return root


def is_object_store(uri: str) -> bool:
    """Whether ``uri`` (a ``delta_rs_uri``) is in an object store rather than on a (shared) local filesystem."""
    return uri.startswith(OBJECT_STORES)


def storage_options(spark_conf: Mapping[str, str] = {}, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """delta-rs storage options (credentials included) from the environment and the Spark conf's Hadoop
    settings; the environment wins. Contains secrets: pass it on, never log it."""
    options = {option: spark_conf[key] for key, option in _HADOOP_OPTIONS.items() if spark_conf.get(key)}
    for key, value in spark_conf.items():
        if (match := _AZURE_KEY.fullmatch(key)) and value:
            options.update(AZURE_STORAGE_ACCOUNT_NAME=match.group(1), AZURE_STORAGE_ACCOUNT_KEY=value)
    endpoint = options.get("AWS_ENDPOINT_URL")
    if endpoint and "://" not in endpoint:  # Hadoop takes a bare host; delta-rs and pyarrow a URL
        options["AWS_ENDPOINT_URL"] = endpoint = f"https://{endpoint}"
    if endpoint and endpoint.startswith("http://"):
        options["AWS_ALLOW_HTTP"] = "true"
    environ = os.environ if environ is None else environ
    options.update({k: v for k, v in environ.items() if k.startswith(_ENV_PREFIXES) and v})
    return options
