"""Keep credentials out of everything the project writes: logs, tables, training_meta.json, MLflow, reports.

One function, ``redact``, applied to whatever is about to be logged or stored (the resolved config, the
``runs`` row, a model's metadata). It hides

- the value of every key naming a credential: a key whose dot/underscore/dash/camelCase-separated words
  include token, secret, password, passwd, key, credential(s), apikey or sas (``spark.hadoop.fs.s3a.secret.key``,
  ``HF_TOKEN``, ``apiKey``), but not ``max_tokens`` or ``monkey``;
- ``name=value`` pairs with such a name inside strings (``--set`` overrides, command lines);
- values that look like credentials wherever they are: user:password in URLs, ``Bearer ...``, and the
  shapes of common tokens (Hugging Face, OpenAI, GitHub, AWS access key ids, Databricks, Slack, JWTs,
  PEM private keys).

Our own ids (32-64 hex characters) are not credentials and are left alone; a generic "long random
string" rule would hide every id in the tables.

Pure (no pyspark, no vllm): the driver, the executors and the training module share it.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"

_SENSITIVE_WORDS = {"token", "secret", "password", "passwd", "key", "credential", "credentials", "apikey", "sas"}
_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
_ASSIGNMENT = re.compile(r"(?P<name>[A-Za-z][\w.\-]*)(?P<sep>\s*=\s*)(?P<value>\"[^\"]*\"|'[^']*'|[^\s,;&\"']+)")
_TOKEN_SHAPES = re.compile(
    "|".join(
        [
            r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)",  # user:password@ in a URL
            r"(?<=[Bb]earer )[A-Za-z0-9._~+/=-]{8,}",
            r"\bhf_[A-Za-z0-9]{20,}",
            r"\bsk-[A-Za-z0-9_-]{20,}",
            r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})",
            r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
            r"\bdapi[0-9a-f]{32}(?:-\d+)?\b",
            r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
            r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]+",
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
        ]
    )
)


def is_sensitive_key(name: str) -> bool:
    """Whether a config key or variable name names a credential (by its words, not its substrings)."""
    return any(word.lower() in _SENSITIVE_WORDS for word in _WORD_SPLIT.split(str(name)) if word)


def redact_text(text: str) -> str:
    """``text`` with credential-looking values and the values of ``secret_name=value`` pairs masked."""
    text = _TOKEN_SHAPES.sub(MASK, text)
    return _ASSIGNMENT.sub(lambda m: f"{m['name']}{m['sep']}{MASK}" if is_sensitive_key(m["name"]) else m[0], text)


def redact(data: Any) -> Any:
    """A copy of ``data`` (JSON-like: dicts, lists, tuples, scalars) safe to log or store."""
    if isinstance(data, dict):
        return {k: MASK if is_sensitive_key(k) and v not in (None, "") else redact(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return type(data)(redact(v) for v in data)
    if isinstance(data, str):
        return redact_text(data)
    return data
