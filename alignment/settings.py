"""Nested dataclasses from YAML and back, strictly: a config file is code a user writes by hand, so an
unknown or misspelt key is an error that names it and the nearest valid key, and a value of the wrong
type is an error that names its dotted path. `--set a.b=value` overrides use the same rules.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from kg.errors import MedkgError, MissingInputError

T = TypeVar("T")


class ConfigError(MedkgError, ValueError):
    """A config file or override that does not fit the schema; the message names the key."""


def from_dict(cls: type[T], values: dict[str, Any], path: str = "") -> T:
    """`cls(**values)`, recursively for nested dataclasses, refusing unknown keys and ill-typed values."""
    if not isinstance(values, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping of keys to values, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        where = f"{path}.{key}" if path else key
        if key not in fields:
            raise ConfigError(f"unknown key {where!r}{_nearest(key, fields, path)}")
        kwargs[key] = _convert(hints[key], value, where)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"{path or 'config'}: {error}") from None


def to_dict(config: Any) -> dict[str, Any]:
    """Plain values (lists for tuples), ready for YAML or JSON."""
    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value
    return plain(config)


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        values = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise MissingInputError(f"config file not found: {path}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    except (OSError, UnicodeDecodeError) as error:  # a folder, no permission, bytes that are not UTF-8
        raise ConfigError(f"{path}: cannot be read as a YAML config ({type(error).__name__}: {error})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return values


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`key.sub=value` strings applied onto nested dicts; values are read as YAML scalars or lists."""
    values = _deep_copy(values)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        node = values
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part!r} is a value, not a section")
        node[parts[-1]] = yaml.safe_load(raw) if raw else ""
    return values


def _deep_copy(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in values.items()}


def _nearest(key: str, fields: dict[str, Any], path: str) -> str:
    match = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.5)
    prefix = f"{path}." if path else ""
    if match:
        return f"; did you mean {prefix + match[0]!r}?"
    return f"; valid keys here: {', '.join(sorted(fields))}"


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _convert(option, value, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        item = args[0] if args else Any
        converted = [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(converted) if origin is tuple else converted
    if hint is Any:
        return value
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads "3e-3" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if hint is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(hint, type) and not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")
    return value
