"""Resampling a 2D phantom to another matrix over the same field of view, by area averaging.

The area averaging itself (``area_resample``) lives in ``mrzero.core.brain_atlas``.

Each output pixel is the mean of the input over its area, input pixels cut by its border
counted by the overlapping length. Unlike interpolation this keeps partial volume exact: the
sum of a map times the pixel area (e.g. the total proton density) is the same on every grid.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from mrzero.core.brain_atlas import area_resample
from mrzero.sequences.phantom import Phantom


def resample_phantom(phantom: Phantom, size: tuple[int, int]) -> Phantom:
    """A 2D phantom on a ``size = (ny, nx)`` matrix over the same FOV, partial volume kept.

    PD, B0 and B1 are area-averaged; relaxation *rates* are averaged weighted by PD (the
    single-compartment approximation of a mixed voxel, as in ``tissue.mix_tissues``); coil
    sensitivities and a fat species' density are area-averaged too; a diffusion map is averaged
    weighted by PD.
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
        coils = torch.complex(
            area_resample(phantom.coil_sens.real, size), area_resample(phantom.coil_sens.imag, size)
        )
    fat = None if phantom.fat is None else replace(phantom.fat, pd=area_resample(phantom.fat.pd, size))
    diffusion = None
    if phantom.diffusion is not None:
        diffusion = area_resample(phantom.pd * phantom.diffusion, size) / torch.where(tissue, pd, 1)
    return replace(phantom, coil_sens=coils, fat=fat, diffusion=diffusion, **maps)
