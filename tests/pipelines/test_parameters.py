"""Pipeline parameter declarations: every registered pipeline accepts FIRE's keys and the bundle
name, validates series_index with one limit and default, and binds its own declaration to the
context it runs in."""

from __future__ import annotations

import dataclasses
import typing

import pytest
from mrd_builders import header

from mrzero.pipelines import registry
from mrzero.pipelines.base import Context
from mrzero.pipelines.parameters import (
    COMMON_PARAMETERS,
    SERIES_INDEX_MAX,
    ParameterError,
    TriggerParameters,
    parse_parameters,
)
from mrzero.pipelines.stages.buffer import IMAGE_COUNTERS


@pytest.mark.parametrize("name", registry.names())
def test_every_pipeline_declares_a_frozen_schema_with_fire_keys(name):
    spec = registry.get(name)
    assert dataclasses.is_dataclass(spec.parameters) and spec.parameters.__dataclass_params__.frozen
    params = spec.parse({"config": name, "customconfig": "", "bundle": "learned_gre"})
    assert (params.config, params.customconfig, params.bundle) == (name, "", "learned_gre")
    assert COMMON_PARAMETERS <= {f.name for f in dataclasses.fields(spec.parameters)}
    with pytest.raises(ParameterError, match=rf"^pipeline '{name}': unknown JSON parameter 'nope' \(= 1\)"):
        spec.parse({"nope": 1})
    with pytest.raises(ParameterError, match=rf"^pipeline '{name}': JSON parameter bundle: expected text"):
        spec.parse({"bundle": "../../etc"})


def test_series_index_has_one_limit_and_one_default():
    declaring = [
        n for n in registry.names() if "series_index" in registry.get(n).parameters.__dataclass_fields__
    ]
    assert set(declaring) == {"adjoint", "cartesian", "iterative_adjoint", "mrzero_head", "roar"}
    for name in declaring:
        spec = registry.get(name)
        assert spec.parse({}).series_index == 1
        assert spec.parse({"series_index": SERIES_INDEX_MAX}).series_index == SERIES_INDEX_MAX
        for bad in (SERIES_INDEX_MAX + 1, -1, 1.5, True, "2"):
            with pytest.raises(ParameterError, match="JSON parameter series_index: expected"):
                spec.parse({"series_index": bad})
    assert SERIES_INDEX_MAX + 2 == 65535  # roar's R2* series (series_index + 2) is still a uint16


def test_output_defaults_differ_only_where_declared():
    assert registry.get("cartesian").parse({}).output == "uint16"
    assert registry.get("adjoint").parse({}).output == "uint16"
    assert registry.get("mrzero_head").parse({}).output == "float"  # quantitative maps


def test_trigger_choices_are_the_accumulated_counters():
    (choices,) = [
        typing.get_args(t) for n, t in typing.get_type_hints(TriggerParameters).items() if n == "trigger"
    ]
    assert set(choices) == {*IMAGE_COUNTERS, "average", "segment", "none"}


def test_a_registered_pipeline_binds_its_own_declaration():
    """A context without a pipeline name would validate against the default pipeline; running a
    registered pipeline validates against that pipeline's declaration instead."""
    ctx = Context(header(), parameters={"mask_threshold": 0.3})

    def items():
        assert ctx.params.mask_threshold == 0.3  # bound before the first stage asks for data
        raise LookupError("enough")
        yield

    with pytest.raises(LookupError, match="enough"):
        list(registry.get("roar").run(items(), ctx))
    assert ctx.params.mask_threshold == 0.3
    with pytest.raises(ParameterError, match="unknown JSON parameter 'mask_threshold'"):
        parse_parameters(registry.get("cartesian").parameters, ctx.parameters, "cartesian")
