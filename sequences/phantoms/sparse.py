"""The seed's "sparse synthetic" training samples (MRzero, supporting information 6.2).

A sample is a phantom that is empty except for ``n_blocks`` rectangles (12x12 voxels on a
32x32 matrix in the seed; 1x1 for "a few non-zero voxels") at random positions, each voxel
with random PD in [0, 1.5], T1 in [0.3, 6.1] s, T2 in [0, 3.8] s (clamped to ``0 < T2 <= T1``)
and B0 in [-60, 60] Hz; no T2' dephasing and B1 = 1. A seed or ``torch.Generator`` makes the
draw reproducible.

With ``spread`` set, a block is one tissue instead of independent voxels: each map draws one
value per block from its range and every voxel multiplies it by ``exp(spread * N(0, 1))``
(clamped into the range). Real tissue is spatially coherent, and what a pixel-wise head sees of
its neighbours through the point-spread function of a transient readout (e.g. the inversion
recovery blocks of T1 mapping) is then like what it sees in a real object; independent voxels
make that leakage look like noise the head never meets on a brain.
"""

from __future__ import annotations

import torch

from mrzero.sequences.phantom import Phantom

#: Shortest T2 (s) a sample may get: the seed's range starts at 0, which no engine can relax with.
MIN_T2 = 1e-3


def _uniform(shape: tuple[int, ...], bounds: tuple[float, float], gen: torch.Generator) -> torch.Tensor:
    lo, hi = bounds
    return lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=torch.float64)


def _block(
    shape: tuple[int, int], bounds: tuple[float, float], spread: float | None, gen: torch.Generator
) -> torch.Tensor:
    """One block of a map: independent voxels, or one tissue value varied by ``spread``."""
    if spread is None:
        return _uniform(shape, bounds, gen)
    base = _uniform((1, 1), bounds, gen)
    varied = base * torch.exp(spread * torch.randn(shape, generator=gen, dtype=torch.float64))
    return varied.clamp(min(bounds), max(bounds))


def sparse_synthetic(
    size: tuple[int, int] = (32, 32),
    block: tuple[int, int] = (12, 12),
    n_blocks: int = 1,
    seed: int | torch.Generator = 0,
    pd_range: tuple[float, float] = (0.0, 1.5),
    t1_range: tuple[float, float] = (0.3, 6.1),
    t2_range: tuple[float, float] = (0.0, 3.8),
    b0_range: tuple[float, float] = (-60.0, 60.0),
    spread: float | None = None,
    fov: tuple[float, float, float] = (0.2, 0.2, 0.005),
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Phantom:
    """One sparse synthetic phantom; see the module docstring. Blocks may overlap (the later one wins)."""
    ny, nx = size
    by, bx = block
    if not (0 < by <= ny and 0 < bx <= nx):
        raise ValueError(f"block {block} must fit inside the matrix {size}")
    if n_blocks < 1:
        raise ValueError(f"n_blocks must be at least 1, got {n_blocks}")
    for name, (lo, hi) in (("pd_range", pd_range), ("t1_range", t1_range), ("t2_range", t2_range)):
        if not 0 <= lo <= hi:
            raise ValueError(f"{name} must satisfy 0 <= low <= high, got {(lo, hi)}")
    if spread is not None and not spread >= 0:
        raise ValueError(f"spread must be a non-negative number (or None), got {spread}")
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
    pd = torch.zeros(size, dtype=torch.float64)
    t1 = torch.ones(size, dtype=torch.float64)
    t2 = torch.ones(size, dtype=torch.float64)
    b0 = torch.zeros(size, dtype=torch.float64)
    for _ in range(n_blocks):
        y0 = int(torch.randint(0, ny - by + 1, (1,), generator=gen))
        x0 = int(torch.randint(0, nx - bx + 1, (1,), generator=gen))
        window = (slice(y0, y0 + by), slice(x0, x0 + bx))
        pd[window] = _block(block, pd_range, spread, gen)
        t1[window] = _block(block, t1_range, spread, gen).clamp(min=MIN_T2)
        t2[window] = torch.minimum(_block(block, t2_range, spread, gen).clamp(min=MIN_T2), t1[window])
        b0[window] = _block(block, b0_range, spread, gen)
    maps = {k: v.to(device=device, dtype=dtype) for k, v in {"pd": pd, "t1": t1, "t2": t2, "b0": b0}.items()}
    zeros = torch.zeros(size, device=device, dtype=dtype)
    return Phantom(**maps, t2dash=zeros, b1=torch.ones_like(zeros), fov=fov, name=f"sparse synthetic {size}")
