"""A water-fat phantom: three discs (water, fat, half and half) to see fat in simulated images.

On a ``size = (ny, nx)`` matrix over a 0.2 m FOV: a water disc on the left, a fat disc on the
right and a disc holding both in equal parts at the bottom. Water has muscle-like relaxation at
3 T (T1 1.4 s, T2 50 ms), fat the defaults of :class:`~mrzero.sequences.phantom.FatSpecies`
(T1 380 ms, T2 130 ms, -3.4 ppm); both T2' 50 ms, no B0 or B1 error. With it, fat saturation
darkens the fat disc, the mixed disc is dark at opposed-phase echo times (1.15, 3.45 ms at 3 T)
and bright in phase (2.3, 4.6 ms), and fat is displaced along the readout by
``shift / (bandwidth per pixel)`` pixels.
"""

from __future__ import annotations

import torch

from mrzero.sequences.phantom import FatSpecies, Phantom

WATER_T1, WATER_T2, T2DASH = 1.4, 0.05, 0.05


def water_fat_phantom(
    size: tuple[int, int] = (64, 64), field_strength: float = 3.0, device: torch.device | str | None = None
) -> Phantom:
    """The three-disc water-fat phantom on ``size = (ny, nx)``; see the module docstring."""
    ny, nx = size
    y = (torch.arange(ny, dtype=torch.float32, device=device) - ny // 2) / ny
    x = (torch.arange(nx, dtype=torch.float32, device=device) - nx // 2) / nx
    yy, xx = torch.meshgrid(y, x, indexing="ij")

    def disc(cx: float, cy: float) -> torch.Tensor:
        return (((xx - cx) ** 2 + (yy - cy) ** 2) < 0.16**2).float()

    left, right, bottom = disc(-0.22, -0.12), disc(0.22, -0.12), disc(0.0, 0.24)
    water = left + 0.5 * bottom
    fat = right + 0.5 * bottom
    tissue = (water + fat) > 0

    def const(v: float) -> torch.Tensor:
        return torch.where(tissue, torch.full_like(water, v), torch.zeros_like(water))

    return Phantom(
        pd=water,
        t1=const(WATER_T1),
        t2=const(WATER_T2),
        t2dash=const(T2DASH),
        b0=torch.zeros_like(water),
        b1=torch.ones_like(water),
        fat=FatSpecies(fat, field_strength=field_strength),
        name=f"water_fat ({ny}x{nx})",
    )
