"""The one typed configuration loader: plain data (parsed YAML, TOML, JSON) into dataclasses.

Every configuration of the project is a (frozen) dataclass: training recipes, RoAR training
configs, pipeline JSON parameters, bundle ``protocol.json`` files. ``load(cls, data)`` builds one
from what a file or a client sent and rejects, with the dotted path of the offending key:

* keys that are not fields (``unknown key 'optimizer.lr_strat'; optimizer accepts: ...``), at any depth;
* values of the wrong type (``training.schedule.lr: expected float, got 'abc'``);
* values outside a field's range or choices.

Supported field types: ``bool``, ``int``, ``float`` (an int is accepted and converted; NaN and
infinities are not), ``str``, ``Any``, ``None``, ``Literal[...]`` (choices), unions (``X | None``,
``float | Literal["auto"]``), ``list[T]``, ``tuple[T, ...]`` and ``tuple[A, B]`` (from lists),
``dict[str, T]`` and nested dataclasses anywhere inside them. Missing keys take the field's
default; a field without a default is required.

Ranges, patterns and help text live in the field's metadata; ``setting`` writes it::

    @dataclass(frozen=True)
    class Schedule:
        lr: float = setting(1e-3, "Adam step size", gt=0)
        kind: Literal["cosine", "constant"] = setting("cosine", "how the step size falls")
        epochs: int = setting(80, "passes over the data", ge=1, le=10_000)

    load(Schedule, {"lr": "abc"}, "schedule")  # ConfigError: schedule.lr: expected float, got 'abc'

``describe(cls)`` lists the fields (name, type, default, range or choices, help) for command
output and documentation.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields, is_dataclass
from typing import Any, Literal

#: Metadata keys of ``setting``: inclusive and exclusive numeric bounds, a regular expression.
BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


class ConfigError(ValueError):
    """A configuration value is unusable; ``path`` is its dotted key, the message says what is wrong.

    ``accepted`` lists the keys its mapping accepts when ``path`` is an unknown key (else empty)."""

    def __init__(self, path: str, reason: str, text: str | None = None, accepted: tuple[str, ...] = ()):
        super().__init__(text or (f"{path}: {reason}" if path else reason))
        self.path, self.reason, self.accepted = path, reason, accepted


def setting(
    default: Any = MISSING,
    help: str = "",
    *,
    default_factory: Any = MISSING,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    pattern: str | None = None,
    rule: tuple[str, Callable[[Any], bool]] | None = None,
) -> Any:
    """A dataclass field with a help text and optional numeric bounds, a regular expression (text
    values) or a ``rule``: (what it requires, a predicate), e.g. ``("odd", lambda v: v % 2 == 1)``."""
    bounds = {k: v for k, v in {"ge": ge, "gt": gt, "le": le, "lt": lt}.items() if v is not None}
    extra = {"pattern": pattern, "rule": rule}
    metadata = {"help": help, **bounds, **{k: v for k, v in extra.items() if v is not None}}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def load(cls: type, data: Any, path: str = "", kind: str = "key") -> Any:
    """An instance of the dataclass ``cls`` from plain ``data``; ``ConfigError`` naming the dotted path.

    ``path`` prefixes every key in messages (``"recipe"`` -> ``recipe.optimizer.lr``); ``kind`` names
    keys in the unknown-key message (``"recipe key"``, ``"parameter"``).
    """
    return _Loader(kind).build(cls, data, path)


@dataclass(frozen=True)
class FieldDoc:
    """One field as ``describe`` reports it."""

    name: str
    type: str
    default: str
    allowed: str
    help: str


def describe(cls: type) -> list[FieldDoc]:
    """Name, type, default, allowed values (range, choices, pattern) and help of every field of ``cls``."""
    hints = typing.get_type_hints(cls)
    docs = []
    for f in fields(cls):
        if f.default is not MISSING:
            default = "(none)" if f.default is None else repr(f.default)
        elif f.default_factory is not MISSING:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        docs.append(
            FieldDoc(f.name, type_name(hints[f.name]), default, _allowed(f), f.metadata.get("help", ""))
        )
    return docs


def type_name(tp: Any) -> str:
    """A short readable name of a field type (``int``, ``'rss' | 'adaptive'``, ``list[float]``)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None):
        return "null"
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin in (list, tuple, dict):
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{origin.__name__}[{inner}]"
    if tp is Any:
        return "any"
    return getattr(tp, "__name__", str(tp))


def _allowed(f: dataclasses.Field) -> str:
    parts = [f"{BOUNDS[k]} {f.metadata[k]:g}" for k in BOUNDS if k in f.metadata]
    if "pattern" in f.metadata:
        parts.append(f"matching {_pattern_text(f.metadata['pattern'])}")
    if "rule" in f.metadata:
        parts.append(f.metadata["rule"][0])
    return ", ".join(parts)


class _Loader:
    def __init__(self, kind: str):
        self.kind = kind

    def build(self, cls: type, data: Any, path: str) -> Any:
        if not isinstance(data, dict):
            raise ConfigError(path, f"expected a mapping of keys, got {_shown(data)}")
        hints = typing.get_type_hints(cls)
        known = {f.name: f for f in fields(cls) if f.init}
        unknown = [k for k in data if k not in known]
        if unknown:
            key, names = _join(path, str(unknown[0])), ", ".join(sorted(known))
            accepts = f"{path} accepts: {names}" if path else f"accepted: {names}"
            text = f"unknown {self.kind} {key!r}; {accepts}"
            raise ConfigError(key, f"unknown {self.kind}; {accepts}", text, tuple(sorted(known)))
        values = {}
        for name, f in known.items():
            key = _join(path, name)
            if name not in data:
                if f.default is MISSING and f.default_factory is MISSING:
                    raise ConfigError(key, f"required {self.kind} is missing")
                continue
            value = self.value(hints[name], data[name], key)
            _check_metadata(f.metadata, value, key)
            values[name] = value
        try:
            return cls(**values)
        except (ValueError, TypeError) as exc:  # the dataclass's own __post_init__ checks
            raise ConfigError(path, str(exc)) from None

    def value(self, tp: Any, value: Any, key: str) -> Any:
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if is_dataclass(tp):
            return self.build(tp, value, key)
        if origin in (typing.Union, types.UnionType):
            return self.union(tp, args, value, key)
        if origin is Literal:
            if any(value == a and type(value) is type(a) for a in args):
                return value
            raise ConfigError(key, f"expected one of {', '.join(map(repr, args))}, got {_shown(value)}")
        if origin is list:
            if not isinstance(value, list | tuple):
                raise _wrong(tp, value, key)
            return [self.value(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
        if origin is tuple:
            return self.tuple(tp, args, value, key)
        if origin is dict:
            if not isinstance(value, dict):
                raise _wrong(tp, value, key)
            for k in value:
                if not isinstance(k, str):
                    raise ConfigError(key, f"keys must be text, got {_shown(k)}")
            return {k: self.value(args[1], v, _join(key, k)) for k, v in value.items()}
        return _scalar(tp, value, key)

    def union(self, tp: Any, args: tuple, value: Any, key: str) -> Any:
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return self.value(arg, value, key)
            except ConfigError as exc:
                if exc.path != key:  # the value has the right shape; a nested key is wrong
                    raise
        raise _wrong(tp, value, key)

    def tuple(self, tp: Any, args: tuple, value: Any, key: str) -> tuple:
        if not isinstance(value, list | tuple):
            raise _wrong(tp, value, key)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(self.value(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(key, f"expected {len(args)} values ({type_name(tp)}), got {_shown(value)}")
        return tuple(
            self.value(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True))
        )


def _scalar(tp: Any, value: Any, key: str) -> Any:
    if tp is Any:
        return value
    if tp is type(None):
        if value is None:
            return None
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(key, f"expected a finite number, got {_shown(value)}")
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(tp, type):
        if isinstance(value, tp):
            return value
    else:
        raise TypeError(f"{key}: the loader does not support the field type {tp!r}")
    raise _wrong(tp, value, key)


def _check_metadata(metadata: typing.Mapping[str, Any], value: Any, key: str) -> None:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    bounds = [(k, metadata[k]) for k in BOUNDS if k in metadata]
    if number and bounds:
        ok = {
            "ge": lambda b: value >= b,
            "gt": lambda b: value > b,
            "le": lambda b: value <= b,
            "lt": lambda b: value < b,
        }
        if not all(ok[k](b) for k, b in bounds):
            rule = " and ".join(f"{BOUNDS[k]} {b:g}" for k, b in bounds)
            raise ConfigError(key, f"expected a number {rule}, got {_shown(value)}")
    pattern = metadata.get("pattern")
    if pattern and isinstance(value, str) and not re.fullmatch(pattern, value):
        raise ConfigError(key, f"expected text matching {_pattern_text(pattern)}, got {_shown(value)}")
    rule = metadata.get("rule")
    if rule and value is not None and not rule[1](value):
        raise ConfigError(key, f"expected {rule[0]}, got {_shown(value)}")


def _pattern_text(pattern: str) -> str:
    """A pattern as users read it: matched as a whole, so without anchors."""
    return pattern.removeprefix("^").removesuffix("$")


def _wrong(tp: Any, value: Any, key: str) -> ConfigError:
    return ConfigError(key, f"expected {type_name(tp)}, got {_shown(value)}")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
