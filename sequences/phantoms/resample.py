"""Area-averaging resampling of 2D maps between regular grids covering the same field of view.

Each output pixel is the mean of the input over its area, input pixels cut by its border
counted by the overlapping length. Unlike interpolation this keeps partial volume exact: the
sum of a map times the pixel area (e.g. the total proton density) is the same on every grid.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from sequences.phantom import Phantom


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


def resample_phantom(phantom: Phantom, size: tuple[int, int]) -> Phantom:
    """A 2D phantom on a ``size = (ny, nx)`` matrix over the same FOV, partial volume kept.

    PD, B0 and B1 are area-averaged; relaxation *rates* are averaged weighted by PD (the
    single-compartment approximation of a mixed voxel, as in ``tissue.mix_tissues``); coil
    sensitivities are area-averaged too.
    """
    if phantom.pd.ndim != 2:
        raise ValueError(f"resample_phantom handles 2D phantoms, got shape {phantom.shape}")
    pd = area_resample(phantom.pd, size)
    tissue = pd > 0
    maps = {"pd": pd, "b0": area_resample(phantom.b0, size), "b1": area_resample(phantom.b1, size)}
    for name, background in (("t1", 1.0), ("t2", 1.0), ("t2dash", 0.0)):
        t = getattr(phantom, name)
        rate = torch.where(t > 0, 1 / torch.where(t > 0, t, 1), 0)
        mean_rate = area_resample(phantom.pd * rate, size) / torch.where(tissue, pd, 1)
        time = torch.where(mean_rate > 0, 1 / torch.where(mean_rate > 0, mean_rate, 1), 0)
        maps[name] = torch.where(tissue, time, torch.full_like(time, background))
    coils = None
    if phantom.coil_sens is not None:
        coils = torch.complex(area_resample(phantom.coil_sens.real, size),
                              area_resample(phantom.coil_sens.imag, size))
    return replace(phantom, coil_sens=coils, **maps)
