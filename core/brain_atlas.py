"""The brain atlas behind the embedded phantom: tissue fractions and fields of 8 axial slices.

``data/brain2d.npz`` (built by ``tools/make_brain_phantom.py`` from the ICBM-based ASLDRO phantom,
MIT licence in ``data/LICENSE.asldro``) holds per 4 mm slice the grey/white matter and CSF voxel
counts on a 200 mm grid at 1 mm, and smooth synthetic B0/B1 fields. It sits in core because both
the simulation's phantoms (``mrzero.sequences.phantoms.brain``) and RoAR's synthetic subjects
(``mrzero.pipelines.roar.synthetic``) are made from it. ``area_resample`` averages maps over each
output pixel's area, so partial volume (and total proton density) is the same on every grid.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch


def area_weights(n_in: int, n_out: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``[n_out, n_in]`` matrix of overlaps: row ``i`` averages the input cells under output cell ``i``."""
    if n_in < 1 or n_out < 1:
        raise ValueError(f"grid sizes must be positive, got n_in={n_in}, n_out={n_out}")
    edges_in = torch.arange(n_in + 1, dtype=dtype) / n_in
    edges_out = torch.arange(n_out + 1, dtype=dtype) / n_out
    lo = torch.maximum(edges_out[:-1, None], edges_in[None, :-1])
    hi = torch.minimum(edges_out[1:, None], edges_in[None, 1:])
    return (hi - lo).clamp(min=0) * n_out


def area_resample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resample ``[..., ny, nx]`` maps to ``[..., size[0], size[1]]`` by area averaging (same dtype)."""
    ny, nx = int(size[0]), int(size[1])
    wy = area_weights(maps.shape[-2], ny).to(device=maps.device, dtype=maps.dtype)
    wx = area_weights(maps.shape[-1], nx).to(device=maps.device, dtype=maps.dtype)
    return wy @ maps @ wx.T


DATA = Path(__file__).with_name("data") / "brain2d.npz"
TISSUE_NAMES = ("gm", "wm", "csf")
N_BRAIN_SLICES = 8
DEFAULT_SLICE = 3


@lru_cache(maxsize=1)
def brain_data() -> dict[str, np.ndarray]:
    if not DATA.exists():
        raise FileNotFoundError(
            f"embedded brain phantom missing: {DATA} (rebuild with tools/make_brain_phantom.py)"
        )
    with np.load(DATA) as data:
        return {k: data[k] for k in data.files}


def check_slice(size: tuple[int, int], slice: int) -> tuple[int, int]:
    if not -N_BRAIN_SLICES <= slice < N_BRAIN_SLICES:
        raise IndexError(f"brain phantom slice {slice} out of range: it has {N_BRAIN_SLICES} slices (0..7)")
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be (ny, nx) with positive entries, got {size}")
    return int(size[0]), int(size[1])


def brain_map(name: str, size: tuple[int, int], slice: int, device, dtype) -> torch.Tensor:
    data = brain_data()[name][slice].astype(np.float64)
    return area_resample(torch.from_numpy(data), size).to(device=device, dtype=dtype)


def brain_tissue_fractions(
    size: tuple[int, int] = (64, 64),
    slice: int = DEFAULT_SLICE,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """Volume fractions ``{"gm", "wm", "csf"}`` (each ``[ny, nx]``, 0..1, summing to <= 1) of one slice."""
    size = check_slice(size, slice)
    data = brain_data()
    counts = torch.from_numpy(data["counts"][slice].astype(np.float64)) / float(data["thickness_mm"])
    fractions = area_resample(counts, size).clamp(0, 1).to(device=device, dtype=dtype)
    return dict(zip(TISSUE_NAMES, fractions, strict=True))
