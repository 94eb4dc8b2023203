"""Stage configs: dataclasses validated when built, loadable from YAML, overridable.

Every stage has one config class deriving from :class:`StageConfig`. Unknown keys are
errors that name the key and list the valid ones, so a typo never silently falls back
to a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Self

import yaml

from llarapp.errors import ConfigError


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; convert where it is lossless."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} matches none of {tp}")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        items = [_coerce(v, item_tp, key) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        key_tp, value_tp = typing.get_args(tp) or (Any, Any)
        return {_coerce(k, key_tp, key): _coerce(v, value_tp, f"{key}.{k}")
                for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp in (int, float):
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if numeric and (tp is float or isinstance(value, int)):
            return tp(value)
        if isinstance(value, str):
            try:
                return tp(value)
            except ValueError:
                pass
        expected = "an integer" if tp is int else "a number"
        raise ConfigError(f"{key}: expected {expected}, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")


@dataclasses.dataclass
class StageConfig:
    """Base of all stage configs. Subclasses add fields and override :meth:`validate`."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            setattr(self, field.name, _coerce(value, hints[field.name], field.name))
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` when a value is out of range."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{cls.__name__} expects a mapping, got {type(data).__name__}")
        valid = cls.field_names()
        for key in data:
            if key not in valid:
                raise ConfigError(
                    f"unknown key {key!r} for {cls.__name__}; valid keys: {', '.join(valid)}"
                )
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Self:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: Iterable[str] = (),
             **values: Any) -> Self:
        """YAML file (optional), then keyword values, then ``key=value`` overrides."""
        data: dict[str, Any] = {}
        if path:
            data.update(cls.from_yaml(path).to_dict())
        data.update({k: v for k, v in values.items() if v is not None})
        data.update(parse_overrides(overrides))
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> Self:
        return self.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings; values are read as YAML scalars (``5``, ``true``)."""
    parsed: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key=value")
        try:
            parsed[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            parsed[key.strip()] = raw
    return parsed


def require(condition: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message)


@dataclasses.dataclass
class TrackedConfig(StageConfig):
    """A stage that logs an MLflow run."""

    experiment: str = "llarapp"
    tracking_uri: str = ""  # empty: MLFLOW_TRACKING_URI, else sqlite in runs/
    track: bool = True
