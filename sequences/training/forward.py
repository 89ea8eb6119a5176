"""The differentiable forward model of training: simulate a sequence on a phantom, reconstruct images.

``ForwardModel(engine, recon, matrix)(seq, phantom)`` returns complex images ``[n_img, ny, nx]``:
one image, or with ``split="repetition"`` one per readout-layout repetition (e.g. the ten
inversion blocks of the T1 sequence), each reconstructed from its own samples and trajectory
with ``mrzero.core.ops.reconstruct``. Targets simulated from a target sequence go through the
same model, so target and prediction share every convention and scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from mrzero.core.ops.reconstruct import reconstruct
from mrzero.sequences.phantom import Phantom
from mrzero.sequences.sequence import Sequence
from mrzero.sequences.simulate import simulate

if TYPE_CHECKING:
    from mrzero.sequences.training.recipe import Recipe


def repetition_groups(seq: Sequence) -> list[torch.Tensor]:
    """Sample indices of each readout-layout repetition, in repetition order."""
    if seq.readouts is None:
        raise ValueError(f"sequence {seq.name!r} has no readout layout: cannot split images by repetition")
    groups: dict[int, list[int]] = {}
    for r in seq.readouts.readouts:
        groups.setdefault(r.repetition, []).extend(range(r.first, r.first + r.n))
    return [torch.tensor(groups[k], device=seq.device) for k in sorted(groups)]


@dataclass
class ForwardModel:
    """Simulation engine and reconstruction settings; call it on (sequence, phantom)."""

    matrix: int
    engine: str = "fast"
    engine_options: dict[str, Any] = field(default_factory=dict)
    method: str = "adjoint"
    iterations: int = 10
    density: str | None = None
    split: str = "none"

    @classmethod
    def from_recipe(cls, recipe: Recipe) -> ForwardModel:
        """The recipe's matrix, engine and reconstruction: what training, the demo and evaluations share."""
        r = recipe.recon
        return cls(
            recipe.matrix,
            recipe.engine.name,
            dict(recipe.engine.options),
            r.method,
            r.iterations,
            r.density,
            r.split,
        )

    def __call__(self, seq: Sequence, phantom: Phantom) -> torch.Tensor:
        signal = simulate(seq, phantom, engine=self.engine, **self.engine_options)
        return self.reconstruct(seq, signal)

    def reconstruct(self, seq: Sequence, signal: torch.Tensor) -> torch.Tensor:
        """Images ``[n_img, ny, nx]`` from the signal ``[coil, samples]`` of ``seq`` (first coil group)."""
        traj = seq.trajectory()[:, :2]
        groups = repetition_groups(seq) if self.split == "repetition" else [None]
        images = []
        for idx in groups:
            s, k = (signal, traj) if idx is None else (signal[:, idx], traj[idx])
            img = reconstruct(
                s, k, self.matrix, method=self.method, iterations=self.iterations, density=self.density
            )
            images.append(img[0])
        return torch.stack(images)
