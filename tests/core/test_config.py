"""The typed configuration loader: unknown keys at any depth, wrong types, ranges and choices are
refused with the dotted path; defaults, nested dataclasses, lists, tuples and unions load."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mrzero.core.config import ConfigError, describe, load, setting


@dataclass(frozen=True)
class Schedule:
    lr: float = setting(1e-3, "step size", gt=0)
    kind: Literal["cosine", "constant"] = setting("cosine", "how the step size falls")
    epochs: int = setting(80, "passes", ge=1, le=1000)
    odd: int = setting(3, "an odd width", rule=("odd", lambda v: v % 2 == 1))
    device: str = setting("cpu", "torch device", pattern=r"cpu|cuda(:\d+)?")


@dataclass(frozen=True)
class Training:
    schedule: Schedule = field(default_factory=Schedule)
    snr: tuple[float, float] = (5.0, 20.0)
    widths: tuple[int, ...] = (1, 2)
    stages: list[Schedule] = field(default_factory=list)
    heads: dict[str, Schedule] = field(default_factory=dict)
    scale: float | Literal["auto"] | None = setting(None, "a factor or auto", gt=0)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Root:
    name: str
    training: Training = field(default_factory=Training)
    held_out: Training | None = None


def error(data: Any) -> str:
    with pytest.raises(ConfigError) as err:
        load(Root, data)
    return str(err.value)


def test_defaults_nested_values_and_conversions():
    root = load(Root, {"name": "a", "training": {"schedule": {"lr": 2}, "snr": [1, 2.5], "widths": [3]}})
    assert root.training.schedule == Schedule(lr=2.0)
    assert isinstance(root.training.schedule.lr, float)
    assert root.training.snr == (1.0, 2.5) and root.training.widths == (3,)
    assert root.held_out is None and root.training.scale is None
    both = load(Root, {"name": "b", "held_out": {"scale": "auto"}, "training": {"scale": 3}})
    assert both.held_out == Training(scale="auto") and both.training.scale == 3.0


def test_the_example_of_the_issue():
    assert error({"name": "a", "training": {"schedule": {"lr": "abc"}}}) == (
        "training.schedule.lr: expected float, got 'abc'"
    )


KEYS = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)


@given(KEYS)
def test_unknown_key_at_depth_is_named_with_its_path(key):
    if key in ("lr", "kind", "epochs", "odd", "device"):
        return
    deep = {"name": "a", "training": {"stages": [{}, {key: 1}]}}
    assert error(deep).startswith(f"unknown key 'training.stages[1].{key}'; training.stages[1] accepts: ")
    in_dict = {"name": "a", "training": {"heads": {"t1": {key: 1}}}}
    assert f"'training.heads.t1.{key}'" in error(in_dict)
    if key not in ("name", "training", "held_out"):
        assert error({"name": "a", key: 1}).startswith(f"unknown key {key!r}; accepted: held_out, name,")


@given(st.one_of(st.text(max_size=5), st.booleans(), st.none(), st.lists(st.integers(), max_size=2)))
def test_a_number_field_refuses_anything_but_numbers(value):
    message = error({"name": "a", "held_out": {"schedule": {"epochs": value}}})
    assert message == f"held_out.schedule.epochs: expected int, got {value!r}"


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_range_and_finiteness(value):
    data = {"name": "a", "training": {"schedule": {"lr": value}}}
    if math.isfinite(value) and value > 0:
        assert load(Root, data).training.schedule.lr == value
    else:
        assert error(data).startswith("training.schedule.lr: expected ")


@given(st.integers(-5, 1100))
def test_inclusive_bounds(epochs):
    data = {"name": "a", "training": {"schedule": {"epochs": epochs}}}
    if 1 <= epochs <= 1000:
        assert load(Root, data).training.schedule.epochs == epochs
    else:
        assert error(data) == f"training.schedule.epochs: expected a number >= 1 and <= 1000, got {epochs}"


@given(st.text(max_size=10))
def test_literal_choices(kind):
    data = {"name": "a", "training": {"schedule": {"kind": kind}}}
    if kind in ("cosine", "constant"):
        assert load(Root, data).training.schedule.kind == kind
    else:
        assert error(data) == (f"training.schedule.kind: expected one of 'cosine', 'constant', got {kind!r}")


def test_rules_patterns_unions_tuples_and_required_keys():
    assert error({"name": "a", "training": {"schedule": {"odd": 4}}}) == (
        "training.schedule.odd: expected odd, got 4"
    )
    assert "training.schedule.device: expected text matching" in error(
        {"name": "a", "training": {"schedule": {"device": "tpu"}}}
    )
    assert error({"name": "a", "training": {"scale": "dft"}}) == (
        "training.scale: expected float | 'auto' | null, got 'dft'"
    )
    assert (
        error({"name": "a", "training": {"scale": -1}}) == "training.scale: expected a number > 0, got -1.0"
    )
    assert error({"name": "a", "training": {"snr": [1]}}) == (
        "training.snr: expected 2 values (tuple[float, float]), got [1]"
    )
    assert error({"name": "a", "training": {"widths": [1, "2"]}}) == (
        "training.widths[1]: expected int, got '2'"
    )
    assert error({"training": {}}) == "name: required key is missing"
    assert error({"name": "a", "training": 3}) == "training: expected a mapping of keys, got 3"
    assert error({"name": "a", "held_out": {"schedule": {"lr": "x"}}}).startswith("held_out.schedule.lr:")


def test_path_prefix_and_kind_word():
    with pytest.raises(ConfigError, match=r"^unknown recipe key 'recipe\.zz'; recipe accepts: ") as err:
        load(Schedule, {"zz": 1}, "recipe", kind="recipe key")
    assert err.value.path == "recipe.zz"


def test_describe_lists_type_default_range_and_help():
    docs = {d.name: d for d in describe(Schedule)}
    assert docs["lr"].type == "float" and docs["lr"].default == "0.001" and docs["lr"].allowed == "> 0"
    assert docs["kind"].type == "'cosine' | 'constant'" and docs["kind"].help == "how the step size falls"
    assert docs["epochs"].allowed == ">= 1, <= 1000" and docs["odd"].allowed == "odd"
    assert describe(Root)[0].default == "(required)"
