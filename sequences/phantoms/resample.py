"""Area-averaging resampling of 2D maps between regular grids covering the same field of view.

Each output pixel is the mean of the input over its area, input pixels cut by its border
counted by the overlapping length. Unlike interpolation this keeps partial volume exact: the
sum of a map times the pixel area (e.g. the total proton density) is the same on every grid.
"""

from __future__ import annotations

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
