"""Training phantoms and their targets, built from a recipe.

* Phantoms: the embedded brain (one slice) or ``samples`` sparse synthetic phantoms (seed 6.2),
  each drawn with its own seed so a sample is the same in every run and on every device.
* Targets per phantom: ``sequence`` (the images a builder's target sequence produces through the
  same forward model), ``steady_state`` (the same, after ``dummies`` repetitions with the ADC off,
  so no transient is left; both with ``spoiling: ideal`` simulated with ideal spoiling, what a
  spoiled GRE is meant to image, without the echo pathways its played spoiling leaves),
  ``image`` (a user ``.npy`` image, the same for every phantom),
  ``mask`` (1 where ``pd > threshold``) and ``t1`` (the phantom's T1 map in seconds, weighted to
  its tissue, ``pd > threshold``, and with ``relative`` by ``1 / T1`` so that every pixel counts
  by its relative error, not a long-T1 pixel more than a short one). Each target comes with a
  ``weight`` map saying where the loss looks.

Builder options in a recipe use the user's units: a key ending in ``_deg`` is degrees, ``_ms``
milliseconds (lists too), e.g. ``{flip_deg: 5, te_ms: 3, ti_ms: [0, 0]}``; they are converted
here, once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrzero.sequences.builders import BUILDERS
from mrzero.sequences.phantom import Phantom
from mrzero.sequences.phantoms import brain_phantom, sparse_synthetic
from mrzero.sequences.sequence import Sequence
from mrzero.sequences.training.forward import ForwardModel
from mrzero.sequences.training.recipe import PhantomSpec, RecipeError, TargetSpec

UNIT_SUFFIXES = {"_deg": math.pi / 180, "_ms": 1e-3}


def si_options(options: dict[str, Any]) -> dict[str, Any]:
    """Builder keyword arguments from recipe options (``flip_deg`` -> ``flip`` in rad,
    ``te_ms`` -> ``te`` in s)."""
    out = {}
    for key, value in options.items():
        for suffix, scale in UNIT_SUFFIXES.items():
            if key.endswith(suffix):
                key = key[: -len(suffix)]
                value = [v * scale for v in value] if isinstance(value, list) else value * scale
                break
        out[key] = value
    return out


def build_sequence(
    builder: str, options: dict[str, Any], matrix: int, device: torch.device | str, key: str = "sequence"
) -> Sequence:
    """A builder's sequence at ``matrix``; a bad option fails naming the recipe key."""
    try:
        return BUILDERS[builder](matrix=matrix, device=device, **si_options(options))
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"{key}.options: builder {builder!r} refused them: {exc}") from exc


def make_phantoms(spec: PhantomSpec, matrix: int, device: torch.device | str) -> list[Phantom]:
    """The phantom set of a recipe section (``phantom`` or ``held_out``)."""
    size = (matrix, matrix)
    if spec.kind == "brain":
        return [brain_phantom(size, slice=s, device=device) for s in spec.slices]
    return [
        sparse_synthetic(
            size,
            block=(spec.block[0], spec.block[1]),
            n_blocks=spec.n_blocks,
            seed=spec.seed + i,
            spread=spec.spread,
            device=device,
        )
        for i in range(spec.samples)
    ]


def with_dummies(seq: Sequence, dummies: int) -> Sequence:
    """``seq`` preceded by its first ``dummies`` repetitions (cycled) with the ADC off: a steady state."""
    if dummies == 0:
        return seq
    idx = torch.arange(dummies, device=seq.device) % seq.n_rep
    fields = {
        name: torch.cat([getattr(seq, name)[idx], getattr(seq, name)])
        for name in ("flip", "rf_phase", "rf_kind", "duration", "moment", "adc_phase")
    }
    fields["adc"] = torch.cat([torch.zeros_like(seq.adc[idx]), seq.adc])
    layout = None
    if seq.readouts is not None:
        shifted = tuple(replace(r, rep=r.rep + dummies) for r in seq.readouts.readouts)
        layout = replace(seq.readouts, readouts=shifted)
    return replace(seq, name=f"{seq.name} after {dummies} dummies", free={}, readouts=layout, **fields)


@dataclass
class Target:
    """What one phantom should produce: ``image`` ``[n_img, ny, nx]`` and where it counts (``weight``)."""

    image: torch.Tensor
    weight: torch.Tensor


def target_sequence(
    spec: TargetSpec, builder: str, builder_options: dict[str, Any], matrix: int, device: torch.device | str
) -> Sequence:
    """The sequence a ``sequence``/``steady_state`` target is simulated with: the target's own
    builder (with its options, none if it gives none), else the trained sequence's builder and options."""
    name = spec.builder or builder
    options = spec.options if spec.builder or spec.options else builder_options
    return build_sequence(name, options, matrix, device, key="target")


def target_forward(spec: TargetSpec, forward: ForwardModel) -> ForwardModel:
    """The forward model a ``sequence``/``steady_state`` target is simulated through: the recipe's,
    with ideal spoiling when ``spec.spoiling`` asks for it."""
    if spec.spoiling != "ideal":
        return forward
    return replace(forward, engine_options={**forward.engine_options, "ideal_spoiling": True})


class Targets:
    """Targets of a recipe, computed once per phantom (no gradient) and cached."""

    def __init__(
        self,
        spec: TargetSpec,
        forward: ForwardModel,
        matrix: int,
        trained: Sequence,
        builder: str,
        builder_options: dict[str, Any],
        device: torch.device | str,
    ) -> None:
        self.spec, self.forward, self.matrix = spec, forward, matrix
        self.reference: Sequence | None = None
        self._cache: dict[int, Target] = {}
        self._image: torch.Tensor | None = None
        if spec.kind in ("sequence", "steady_state"):
            self.reference = target_sequence(spec, builder, builder_options, matrix, device)
        elif spec.kind == "image":
            self._image = self._load_image(Path(spec.path or ""), device)
        self.trained = trained

    def _load_image(self, path: Path, device: torch.device | str) -> torch.Tensor:
        if not path.is_file():
            raise RecipeError(f"target.path: no such file {path}")
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise RecipeError(f"target.path: {path} is not a .npy array: {exc}") from exc
        if array.ndim == 2:
            array = array[None]
        if array.ndim != 3 or tuple(array.shape[1:]) != (self.matrix, self.matrix):
            raise RecipeError(
                f"target.path: image {path} has shape {tuple(array.shape)}, the recipe's "
                f"matrix needs [{self.matrix}, {self.matrix}] "
                f"(or [n, {self.matrix}, {self.matrix}])"
            )
        if not np.isfinite(array).all():
            raise RecipeError(f"target.path: image {path} contains NaN or inf")
        dtype = torch.complex64 if np.iscomplexobj(array) else torch.float32
        return torch.as_tensor(array).to(device=device, dtype=dtype)

    def get(self, index: int, phantom: Phantom) -> Target:
        """The target of phantom number ``index`` of the set (cached)."""
        if index not in self._cache:
            self._cache[index] = self._make(phantom)
        return self._cache[index]

    @torch.no_grad()
    def _make(self, phantom: Phantom) -> Target:
        ones = torch.ones(self.matrix, self.matrix, device=phantom.pd.device)
        kind = self.spec.kind
        if kind in ("sequence", "steady_state"):
            seq = self.reference
            if kind == "steady_state":
                seq = with_dummies(seq, self.spec.dummies)
            return Target(target_forward(self.spec, self.forward)(seq, phantom), ones)
        if kind == "image":
            return Target(self._image, ones)
        if kind == "mask":
            return Target((phantom.pd > self.spec.threshold).to(ones.dtype)[None], ones)
        tissue = (phantom.pd > self.spec.threshold).to(ones.dtype)
        weight = tissue / phantom.t1 if self.spec.relative else tissue
        return Target((phantom.t1 * tissue)[None], weight)
