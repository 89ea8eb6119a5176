"""Where an image's k-space was measured: the sampled box, holes in it, and partial Fourier.

The box is the extent of the measured lines in ky and kz (and of the measured samples in kx),
widened to the header's encoding limits where the measured lines stop less than one
acceleration step short of them (the lattice of an accelerated scan rarely ends on the last
line; Gadgetron widens its sampling limits the same way). Inside the box parallel imaging fills
what the lattice skipped; outside it, on one side of the k-space centre only, is a partial
Fourier gap.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mrzero.pipelines.scan_plan import EncodingPlan
from mrzero.pipelines.stages.buffer import ReconBuffer

#: A readout is asymmetric (partial Fourier in kx) when its two sides differ by more samples.
KX_TOLERANCE = 2


@dataclass(frozen=True)
class Extent:
    """Inclusive ``[lo, hi]`` of one axis of ``n`` points, centre ``n // 2``."""

    lo: int
    hi: int
    n: int

    @property
    def below(self) -> int:
        """Points measured below the centre."""
        return self.n // 2 - self.lo

    @property
    def above(self) -> int:
        """Points measured at and above the centre."""
        return self.hi - self.n // 2 + 1

    @property
    def full(self) -> bool:
        return self.lo == 0 and self.hi == self.n - 1

    def partial(self, tolerance: int = 1) -> bool:
        """Measured asymmetrically about the centre: one side is shorter (partial Fourier)."""
        return abs(self.below - self.above) > tolerance and not self.full

    @property
    def fraction(self) -> float:
        return (self.hi - self.lo + 1) / self.n


def _limit(enc: EncodingPlan, name: str, centre: int, n: int) -> tuple[int, int]:
    limit = enc.limits.get(name)
    if limit is None:
        return 0, n - 1
    shift = n // 2 - centre
    return max(0, min(n - 1, limit.minimum + shift)), max(0, min(n - 1, limit.maximum + shift))


def _extent(measured: torch.Tensor, limits: tuple[int, int], step: int) -> Extent:
    n = int(measured.numel())
    index = torch.nonzero(measured).flatten()
    if index.numel() == 0:
        return Extent(0, -1, n)
    lo, hi = int(index[0]), int(index[-1])
    if lo - limits[0] < step:
        lo = min(lo, limits[0])
    if limits[1] - hi < step:
        hi = max(hi, limits[1])
    return Extent(lo, hi, n)


def _axis(e: Extent) -> torch.Tensor:
    """``[n]`` bool: the extent's points."""
    m = torch.zeros(e.n, dtype=torch.bool)
    m[e.lo : e.hi + 1] = True
    return m


@dataclass(frozen=True)
class SampledBox:
    z: Extent
    y: Extent
    x: Extent

    def mask(self) -> torch.Tensor:
        """``[kz, ky, kx]`` bool: the box."""
        return self.lines()[:, :, None] & _axis(self.x)[None, None, :]

    def lines(self) -> torch.Tensor:
        """``[kz, ky]`` bool: the lines inside the box."""
        return _axis(self.z)[:, None] & _axis(self.y)[None, :]

    def partial_axes(self) -> list[str]:
        """Axes (``kz``, ``ky``, ``kx``) measured asymmetrically about the centre."""
        return [
            name
            for name, e, tol in (("kz", self.z, 1), ("ky", self.y, 1), ("kx", self.x, KX_TOLERANCE))
            if e.n > 1 and e.partial(tol)
        ]


def sampled_box(buf: ReconBuffer, enc: EncodingPlan) -> SampledBox:
    """The measured box of ``buf`` (its ``sampled`` lines and ``kx_extent``)."""
    nz, ny, nx = buf.data.shape[-3:]
    sampled = buf.sampled if buf.sampled is not None else torch.ones(nz, ny, dtype=torch.bool)
    geo = enc.geometry
    ry, rz = enc.accel
    z = _extent(sampled.any(dim=1), _limit(enc, "kspace_encoding_step_2", geo.center_e2, nz), rz)
    y = _extent(sampled.any(dim=0), _limit(enc, "kspace_encoding_step_1", geo.center_e1, ny), ry)
    start, stop = buf.kx_extent if buf.kx_extent is not None else (0, nx)
    x = Extent(max(0, start), min(nx, stop) - 1, nx)
    return SampledBox(z, y, x)


def holes(sampled: torch.Tensor, box: SampledBox) -> tuple[int, int]:
    """(missing, total) lines along the central kz row's ky extent and the central ky column's kz
    extent of the box: what a regular undersampling leaves out (3D elliptical corners are not
    counted)."""
    zc = min(max(box.z.n // 2, box.z.lo), box.z.hi)
    yc = min(max(box.y.n // 2, box.y.lo), box.y.hi)
    row = sampled[zc, box.y.lo : box.y.hi + 1]
    col = sampled[box.z.lo : box.z.hi + 1, yc]
    missing = int((~row).sum()) + (int((~col).sum()) if box.z.n > 1 else 0)
    total = int(row.numel()) + (int(col.numel()) if box.z.n > 1 else 0)
    return missing, total
