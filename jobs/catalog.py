"""Unity Catalog schema names (``storage.root: catalog.schema``), parsed without Spark or Delta.

Apart from ``jobs.storage`` so that loading the config (which places models in the schema's volume) imports
neither pyspark nor deltalake.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A Unity Catalog name part: a plain identifier, or anything but backticks inside backticks.
_PART = r"(?:[A-Za-z_][A-Za-z0-9_]*|`[^`]+`)"
_CATALOG_SCHEMA = re.compile(rf"({_PART})\.({_PART})")


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
