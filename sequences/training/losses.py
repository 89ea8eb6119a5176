"""The training loss and its parts, each reported separately.

``image``: relative error of prediction vs target inside the target's weight map, squared for
``l2`` (``||w (p - t)||^2 / ||w t||^2``, whose square root is the seed's "relative image error")
or ``sum |w (p - t)| / sum |w t|`` for ``l1``; on magnitudes or on complex values.
``sar``: ``lambda_SAR * sum(flip^2) / sar_ref`` (the seed's SAR proxy relative to the reference
sequence, or in rad^2 without one). ``time``: ``lambda_time * scan time / time_ref``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mrzero.sequences.sequence import Sequence


@dataclass
class LossParts:
    """Loss terms (tensors, differentiable) and the relative image error (float, for reports)."""

    image: torch.Tensor
    sar: torch.Tensor
    time: torch.Tensor
    error: float

    @property
    def total(self) -> torch.Tensor:
        return self.image + self.sar + self.time

    def as_dict(self) -> dict[str, float]:
        return {"loss": float(self.total.detach()), "image": float(self.image.detach()),
                "sar": float(self.sar.detach()), "time": float(self.time.detach()), "error": self.error}


def relative_error(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                   compare: str = "magnitude") -> torch.Tensor:
    """``||w (p - t)|| / ||w t||`` on magnitudes (``compare="magnitude"``) or complex values."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {list(pred.shape)} and target {list(target.shape)} differ in shape")
    if compare == "magnitude":
        pred, target = pred.abs(), target.abs()
    w = 1.0 if weight is None else weight
    return (w * (pred - target)).abs().norm() / (w * target).abs().norm().clamp_min(1e-30)


@dataclass
class Loss:
    """Weights and references of the loss terms; call with a prediction, its target and the sequence."""

    image: str = "l2"
    compare: str = "magnitude"
    sar: float = 0.0
    time: float = 0.0
    sar_ref: float = 1.0
    time_ref: float = 1.0

    def __call__(self, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
                 seq: Sequence) -> LossParts:
        err = relative_error(pred, target, weight, self.compare)
        if self.image == "l2":
            image = err ** 2
        else:
            p, t = (pred.abs(), target.abs()) if self.compare == "magnitude" else (pred, target)
            image = (weight * (p - t)).abs().sum() / (weight * t).abs().sum().clamp_min(1e-30)
        zero = torch.zeros((), dtype=image.dtype, device=image.device)
        sar = self.sar * seq.sar_proxy() / self.sar_ref if self.sar else zero
        time = self.time * seq.total_duration() / self.time_ref if self.time else zero
        return LossParts(image=image, sar=sar, time=time, error=float(err.detach()))
