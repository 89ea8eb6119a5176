"""Training recipes: a strict schema read from YAML, TOML or JSON.

Every section is a dataclass below; a key that is not a field fails at once with its dotted
path (``optimizer.lr_strat``), as does a value of the wrong type or an impossible bound. Units
at this interface are the user's: degrees, milliseconds, mT/m; ``Recipe`` keeps them and the
consumers convert to SI once (``core/units.py``).
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import tomllib
import yaml

from mrzero.core.heads.mlp import FEATURES

#: Where the shipped recipes live; ``recipe_path("gre_from_zero")`` finds them by name.
RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"

SEQUENCE_FIELDS = ("flip", "rf_phase", "duration", "moment", "adc_phase")
REP_SELECTORS = ("all", "excitation", "refocusing", "inversion", "recovery")
#: Adam step sizes per field at the start of the schedule: degrees (flip, phases), ms (duration),
#: cycles/FOV (moment). A recipe's ``optimizer.lr`` overrides them one by one.
DEFAULT_LR = {"flip": 2.0, "rf_phase": 5.0, "moment": 0.5, "duration": 5.0, "adc_phase": 5.0}


class RecipeError(ValueError):
    """A recipe is unusable; the message names the key (dotted path) and what is wrong."""


@dataclass
class FreeSpec:
    """Which entries of one sequence field are learnable: repetitions x events (x axes)."""

    reps: str | list[str] = "all"  # one of REP_SELECTORS, or a list of them (their union)
    events: list[int] | str = "all"  # "all" or event indices (negative counts from the end)
    axes: str = "xy"  # moment axes, any of "xyz"


@dataclass
class SequenceSpec:
    """The sequence being trained: a builder's sequence (or a checkpoint) and what is free."""

    builder: str = "gre"  # mrzero.sequences.builders.BUILDERS name
    options: dict[str, Any] = field(default_factory=dict)  # builder options, degrees and ms
    checkpoint: str | None = None  # start from this training checkpoint's sequence instead
    zero: list[str] = field(default_factory=list)  # fields set to 0 at the start ("from zero")
    zero_flip_deg: float = 0.1  # what "zero" means for flips; see docs/training.md
    learn: dict[str, FreeSpec] = field(default_factory=dict)  # field -> free entries


@dataclass
class TargetSpec:
    """What the output should look like."""

    kind: str = "sequence"  # sequence | steady_state | image | mask | t1
    builder: str | None = None  # sequence/steady_state: default the trained sequence's builder
    options: dict[str, Any] = field(default_factory=dict)
    path: str | None = None  # image: a .npy file of shape [ny, nx]
    dummies: int = 0  # steady_state: repetitions played (ADC off) before the scan
    threshold: float = 0.0  # mask: pd above this is 1; t1: pd above this is the tissue compared
    relative: bool = False  # t1: weight each pixel by 1/T1 (error = RMS of per-pixel relative errors)


@dataclass
class PhantomSpec:
    """The training phantoms: the embedded brain or the seed's sparse synthetic samples."""

    kind: str = "brain"  # brain | sparse
    slice: int = 3
    samples: int = 1
    block: list[int] = field(default_factory=lambda: [12, 12])
    n_blocks: int = 1
    seed: int = 0
    spread: float | None = None  # sparse: None = independent voxels; a number = one tissue per block


@dataclass
class EngineSpec:
    name: str = "fast"
    options: dict[str, Any] = field(default_factory=lambda: {"tolerance": 1e-3})


@dataclass
class ReconSpec:
    """Reconstruction from the trained trajectory (``mrzero.core.ops.reconstruct``)."""

    method: str = "adjoint"  # adjoint | iterative | cg
    iterations: int = 10
    density: str | None = None  # None or "pipe"
    split: str = "none"  # none | repetition: one image per readout-layout repetition (T1 blocks)


@dataclass
class HeadSpec:
    """An optional reconstruction head (``core/heads``)."""

    kind: str = "mlp"  # mlp | cnn
    hidden: list[int] = field(default_factory=lambda: [64, 64, 64])
    channels: int = 16
    layers: int = 3
    scale: float = 1.0  # mlp output scale (e.g. seconds of T1)
    features: str = "magnitude"  # mlp input per pixel: magnitude | complex (see core/heads/mlp.py)
    lr: float = 1e-3


@dataclass
class LossSpec:
    """``image`` (relative L2 or L1 of prediction vs target) + ``sar`` x relative SAR
    + ``time`` x relative scan time."""

    image: str = "l2"  # l2 | l1
    compare: str = "magnitude"  # magnitude | complex
    sar: float = 0.0  # lambda_SAR on sum(flip^2) / the reference sequence's
    time: float = 0.0  # lambda on scan time / the reference sequence's


@dataclass
class BoundsSpec:
    """Physical bounds, applied by projection after every step."""

    max_gradient_mT_m: float = 40.0  # per axis: max moment per event = gamma * G * duration * FOV
    min_duration_ms: float = 0.0
    max_flip_deg: float = 720.0


@dataclass
class RestartSpec:
    """Random restarts: every ``every`` iterations go back to the best parameters, perturb, reset Adam."""

    every: int = 0  # 0: no restarts
    noise: float = 0.0  # perturbation, as a fraction of each field's learning rate x 10


@dataclass
class AlternateSpec:
    """Alternating optimisation (seed 6.2): head first, then ``sequence`` and ``head`` steps in turn,
    and ``head_last`` head steps at the end (the head fitted to the final sequence)."""

    head_first: int = 0
    sequence: int = 0  # 0: no alternation, sequence and head step together
    head: int = 0
    head_last: int = 0
    batch: int = 8  # phantoms per head step
    sequence_batch: int = 1  # phantoms per sequence (or joint) step


@dataclass
class OptimizerSpec:
    """Adam with a step size falling from ``lr`` x 1 to ``lr`` x ``final_factor`` (cosine or exponential)."""

    iterations: int = 500
    lr: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LR))  # degrees, ms, cycles/FOV
    final_factor: float = 0.05
    schedule: str = "cosine"  # cosine | exponential | constant
    clip: float = 1.0  # gradient-norm clip per parameter group (0: off)
    restart: RestartSpec = field(default_factory=RestartSpec)
    alternate: AlternateSpec = field(default_factory=AlternateSpec)


@dataclass
class OutputSpec:
    checkpoint_every: int = 50
    report_every: int = 50


@dataclass
class Recipe:
    """A complete training run; see docs/training.md for every key."""

    name: str = "recipe"
    seed: int = 0
    matrix: int = 32
    device: str = "cpu"
    sequence: SequenceSpec = field(default_factory=SequenceSpec)
    target: TargetSpec = field(default_factory=TargetSpec)
    phantom: PhantomSpec = field(default_factory=PhantomSpec)
    held_out: PhantomSpec | None = None
    engine: EngineSpec = field(default_factory=EngineSpec)
    recon: ReconSpec = field(default_factory=ReconSpec)
    head: HeadSpec | None = None
    loss: LossSpec = field(default_factory=LossSpec)
    bounds: BoundsSpec = field(default_factory=BoundsSpec)
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    output: OutputSpec = field(default_factory=OutputSpec)


# ----------------------------------------------------------------------------- parsing
def _is_instance(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_is_instance(value, t) for t in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        (item,) = typing.get_args(tp)
        return isinstance(value, list) and all(_is_instance(v, item) for v in value)
    if origin is dict:
        key, item = typing.get_args(tp)
        return isinstance(value, dict) and all(_is_instance(v, item) for v in value.values())
    return isinstance(value, tp)


def _build(cls: type, data: Any, path: str) -> Any:
    if not isinstance(data, dict):
        raise RecipeError(f"{path or 'recipe'}: expected a mapping of keys, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = [k for k in data if k not in names]
    if unknown:
        where = f"{path}.{unknown[0]}" if path else str(unknown[0])
        raise RecipeError(f"unknown recipe key {where!r}; {path or 'the top level'} accepts: "
                          f"{', '.join(sorted(names))}")
    values = {}
    for f in fields(cls):
        key = f"{path}.{f.name}" if path else f.name
        if f.name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise RecipeError(f"recipe key {key!r} is required")
            continue
        values[f.name] = _value(hints[f.name], data[f.name], key)
    return cls(**values)


def _value(tp: Any, value: Any, key: str) -> Any:
    args = [t for t in typing.get_args(tp) if t is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1 and is_dataclass(args[0]):
        return None if value is None else _build(args[0], value, key)
    if is_dataclass(tp):
        return _build(tp, value, key)
    if typing.get_origin(tp) is dict and is_dataclass(typing.get_args(tp)[1]):
        if not isinstance(value, dict):
            raise RecipeError(f"{key}: expected a mapping, got {type(value).__name__}")
        item = typing.get_args(tp)[1]
        return {k: _build(item, {} if v in (None, "all") else v, f"{key}.{k}") for k, v in value.items()}
    if not _is_instance(value, tp):
        raise RecipeError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    return float(value) if tp is float else value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise RecipeError(f"{key}: {value!r} is not one of {', '.join(map(str, allowed))}")


def _positive(key: str, value: float, allow_zero: bool = False) -> None:
    if not (value >= 0 if allow_zero else value > 0):
        raise RecipeError(f"{key}: must be {'non-negative' if allow_zero else 'positive'}, got {value}")


def validate(recipe: Recipe) -> Recipe:
    """Check choices and bounds that types alone cannot; raise ``RecipeError`` naming the key."""
    from mrzero.sequences.builders import BUILDERS
    from mrzero.sequences.simulate import ENGINES

    r = recipe
    if r.matrix < 4:
        raise RecipeError(f"matrix: must be at least 4, got {r.matrix}")
    _choice("sequence.builder", r.sequence.builder, tuple(BUILDERS))
    if r.target.builder is not None:
        _choice("target.builder", r.target.builder, tuple(BUILDERS))
    for name in r.sequence.zero:
        _choice("sequence.zero", name, SEQUENCE_FIELDS)
    _positive("sequence.zero_flip_deg", r.sequence.zero_flip_deg, allow_zero=True)
    if not r.sequence.learn and r.head is None:
        raise RecipeError("sequence.learn: nothing is learnable (no sequence field and no head)")
    for name, spec in r.sequence.learn.items():
        _choice("sequence.learn", name, SEQUENCE_FIELDS)
        for selector in [spec.reps] if isinstance(spec.reps, str) else spec.reps:
            _choice(f"sequence.learn.{name}.reps", selector, REP_SELECTORS)
        if isinstance(spec.events, str):
            _choice(f"sequence.learn.{name}.events", spec.events, ("all",))
        if not spec.axes or set(spec.axes) - set("xyz"):
            raise RecipeError(f"sequence.learn.{name}.axes: use letters of 'xyz', got {spec.axes!r}")
    _choice("target.kind", r.target.kind, ("sequence", "steady_state", "image", "mask", "t1"))
    if r.target.kind == "image" and not r.target.path:
        raise RecipeError("target.path: an image target needs a .npy file of shape [matrix, matrix]")
    _positive("target.dummies", r.target.dummies, allow_zero=True)
    _choice("phantom.kind", r.phantom.kind, ("brain", "sparse"))
    for key, ph in (("phantom", r.phantom), ("held_out", r.held_out)):
        if ph is None:
            continue
        _choice(f"{key}.kind", ph.kind, ("brain", "sparse"))
        _positive(f"{key}.samples", ph.samples)
        if ph.kind == "sparse" and (len(ph.block) != 2 or not all(0 < b <= r.matrix for b in ph.block)):
            raise RecipeError(f"{key}.block: must be [by, bx] within the matrix {r.matrix}, got {ph.block}")
        if ph.spread is not None:
            _positive(f"{key}.spread", ph.spread, allow_zero=True)
    _choice("engine.name", r.engine.name, tuple(ENGINES))
    _choice("recon.method", r.recon.method, ("adjoint", "iterative", "cg"))
    _choice("recon.split", r.recon.split, ("none", "repetition"))
    _positive("recon.iterations", r.recon.iterations)
    if r.head is not None:
        _choice("head.kind", r.head.kind, ("mlp", "cnn"))
        _choice("head.features", r.head.features, FEATURES)
        _positive("head.lr", r.head.lr)
    if r.target.kind == "t1" and (r.head is None or r.head.kind != "mlp"):
        raise RecipeError("head: a t1 target needs an mlp head that turns signal evolutions into T1")
    _choice("loss.image", r.loss.image, ("l2", "l1"))
    _choice("loss.compare", r.loss.compare, ("magnitude", "complex"))
    _positive("loss.sar", r.loss.sar, allow_zero=True)
    _positive("loss.time", r.loss.time, allow_zero=True)
    _positive("bounds.max_gradient_mT_m", r.bounds.max_gradient_mT_m)
    _positive("bounds.min_duration_ms", r.bounds.min_duration_ms, allow_zero=True)
    _positive("bounds.max_flip_deg", r.bounds.max_flip_deg)
    o = r.optimizer
    o.lr = {**DEFAULT_LR, **o.lr}
    _positive("optimizer.iterations", o.iterations)
    for name, lr in o.lr.items():
        _choice("optimizer.lr", name, SEQUENCE_FIELDS)
        _positive(f"optimizer.lr.{name}", lr)
    if not 0 < o.final_factor <= 1:
        raise RecipeError(f"optimizer.final_factor: must be in (0, 1], got {o.final_factor}")
    _choice("optimizer.schedule", o.schedule, ("cosine", "exponential", "constant"))
    _positive("optimizer.clip", o.clip, allow_zero=True)
    _positive("optimizer.restart.every", o.restart.every, allow_zero=True)
    _positive("optimizer.restart.noise", o.restart.noise, allow_zero=True)
    a = o.alternate
    for key in ("head_first", "sequence", "head", "head_last"):
        _positive(f"optimizer.alternate.{key}", getattr(a, key), allow_zero=True)
    _positive("optimizer.alternate.batch", a.batch)
    _positive("optimizer.alternate.sequence_batch", a.sequence_batch)
    if (a.sequence > 0) != (a.head > 0):
        raise RecipeError("optimizer.alternate: set both 'sequence' and 'head' step counts, or neither")
    if (a.sequence or a.head_first or a.head_last) and r.head is None:
        raise RecipeError("optimizer.alternate: alternating optimisation needs a head")
    _positive("output.checkpoint_every", r.output.checkpoint_every)
    _positive("output.report_every", r.output.report_every)
    return recipe


def parse_recipe(data: Any, source: str = "recipe") -> Recipe:
    """A validated ``Recipe`` from plain data (what a YAML/TOML/JSON file holds)."""
    try:
        return validate(_build(Recipe, data, ""))
    except RecipeError as exc:
        raise RecipeError(f"{source}: {exc}") from None


def recipe_path(name_or_path: str | Path) -> Path:
    """A recipe file: an existing path, or the name of a shipped recipe (``gre_from_zero``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = RECIPES_DIR / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    names = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
    raise RecipeError(f"{name_or_path}: no such recipe file, and no shipped recipe of that name "
                      f"(shipped: {', '.join(names)})")


def load_recipe(name_or_path: str | Path) -> Recipe:
    """Read and validate a recipe from ``.yaml``/``.yml``, ``.toml`` or ``.json`` (or a shipped name)."""
    path = recipe_path(name_or_path)
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        elif path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise RecipeError(f"{path}: recipe must be .yaml, .yml, .toml or .json")
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise RecipeError(f"{path}: not valid {path.suffix[1:].upper()}: {exc}") from None
    return parse_recipe(data if data is not None else {}, str(path))
