"""Typed configuration: YAML files in conf/ loaded into frozen, validated dataclasses.

Rules (STYLE.md, "config is data"):
- every key in the YAML must be a field of the dataclass, else ``ConfigError`` naming the dotted key;
- values are type-checked against the field annotations and then each dataclass validates itself
  in ``__post_init__`` by raising ``ValueError``; both surface as ``ConfigError`` naming the key;
- ``--set dotted.key=value`` overrides are parsed as YAML scalars and applied before validation.

This module is pure (no pyspark, no vllm) so the driver, the executors and the training module share it.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or invalid; the message names the dotted key."""


def load_config(cls: type[T], path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> T:
    """Load ``path`` (YAML) into ``cls``, applying ``key=value`` overrides first."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        raw = yaml.safe_load(path.read_text()) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: top level must be a mapping, got {type(raw).__name__}")
    for item in overrides:
        apply_override(raw, item)
    return build(cls, raw)


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one ``dotted.key=value`` override to a nested dict in place."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override must look like dotted.key=value, got {item!r}")
    *parents, leaf = key.strip().split(".")
    node = raw
    for i, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(parents[: i + 1])}: is a value, cannot set {key}")
        node = child
    node[leaf] = yaml.safe_load(value) if value.strip() else ""


def build(cls: type[T], raw: Any, prefix: str = "") -> T:
    """Recursively build dataclass ``cls`` from a mapping, with errors naming the dotted key."""
    where = prefix or "<root>"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        names = ", ".join(_join(prefix, k) for k in unknown)
        raise ConfigError(f"unknown config key(s): {names} (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, field in fields.items():
        key = _join(prefix, name)
        if name in raw:
            kwargs[name] = _coerce(hints[name], raw[name], key)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            if dataclasses.is_dataclass(hints[name]):
                kwargs[name] = build(hints[name], {}, key)
            else:
                raise ConfigError(f"{key}: required")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} matches none of {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key}: must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        item_tp = args[0] if args else Any
        return tuple(_coerce(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return _dotted(value)
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:  # YAML 1.1 reads "3e-3" (no dot) as a string
            return float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected float, got {value!r}") from None
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if tp in (int, float, str, bool) and not (isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
    return value


def _dotted(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A mapping field's keys are names like ``spark.ui.enabled``; an override ``spark.conf.spark.ui.enabled=false``
    arrives split into nested mappings, which this joins back into dotted names."""
    flat: dict[str, Any] = {}
    for name, value in mapping.items():
        if isinstance(value, dict):
            flat.update(_dotted(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def to_dict(cfg: Any) -> dict[str, Any]:
    """The resolved config as plain data (for logging and the runs table)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
