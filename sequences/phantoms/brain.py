"""The embedded 2D brain phantom: 8 axial slices of the ICBM-based ASLDRO phantom at any matrix.

``core/data/brain2d.npz`` (read by ``mrzero.core.brain_atlas``; built by ``tools/make_brain_phantom.py``,
MIT licence in ``core/data/LICENSE.asldro``) holds,
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

import torch

from mrzero.core.brain_atlas import (
    DEFAULT_SLICE,
    N_BRAIN_SLICES,
    TISSUE_NAMES,
    brain_data,
    brain_map,
    brain_tissue_fractions,
    check_slice,
)
from mrzero.sequences.phantom import Phantom
from mrzero.sequences.phantoms.tissue import BRAIN_TISSUES_3T, Tissue, mix_tissues


def brain_b0_dz(
    size: tuple[int, int] = (64, 64),
    slice: int = DEFAULT_SLICE,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Through-slice derivative of the synthetic B0 field, ``[ny, nx]`` in Hz/m (through-slice dephasing)."""
    return brain_map("b0_dz", check_slice(size, slice), slice, device, dtype)


def brain_phantom(
    size: tuple[int, int] = (64, 64),
    slice: int = DEFAULT_SLICE,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    tissues: dict[str, Tissue] | None = None,
    coil_sens: torch.Tensor | None = None,
    diffusion: bool = False,
) -> Phantom:
    """One slice of the embedded brain phantom as a ``Phantom`` on a ``size = (ny, nx)`` matrix.

    FOV 0.2 m x 0.2 m, slice thickness 4 mm. ``tissues`` overrides the tissue parameters
    (keys ``gm``, ``wm``, ``csf``); ``coil_sens`` (complex ``[coil, ny, nx]``, see
    ``coils.coil_sensitivities``) attaches receive coils; ``diffusion`` attaches the tissues'
    ADC map (off by default: the isochromat engine cannot simulate diffusion).
    """
    size = check_slice(size, slice)
    chosen = dict(BRAIN_TISSUES_3T, **(tissues or {}))
    fractions = brain_tissue_fractions(size, slice, device=device, dtype=torch.float64)
    maps = mix_tissues(torch.stack([fractions[n] for n in TISSUE_NAMES]), [chosen[n] for n in TISSUE_NAMES])
    maps = {k: v.to(dtype) for k, v in maps.items()}
    adc = maps.pop("diffusion")
    data = brain_data()
    fov = float(data["fov_mm"]) * 1e-3
    return Phantom(
        **maps,
        b0=brain_map("b0", size, slice, device, dtype),
        b1=brain_map("b1", size, slice, device, dtype),
        fov=(fov, fov, float(data["thickness_mm"]) * 1e-3),
        coil_sens=None if coil_sens is None else coil_sens.to(device),
        diffusion=adc if diffusion else None,
        name=f"brain slice {slice % N_BRAIN_SLICES} ({size[0]}x{size[1]})",
    )
