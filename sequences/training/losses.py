"""The training loss and its parts, each reported separately.

``image``: relative error of prediction vs target inside the target's weight map, squared for
``l2`` (``||w (p - t)||^2 / ||w t||^2``, whose square root is the seed's "relative image error")
or ``sum |w (p - t)| / sum |w t|`` for ``l1``; on magnitudes or on complex values.
``sar``: ``lambda_SAR * sum(flip^2) / sar_ref`` (the seed's SAR proxy relative to the reference
sequence, or in rad^2 without one). ``time``: ``lambda_time * scan time / time_ref``.
``high_k``: ``lambda_k * e_k^2`` with ``e_k`` the relative error at |k| >= ``high_k_from``
(cycles/FOV): the squared image error weighs each ring by its share of the target's energy, which
at the outermost rings of a brain is a few percent, so without it training leaves the edges blurred.
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
    high_k: torch.Tensor | None = None

    @property
    def total(self) -> torch.Tensor:
        extra = 0.0 if self.high_k is None else self.high_k
        return self.image + extra + self.sar + self.time

    def as_dict(self) -> dict[str, float]:
        high_k = {} if self.high_k is None else {"high_k": float(self.high_k.detach())}
        return {
            "loss": float(self.total.detach()),
            "image": float(self.image.detach()),
            **high_k,
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


def _spectra(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, compare: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``|F w(p - t)|^2``, ``|F w t|^2`` and |k| (cycles/FOV) of images ``[..., ny, nx]``."""
    if compare == "magnitude":
        pred, target = pred.abs(), target.abs()
    w = 1.0 if weight is None else weight
    diff = torch.fft.fft2(w * (pred - target)).abs() ** 2
    ref = torch.fft.fft2(w * target).abs() ** 2
    ny, nx = pred.shape[-2:]
    ky = torch.fft.fftfreq(ny, device=pred.device) * ny
    kx = torch.fft.fftfreq(nx, device=pred.device) * nx
    return diff, ref, (ky[:, None] ** 2 + kx[None, :] ** 2).sqrt()


def _ring(diff: torch.Tensor, ref: torch.Tensor, radius: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    ring = (radius >= lo) & (radius < hi)
    return (diff[..., ring].sum() / ref[..., ring].sum().clamp_min(1e-30)).sqrt()


def band_error(
    pred: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    compare: str = "magnitude",
    lo: float = 0.0,
    hi: float = float("inf"),
) -> torch.Tensor:
    """Relative error (differentiable) of the ring ``lo <= |k| < hi`` (cycles/FOV):
    ``||F w(p - t)||_ring / ||F w t||_ring``."""
    return _ring(*_spectra(pred, target, weight, compare), lo, hi)


@torch.no_grad()
def band_errors(
    pred: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    compare: str = "magnitude",
    edges: tuple[float, ...] = BAND_EDGES,
) -> dict[str, float]:
    """Relative error per k-space band (``band_error`` of each ring of |k| in cycles/FOV, named as
    ``band_names``), compared as ``relative_error`` compares (magnitudes or complex)."""
    diff, ref, radius = _spectra(pred, target, weight, compare)
    bounds = (0.0, *edges, float("inf"))
    names = band_names(max(pred.shape[-2:]), edges)
    return {
        name: float(_ring(diff, ref, radius, lo, hi))
        for name, lo, hi in zip(names, bounds, bounds[1:], strict=False)
    }


@dataclass
class Loss:
    """Weights and references of the loss terms; call with a prediction, its target and the sequence."""

    image: str = "l2"
    compare: str = "magnitude"
    sar: float = 0.0
    time: float = 0.0
    sar_ref: float = 1.0
    time_ref: float = 1.0
    high_k: float = 0.0
    high_k_from: float = 12.0

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
        high_k = None
        if self.high_k:
            high_k = self.high_k * band_error(pred, target, weight, self.compare, self.high_k_from) ** 2
        return LossParts(image=image, sar=sar, time=time, error=float(err.detach()), high_k=high_k)

    def penalties(self, seq: Sequence) -> tuple[torch.Tensor, torch.Tensor]:
        """The weighted SAR and scan-time terms of ``seq`` (zero tensors when their weight is 0)."""
        zero = torch.zeros((), dtype=seq.duration.dtype, device=seq.device)
        sar = self.sar * seq.sar_proxy() / self.sar_ref if self.sar else zero
        time = self.time * seq.total_duration() / self.time_ref if self.time else zero
        return sar, time
