"""The embedded 2D brain phantom: 8 axial slices of the ICBM-based ASLDRO phantom at any matrix.

``data/brain2d.npz`` (built by ``make_brain.py``, MIT licence in ``data/LICENSE.asldro``) holds,
per 4 mm slice, how many 1 mm source voxels are grey matter, white matter and CSF on a
200 mm x 200 mm grid at 1 mm, plus smooth synthetic B0 (Hz, air-tissue dipoles after a
first-order shim), its through-slice derivative (Hz/m) and B1 (relative). At load time the
tissue fractions are area-averaged to the requested matrix, so partial volume is continuous
and the total proton density does not depend on the matrix; PD/T1/T2/T2' follow from
``tissue.BRAIN_TISSUES_3T`` (values and sources there) or from tissues you pass.

Orientation: image rows run anterior -> posterior, columns patient right -> left (as on a
scanner console); slice 0 is the lowest (z = +3.5 mm MNI, basal ganglia), slice 7 the highest
(z = +31.5 mm, centrum semiovale); slice 3 (lateral ventricles) is the default.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from sequences.phantom import Phantom
from sequences.phantoms.resample import area_resample
from sequences.phantoms.tissue import BRAIN_TISSUES_3T, Tissue, mix_tissues

DATA = Path(__file__).with_name("data") / "brain2d.npz"
TISSUE_NAMES = ("gm", "wm", "csf")
N_BRAIN_SLICES = 8
DEFAULT_SLICE = 3


@lru_cache(maxsize=1)
def _brain_data() -> dict[str, np.ndarray]:
    if not DATA.exists():
        raise FileNotFoundError(f"embedded brain phantom missing: {DATA} (rebuild with make_brain.py)")
    with np.load(DATA) as data:
        return {k: data[k] for k in data.files}


def _check(size: tuple[int, int], slice: int) -> tuple[int, int]:
    if not -N_BRAIN_SLICES <= slice < N_BRAIN_SLICES:
        raise IndexError(f"brain phantom slice {slice} out of range: it has {N_BRAIN_SLICES} slices (0..7)")
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be (ny, nx) with positive entries, got {size}")
    return int(size[0]), int(size[1])


def _map(name: str, size: tuple[int, int], slice: int, device, dtype) -> torch.Tensor:
    data = _brain_data()[name][slice].astype(np.float64)
    return area_resample(torch.from_numpy(data), size).to(device=device, dtype=dtype)


def brain_tissue_fractions(size: tuple[int, int] = (64, 64), slice: int = DEFAULT_SLICE,
                           device: torch.device | str | None = None,
                           dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Volume fractions ``{"gm", "wm", "csf"}`` (each ``[ny, nx]``, 0..1, summing to <= 1) of one slice."""
    size = _check(size, slice)
    data = _brain_data()
    counts = torch.from_numpy(data["counts"][slice].astype(np.float64)) / float(data["thickness_mm"])
    fractions = area_resample(counts, size).clamp(0, 1).to(device=device, dtype=dtype)
    return dict(zip(TISSUE_NAMES, fractions, strict=True))


def brain_b0_dz(size: tuple[int, int] = (64, 64), slice: int = DEFAULT_SLICE,
                device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Through-slice derivative of the synthetic B0 field, ``[ny, nx]`` in Hz/m (through-slice dephasing)."""
    return _map("b0_dz", _check(size, slice), slice, device, dtype)


def brain_phantom(size: tuple[int, int] = (64, 64), slice: int = DEFAULT_SLICE,
                  device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
                  tissues: dict[str, Tissue] | None = None,
                  coil_sens: torch.Tensor | None = None) -> Phantom:
    """One slice of the embedded brain phantom as a ``Phantom`` on a ``size = (ny, nx)`` matrix.

    FOV 0.2 m x 0.2 m, slice thickness 4 mm. ``tissues`` overrides the tissue parameters
    (keys ``gm``, ``wm``, ``csf``); ``coil_sens`` (complex ``[coil, ny, nx]``, see
    ``coils.coil_sensitivities``) attaches receive coils.
    """
    size = _check(size, slice)
    chosen = dict(BRAIN_TISSUES_3T, **(tissues or {}))
    fractions = brain_tissue_fractions(size, slice, device=device, dtype=torch.float64)
    maps = mix_tissues(torch.stack([fractions[n] for n in TISSUE_NAMES]), [chosen[n] for n in TISSUE_NAMES])
    maps = {k: v.to(dtype) for k, v in maps.items()}
    data = _brain_data()
    fov = float(data["fov_mm"]) * 1e-3
    return Phantom(**maps,
                   b0=_map("b0", size, slice, device, dtype),
                   b1=_map("b1", size, slice, device, dtype),
                   fov=(fov, fov, float(data["thickness_mm"]) * 1e-3),
                   coil_sens=None if coil_sens is None else coil_sens.to(device),
                   name=f"brain slice {slice % N_BRAIN_SLICES} ({size[0]}x{size[1]})")
