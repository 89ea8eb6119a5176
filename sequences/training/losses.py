"""The training loss and its parts, each reported separately.

``image``: relative error of prediction vs target inside the target's weight map, squared for
``l2`` (``||w (p - t)||^2 / ||w t||^2``, whose square root is the seed's "relative image error")
or ``sum |w (p - t)| / sum |w t|`` for ``l1``; on magnitudes or on complex values.
``sar``: ``lambda_SAR * sum(flip^2) / sar_ref`` (the seed's SAR proxy relative to the reference
sequence, or in rad^2 without one). ``time``: ``lambda_time * scan time / time_ref``.
``band_errors``: the relative error per ring of k-space (|k| < 4, 4-8, 8-12, >= 12 cycles/FOV),
so that blur, which the total hides when most of the target's energy is at low |k|, shows.
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
        return {
            "loss": float(self.total.detach()),
            "image": float(self.image.detach()),
            "sar": float(self.sar.detach()),
            "time": float(self.time.detach()),
            "error": self.error,
        }


def relative_error(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, compare: str = "magnitude"
) -> torch.Tensor:
    """``||w (p - t)|| / ||w t||`` on magnitudes (``compare="magnitude"``) or complex values."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {list(pred.shape)} and target {list(target.shape)} differ in shape")
    if compare == "magnitude":
        pred, target = pred.abs(), target.abs()
    w = 1.0 if weight is None else weight
    return (w * (pred - target)).abs().norm() / (w * target).abs().norm().clamp_min(1e-30)


#: Edges of the k-space bands of ``band_errors`` in cycles/FOV.
BAND_EDGES = (4.0, 8.0, 12.0)


def band_names(matrix: int, edges: tuple[float, ...] = BAND_EDGES) -> list[str]:
    """Names of the bands that hold k-space points at ``matrix`` (``err_k0-4``, ..., ``err_k12+``)."""
    k_max = matrix / 2 * 2**0.5
    bounds = (0.0, *edges)
    names = [f"err_k{lo:g}-{hi:g}" for lo, hi in zip(bounds, edges, strict=False) if lo < k_max]
    return names + ([f"err_k{edges[-1]:g}+"] if edges[-1] < k_max else [])


@torch.no_grad()
def band_errors(
    pred: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    compare: str = "magnitude",
    edges: tuple[float, ...] = BAND_EDGES,
) -> dict[str, float]:
    """Relative error per k-space band: ``||F w(p - t)||_band / ||F w t||_band`` with ``F`` the 2D
    Fourier transform of the images ``[..., ny, nx]`` and the bands rings of |k| in cycles/FOV
    (``band_names``); compared as ``relative_error`` compares (magnitudes or complex)."""
    if compare == "magnitude":
        pred, target = pred.abs(), target.abs()
    w = 1.0 if weight is None else weight
    diff = torch.fft.fft2(w * (pred - target)).abs() ** 2
    ref = torch.fft.fft2(w * target).abs() ** 2
    ny, nx = pred.shape[-2:]
    ky = torch.fft.fftfreq(ny, device=pred.device) * ny
    kx = torch.fft.fftfreq(nx, device=pred.device) * nx
    radius = (ky[:, None] ** 2 + kx[None, :] ** 2).sqrt()
    bounds = (0.0, *edges, float("inf"))
    out = {}
    for name, lo, hi in zip(band_names(max(ny, nx), edges), bounds, bounds[1:], strict=False):
        ring = (radius >= lo) & (radius < hi)
        out[name] = float((diff[..., ring].sum() / ref[..., ring].sum().clamp_min(1e-30)).sqrt())
    return out


@dataclass
class Loss:
    """Weights and references of the loss terms; call with a prediction, its target and the sequence."""

    image: str = "l2"
    compare: str = "magnitude"
    sar: float = 0.0
    time: float = 0.0
    sar_ref: float = 1.0
    time_ref: float = 1.0

    def __call__(
        self, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, seq: Sequence
    ) -> LossParts:
        err = relative_error(pred, target, weight, self.compare)
        if self.image == "l2":
            image = err**2
        else:
            p, t = (pred.abs(), target.abs()) if self.compare == "magnitude" else (pred, target)
            image = (weight * (p - t)).abs().sum() / (weight * t).abs().sum().clamp_min(1e-30)
        sar, time = self.penalties(seq)
        return LossParts(image=image, sar=sar, time=time, error=float(err.detach()))

    def penalties(self, seq: Sequence) -> tuple[torch.Tensor, torch.Tensor]:
        """The weighted SAR and scan-time terms of ``seq`` (zero tensors when their weight is 0)."""
        zero = torch.zeros((), dtype=seq.duration.dtype, device=seq.device)
        sar = self.sar * seq.sar_proxy() / self.sar_ref if self.sar else zero
        time = self.time * seq.total_duration() / self.time_ref if self.time else zero
        return sar, time
