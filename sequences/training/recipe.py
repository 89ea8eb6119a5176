"""Training recipes: a strict schema read from YAML, TOML or JSON.

Every section is a dataclass below, loaded by the project's one typed loader (``core/config.py``):
a key that is not a field fails at once with its dotted path (``optimizer.lr_strat``), as does a
value of the wrong type, outside its range or not one of its choices; ``validate`` adds the checks
that span several keys or depend on registries (builders, engines). Units
at this interface are the user's: degrees, milliseconds, mT/m; ``Recipe`` keeps them and the
consumers convert to SI once (``core/units.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tomllib
import yaml

from mrzero.core.brain_atlas import N_BRAIN_SLICES, check_slice
from mrzero.core.config import ConfigError, load, setting
from mrzero.core.heads.mlp import FEATURES

#: Where the shipped recipes live; ``recipe_path("gre_from_zero")`` finds them by name.
RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"

SEQUENCE_FIELDS = ("flip", "rf_phase", "duration", "moment", "adc_phase")
REP_SELECTORS = ("all", "excitation", "refocusing", "inversion", "recovery")
#: ``learn.<field>.events`` by name: every event, or those up to each repetition's last ADC event
#: (the moments that place its samples; rewinder and spoiler stay as built).
EVENT_SELECTORS = ("all", "encoding")
#: How free moments may be tied: "readout" plays one constant gradient during a repetition's ADC.
TIES = ("none", "readout")
#: Adam step sizes per field at the start of the schedule: degrees (flip, phases), ms (duration),
#: cycles/FOV (moment). A recipe's ``optimizer.lr`` overrides them one by one.
DEFAULT_LR = {"flip": 2.0, "rf_phase": 5.0, "moment": 0.5, "duration": 5.0, "adc_phase": 5.0}


class RecipeError(ValueError):
    """A recipe is unusable; the message names the key (dotted path) and what is wrong."""


@dataclass
class FreeSpec:
    """Which entries of one sequence field are learnable: repetitions x events (x axes)."""

    reps: str | list[str] = "all"  # one of REP_SELECTORS, or a list of them (their union)
    events: list[int] | str = "all"  # "all", "encoding" (up to each repetition's last ADC event) or indices
    axes: str = "xy"  # moment axes, any of "xyz"
    tie: Literal["none", "readout"] = "none"  # moment: "readout" = one moment for a repetition's ADC events


@dataclass
class SequenceSpec:
    """The sequence being trained: a builder's sequence (or a checkpoint) and what is free."""

    builder: str = "gre"  # mrzero.sequences.builders.BUILDERS name
    options: dict[str, Any] = field(default_factory=dict)  # builder options, degrees and ms
    checkpoint: str | None = None  # start from this training checkpoint's sequence instead
    zero: list[str] = field(default_factory=list)  # learned fields whose free entries start at 0
    zero_flip_deg: float = setting(0.1, 'what "zero" means for flips; see docs/training.md', ge=0)
    learn: dict[str, FreeSpec] = field(default_factory=dict)  # field -> free entries


@dataclass
class TargetSpec:
    """What the output should look like."""

    kind: Literal["sequence", "steady_state", "image", "mask", "t1"] = "sequence"
    builder: str | None = None  # sequence/steady_state: default the trained sequence's builder
    options: dict[str, Any] = field(default_factory=dict)
    path: str | None = None  # image: a .npy file of shape [ny, nx]
    dummies: int = setting(0, "steady_state: repetitions played (ADC off) before the scan", ge=0)
    spoiling: Literal["as_played", "ideal"] = "as_played"  # sequence/steady_state (engine fast)
    threshold: float = 0.0  # mask: pd above this is 1; t1: pd above this is the tissue compared
    relative: bool = False  # t1: weight each pixel by 1/T1 (error = RMS of per-pixel relative errors)


@dataclass
class PhantomSpec:
    """The training phantoms: the embedded brain or the seed's sparse synthetic samples."""

    kind: Literal["brain", "sparse"] = "brain"
    slice: int | list[int] = 3  # brain: a slice, or a list of them (one phantom each)
    samples: int = setting(1, "phantoms per batch", ge=1)
    block: list[int] = field(default_factory=lambda: [12, 12])
    n_blocks: int = 1
    seed: int = 0
    spread: float | None = setting(
        None, "sparse: None = independent voxels; a number = one tissue per block", ge=0
    )

    @property
    def slices(self) -> list[int]:
        """The brain slices as indices 0..7 (``slice`` may be one or several, negative ones counting
        from the end as in ``brain_phantom``), so that slices compare as the phantoms they make."""
        given = [self.slice] if isinstance(self.slice, int) else self.slice
        return [s % N_BRAIN_SLICES for s in given]


@dataclass
class EngineSpec:
    name: str = "fast"
    options: dict[str, Any] = field(default_factory=lambda: {"tolerance": 1e-3})


@dataclass
class ReconSpec:
    """Reconstruction from the trained trajectory (``mrzero.core.ops.reconstruct``)."""

    method: Literal["adjoint", "iterative", "cg"] = "adjoint"
    iterations: int = setting(10, "iterations of the iterative methods", ge=1)
    density: Literal["pipe"] | None = None
    split: Literal["none", "repetition"] = "none"  # repetition: one image per readout-layout repetition


@dataclass
class HeadSpec:
    """An optional reconstruction head (``core/heads``)."""

    kind: Literal["mlp", "cnn"] = "mlp"
    hidden: list[int] = field(default_factory=lambda: [64, 64, 64])
    channels: int = 16
    layers: int = 3
    scale: float = 1.0  # mlp output scale (e.g. seconds of T1)
    features: str = "magnitude"  # mlp input per pixel: magnitude | complex (see core/heads/mlp.py)
    lr: float = setting(1e-3, "Adam step size of the head", gt=0)


@dataclass
class LossSpec:
    """``image`` (relative L2 or L1 of prediction vs target) + ``high_k`` x the squared relative
    error at |k| >= ``high_k_from`` + ``sar`` x relative SAR + ``time`` x relative scan time
    (+ the annealed ``encoding`` prior while training)."""

    image: Literal["l2", "l1"] = "l2"
    compare: Literal["magnitude", "complex"] = "magnitude"
    sar: float = setting(0.0, "lambda_SAR on sum(flip^2) / the reference sequence's", ge=0)
    time: float = setting(0.0, "lambda on scan time / the reference sequence's", ge=0)
    encoding: float = setting(
        0.0, "weight of the encoding prior (frame potential of the ADC samples, encoding_prior.py)", ge=0
    )
    encoding_until: float = setting(
        0.7, "fraction of the iterations at which the encoding prior's weight has fallen to 0", gt=0, le=1
    )
    high_k: float = setting(
        0.0, "lambda on the squared relative error at |k| >= high_k_from (losses.py: blur's weight)", ge=0
    )
    high_k_from: float = setting(12.0, "inner edge of the high_k ring, cycles/FOV", gt=0)


@dataclass
class BoundsSpec:
    """Physical bounds, applied by projection after every step."""

    max_gradient_mT_m: float | None = setting(
        None,
        "per axis: max moment per event = gamma * G * duration * FOV (default: hardware's max_grad)",
        gt=0,
    )
    min_duration_ms: float = setting(0.0, "shortest event", ge=0)
    max_flip_deg: float = setting(720.0, "largest flip angle", gt=0)


@dataclass
class HardwareSpec:
    """The scanner trained for: a Pulseq export preset (``sequences/pulseq/system.py``) with
    overrides in the user's units; ``enforce`` projects every step onto what the export builds
    without stretching (``hardware.py``), ``check`` exports the result and fails the recipe on
    any stretched event."""

    preset: str = "default"
    max_grad_mT_m: float | None = setting(None, "override: gradient amplitude per axis", gt=0)
    max_slew_T_m_s: float | None = setting(None, "override: slew rate per axis", gt=0)
    max_grad_vector_mT_m: float | None = setting(None, "override: gradient amplitude as a vector", gt=0)
    max_slew_vector_T_m_s: float | None = setting(None, "override: slew rate as a vector", gt=0)
    max_b1_uT: float | None = setting(None, "override: peak RF amplitude", gt=0)
    max_b1_rms_uT: float | None = setting(None, "override: RMS RF amplitude over the sequence", gt=0)
    rf_dead_time_us: float | None = setting(None, "override: before an RF pulse", ge=0)
    rf_ringdown_time_us: float | None = setting(None, "override: after an RF pulse", ge=0)
    adc_dead_time_us: float | None = setting(None, "override: before and after an ADC", ge=0)
    enforce: bool = True
    check: bool = True

    def overrides(self) -> dict[str, float]:
        """The set overrides as ``HardwareLimits`` fields in SI units."""
        scale = {
            "max_grad_mT_m": ("max_grad", 1e-3),
            "max_slew_T_m_s": ("max_slew", 1.0),
            "max_grad_vector_mT_m": ("max_grad_vector", 1e-3),
            "max_slew_vector_T_m_s": ("max_slew_vector", 1.0),
            "max_b1_uT": ("max_b1", 1e-6),
            "max_b1_rms_uT": ("max_b1_rms", 1e-6),
            "rf_dead_time_us": ("rf_dead_time", 1e-6),
            "rf_ringdown_time_us": ("rf_ringdown_time", 1e-6),
            "adc_dead_time_us": ("adc_dead_time", 1e-6),
        }
        return {
            name: getattr(self, key) * factor
            for key, (name, factor) in scale.items()
            if getattr(self, key) is not None
        }


@dataclass
class RestartSpec:
    """Random restarts: every ``every`` iterations go back to the best parameters, perturb, reset Adam."""

    every: int = setting(0, "iterations between restarts (0: no restarts)", ge=0)
    noise: float = setting(0.0, "perturbation, as a fraction of each field's learning rate x 10", ge=0)


@dataclass
class AlternateSpec:
    """Alternating optimisation (seed 6.2): head first, then ``sequence`` and ``head`` steps in turn,
    and ``head_last`` head steps at the end (the head fitted to the final sequence)."""

    head_first: int = setting(0, "head steps before the alternation", ge=0)
    sequence: int = setting(0, "sequence steps per turn (0: no alternation, both step together)", ge=0)
    head: int = setting(0, "head steps per turn", ge=0)
    head_last: int = setting(0, "head steps at the end", ge=0)
    batch: int = setting(8, "phantoms per head step", ge=1)
    sequence_batch: int = setting(1, "phantoms per sequence (or joint) step", ge=1)


@dataclass
class OptimizerSpec:
    """Adam with a step size falling from ``lr`` x 1 to ``lr`` x ``final_factor`` (cosine or exponential)."""

    iterations: int = setting(500, "optimisation steps", ge=1)
    lr: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LR))  # degrees, ms, cycles/FOV
    final_factor: float = setting(0.05, "step size at the end, as a fraction of lr", gt=0, le=1)
    schedule: Literal["cosine", "exponential", "constant"] = "cosine"
    clip: float = setting(1.0, "gradient-norm clip per parameter group (0: off)", ge=0)
    restart: RestartSpec = field(default_factory=RestartSpec)
    alternate: AlternateSpec = field(default_factory=AlternateSpec)


@dataclass
class OutputSpec:
    checkpoint_every: int = setting(50, "iterations between checkpoints", ge=1)
    report_every: int = setting(50, "iterations between report figures", ge=1)


@dataclass
class Recipe:
    """A complete training run; see docs/training.md for every key."""

    name: str = "recipe"
    seed: int = 0
    matrix: int = setting(32, "image matrix (square)", ge=4)
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
    hardware: HardwareSpec = field(default_factory=HardwareSpec)
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    output: OutputSpec = field(default_factory=OutputSpec)


# ----------------------------------------------------------------------------- parsing
def _learn_shorthand(data: Any) -> Any:
    """``sequence.learn.FIELD: all`` (or empty) stands for every entry of the field: ``FreeSpec()``."""
    sequence = data.get("sequence") if isinstance(data, dict) else None
    learn = sequence.get("learn") if isinstance(sequence, dict) else None
    if not isinstance(learn, dict):
        return data
    expanded = {k: {} if v in (None, "all") else v for k, v in learn.items()}
    return {**data, "sequence": {**sequence, "learn": expanded}}


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise RecipeError(f"{key}: {value!r} is not one of {', '.join(map(str, allowed))}")


def _positive(key: str, value: float) -> None:
    if not value > 0:
        raise RecipeError(f"{key}: must be positive, got {value}")


def validate(recipe: Recipe) -> Recipe:
    """Check choices and bounds that types alone cannot; raise ``RecipeError`` naming the key."""
    from mrzero.sequences.builders import BUILDERS
    from mrzero.sequences.simulate import ENGINES

    r = recipe
    _choice("sequence.builder", r.sequence.builder, tuple(BUILDERS))
    if r.target.builder is not None:
        _choice("target.builder", r.target.builder, tuple(BUILDERS))
    for name in r.sequence.zero:
        _choice("sequence.zero", name, SEQUENCE_FIELDS)
        if name not in r.sequence.learn:
            raise RecipeError(
                f"sequence.zero: {name} is not in sequence.learn; only learnable entries start at zero"
            )
    if not r.sequence.learn and r.head is None:
        raise RecipeError("sequence.learn: nothing is learnable (no sequence field and no head)")
    for name, spec in r.sequence.learn.items():
        _choice("sequence.learn", name, SEQUENCE_FIELDS)
        for selector in [spec.reps] if isinstance(spec.reps, str) else spec.reps:
            _choice(f"sequence.learn.{name}.reps", selector, REP_SELECTORS)
        if isinstance(spec.events, str):
            _choice(f"sequence.learn.{name}.events", spec.events, EVENT_SELECTORS)
        if not spec.axes or set(spec.axes) - set("xyz"):
            raise RecipeError(f"sequence.learn.{name}.axes: use letters of 'xyz', got {spec.axes!r}")
        _choice(f"sequence.learn.{name}.tie", spec.tie, TIES)
        if spec.tie != "none" and name != "moment":
            raise RecipeError(f"sequence.learn.{name}.tie: only moments can be tied, not {name}")
    if "ideal_spoiling" in r.engine.options:
        raise RecipeError(
            "engine.options.ideal_spoiling: the trained sequence is simulated as it is played; "
            "ideal spoiling belongs to the target (target.spoiling: ideal)"
        )
    if r.target.spoiling == "ideal" and (
        r.target.kind not in ("sequence", "steady_state") or r.engine.name != "fast"
    ):
        raise RecipeError(
            "target.spoiling: ideal spoiling is a fast-engine option for sequence and steady_state "
            f"targets, not for a {r.target.kind} target on the {r.engine.name} engine"
        )
    k_corner = r.matrix / 2 * 2**0.5
    if r.loss.high_k and r.loss.high_k_from >= k_corner:
        raise RecipeError(
            f"loss.high_k_from: {r.loss.high_k_from:g} cycles/FOV lies beyond every k-space point of "
            f"a {r.matrix}x{r.matrix} image (|k| <= {k_corner:.1f}); the ring would be empty"
        )
    if r.loss.encoding and r.recon.split != "none":
        raise RecipeError(
            "loss.encoding: the encoding prior scores all samples as one image's; with recon.split "
            f"{r.recon.split!r} each image has its own samples, and repeats would count as overlaps"
        )
    if r.target.kind == "image" and not r.target.path:
        raise RecipeError("target.path: an image target needs a .npy file of shape [matrix, matrix]")
    for key, ph in (("phantom", r.phantom), ("held_out", r.held_out)):
        if ph is None:
            continue
        if ph.kind == "sparse" and (len(ph.block) != 2 or not all(0 < b <= r.matrix for b in ph.block)):
            raise RecipeError(f"{key}.block: must be [by, bx] within the matrix {r.matrix}, got {ph.block}")
        if ph.kind == "brain":
            try:  # the phantom's own range rule, named by the recipe key before training starts
                for s in [ph.slice] if isinstance(ph.slice, int) else ph.slice:
                    check_slice((r.matrix, r.matrix), s)
            except IndexError as exc:
                raise RecipeError(f"{key}.slice: {exc}") from exc
            if not ph.slices or len(set(ph.slices)) != len(ph.slices):
                raise RecipeError(f"{key}.slice: give one slice or a list of distinct ones, got {ph.slice}")
    _choice("engine.name", r.engine.name, tuple(ENGINES))
    if r.head is not None:
        _choice("head.features", r.head.features, FEATURES)
    if r.target.kind == "t1" and (r.head is None or r.head.kind != "mlp"):
        raise RecipeError("head: a t1 target needs an mlp head that turns signal evolutions into T1")
    from mrzero.sequences.pulseq.system import PRESETS

    _choice("hardware.preset", r.hardware.preset, tuple(PRESETS))
    max_grad = r.hardware.max_grad_mT_m or PRESETS[r.hardware.preset].max_grad * 1e3
    over = r.bounds.max_gradient_mT_m is not None and r.bounds.max_gradient_mT_m > max_grad * (1 + 1e-9)
    if over and r.hardware.enforce:
        raise RecipeError(
            f"bounds.max_gradient_mT_m: {r.bounds.max_gradient_mT_m} mT/m exceeds the hardware's "
            f"max_grad {max_grad} mT/m (hardware.preset {r.hardware.preset!r}); the export could not play it"
        )
    o = r.optimizer
    o.lr = {**DEFAULT_LR, **o.lr}
    for name, lr in o.lr.items():
        _choice("optimizer.lr", name, SEQUENCE_FIELDS)
        _positive(f"optimizer.lr.{name}", lr)
    a = o.alternate
    if (a.sequence > 0) != (a.head > 0):
        raise RecipeError("optimizer.alternate: set both 'sequence' and 'head' step counts, or neither")
    if (a.sequence or a.head_first or a.head_last) and r.head is None:
        raise RecipeError("optimizer.alternate: alternating optimisation needs a head")
    return recipe


def parse_recipe(data: Any, source: str = "recipe") -> Recipe:
    """A validated ``Recipe`` from plain data (what a YAML/TOML/JSON file holds)."""
    try:
        return validate(load(Recipe, _learn_shorthand(data), kind="recipe key"))
    except (ConfigError, RecipeError) as exc:
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
    raise RecipeError(
        f"{name_or_path}: no such recipe file, and no shipped recipe of that name "
        f"(shipped: {', '.join(names)})"
    )


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
