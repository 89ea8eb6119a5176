"""Recipes: strict schema in YAML/TOML/JSON, unknown keys and impossible values named, shipped ones valid."""

from __future__ import annotations

import json

import pytest
import yaml
from training_cases import FROM_ZERO, recipe

from mrzero.sequences.training.recipe import DEFAULT_LR, RECIPES_DIR, RecipeError, load_recipe, parse_recipe

SHIPPED = (
    "gre_from_zero",
    "gre_sar",
    "rare_sar",
    "sparse_synthetic",
    "mask_target",
    "radial_vfa",
    "t1_mapping",
)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_recipes_load_by_name(name):
    r = load_recipe(name)
    assert r.name == name
    assert (RECIPES_DIR / f"{name}.yaml").is_file()


def test_same_recipe_from_yaml_toml_and_json(tmp_path):
    data = {"name": "x", "matrix": 8, "sequence": {"learn": {"flip": "all"}}, "loss": {"sar": 0.5}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "r.json").write_text(json.dumps(data))
    (tmp_path / "r.toml").write_text(
        'name = "x"\nmatrix = 8\n[sequence.learn]\nflip = "all"\n[loss]\nsar = 0.5\n'
    )
    loaded = [load_recipe(tmp_path / f"r.{ext}") for ext in ("yaml", "toml", "json")]
    assert loaded[0] == loaded[1] == loaded[2]
    assert loaded[0].loss.sar == 0.5 and loaded[0].optimizer.lr == DEFAULT_LR


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"optimizer": {"lr_strat": 1}}, "'optimizer.lr_strat'"),
        ({"sequnce": {}}, "'sequnce'"),
        ({"sequence": {"learn": {"moment": {"axis": "x"}}}}, "'sequence.learn.moment.axis'"),
        ({"optimizer": {"restart": {"evry": 3}}}, "'optimizer.restart.evry'"),
    ],
)
def test_unknown_keys_fail_naming_the_key(data, named):
    with pytest.raises(RecipeError, match="unknown recipe key") as err:
        parse_recipe(recipe(FROM_ZERO, **data))
    assert named in str(err.value)


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"bounds": {"max_gradient_mT_m": -40}}, "bounds.max_gradient_mT_m"),
        ({"bounds": {"max_flip_deg": 0}}, "bounds.max_flip_deg"),
        ({"bounds": {"min_duration_ms": -1}}, "bounds.min_duration_ms"),
        ({"optimizer": {"final_factor": 2.0}}, "optimizer.final_factor"),
        ({"optimizer": {"lr": {"flip": -1}}}, "optimizer.lr.flip"),
        ({"matrix": "32"}, "matrix"),
        ({"engine": {"name": "warp"}}, "engine.name"),
        ({"target": {"kind": "t1"}}, "head"),
        ({"head": {"kind": "mlp", "features": "phase"}}, "head.features"),
        ({"phantom": {"kind": "sparse", "block": [2, 2], "spread": -0.1}}, "phantom.spread"),
        ({"target": {"kind": "image"}}, "target.path"),
        (
            {"sequence": {"builder": "gre", "learn": {"flip": {"reps": "sometimes"}}}},
            "sequence.learn.flip.reps",
        ),
        ({"sequence": {"builder": "gre", "learn": {}}}, "sequence.learn"),
        ({"phantom": {"kind": "brain", "slice": 8}}, "phantom.slice"),
        ({"held_out": {"kind": "brain", "slice": [2, 2]}}, "held_out.slice"),
        ({"phantom": {"kind": "brain", "slice": []}}, "phantom.slice"),
        (
            {"sequence": {"builder": "gre", "zero": ["duration"], "learn": {"flip": "all"}}},
            "sequence.zero",
        ),
        (
            {"sequence": {"builder": "gre", "learn": {"moment": {"events": "readout"}}}},
            "sequence.learn.moment.events",
        ),
        ({"loss": {"encoding": -1}}, "loss.encoding"),
        ({"loss": {"encoding_until": 0}}, "loss.encoding_until"),
        ({"loss": {"encoding_until": 1.5}}, "loss.encoding_until"),
        ({"loss": {"encoding": 1.0}, "recon": {"split": "repetition"}}, "loss.encoding"),
        ({"loss": {"high_k": -1}}, "loss.high_k"),
        ({"target": {"kind": "sequence", "spoiling": "perfect"}}, "target.spoiling"),
        ({"target": {"kind": "mask", "spoiling": "ideal"}}, "target.spoiling"),
        ({"target": {"spoiling": "ideal"}, "engine": {"name": "isochromat"}}, "target.spoiling"),
        ({"engine": {"name": "fast", "options": {"ideal_spoiling": True}}}, "engine.options.ideal_spoiling"),
        ({"loss": {"high_k": 1.0, "high_k_from": 6}}, "loss.high_k_from"),  # 8x8: |k| <= 5.7
    ],
)
def test_impossible_values_fail_naming_the_key(data, named):
    with pytest.raises(RecipeError) as err:
        parse_recipe(recipe(FROM_ZERO, **data))
    assert named in str(err.value)


def test_unknown_recipe_name_lists_the_shipped_ones():
    with pytest.raises(RecipeError, match="gre_from_zero"):
        load_recipe("no_such_recipe")


def test_recipe_file_that_is_not_yaml_is_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(bad)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"optimizer": {"schedule": "linear"}},
            "optimizer.schedule: expected one of 'cosine', 'exponential', 'constant', got 'linear'",
        ),
        ({"optimizer": {"alternate": {"batch": "8"}}}, "optimizer.alternate.batch: expected int, got '8'"),
        ({"phantom": {"samples": 0}}, "phantom.samples: expected a number >= 1, got 0"),
        ({"loss": {"sar": True}}, "loss.sar: expected float, got True"),
        ({"recon": {"density": "ramp"}}, "recon.density: expected 'pipe' | null, got 'ramp'"),
    ],
)
def test_types_ranges_and_choices_fail_with_the_dotted_path(data, message):
    """The shared loader (core/config.py) checks types, ranges and choices; the source file prefixes."""
    with pytest.raises(RecipeError) as err:
        parse_recipe(recipe(FROM_ZERO, **data), "r.yaml")
    assert str(err.value) == f"r.yaml: {message}"


@pytest.mark.parametrize(
    "path",
    sorted([*RECIPES_DIR.glob("*.yaml"), *(RECIPES_DIR.parent / "bundles" / "recipes").glob("*.yaml")]),
    ids=lambda p: f"{p.parent.parent.name}/{p.name}",
)
def test_every_recipe_in_the_repository_loads(path):
    """The shipped recipes and those the shipped bundles were trained from (globbed, not listed)."""
    assert load_recipe(path).name


def test_brain_phantoms_of_several_slices_are_those_slices():
    """``slice: [1, 4, 6]`` gives one phantom per slice, each the brain phantom of that slice
    (compared with the phantom module's own slices, which a wrap-around would not match)."""
    import torch

    from mrzero.sequences.phantoms import brain_phantom
    from mrzero.sequences.training.targets import make_phantoms

    r = parse_recipe(recipe(FROM_ZERO, phantom={"kind": "brain", "slice": [1, 4, 6]}))
    assert r.phantom.slices == [1, 4, 6] and parse_recipe(recipe(FROM_ZERO)).phantom.slices == [3]
    # negative slices count from the end, as in brain_phantom: slice -1 is slice 7 (so that a scorer
    # does not count slice 7 as unseen when the recipe trained on -1)
    assert parse_recipe(recipe(FROM_ZERO, phantom={"kind": "brain", "slice": [-1, 2]})).phantom.slices == [
        7,
        2,
    ]
    made = make_phantoms(r.phantom, 16, "cpu")
    assert len(made) == 3
    for phantom, s in zip(made, (1, 4, 6), strict=True):
        assert torch.equal(phantom.pd, brain_phantom((16, 16), slice=s).pd)
    assert not torch.equal(made[0].pd, made[1].pd)
