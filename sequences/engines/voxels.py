"""The tissue of a phantom flattened to a list of voxels, expressed in the sequence's frame.

Both engines work on this form: only voxels with ``pd > 0`` are simulated, positions and the
voxel extent are converted from the phantom's FOV units to the sequence's (moments are cycles
per *sequence* FOV), and T2' is held as the rate ``1/T2'`` with 0 meaning no T2' dephasing.
A phantom's fat species adds one voxel per fat-containing voxel at the same position, with fat's
density, T1, T2 and ``b0`` plus the chemical shift (Hz). The diffusion coefficient (m^2/s) is
kept only when some voxel diffuses (``None`` otherwise, so the engines skip diffusion); fat
voxels do not diffuse.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from mrzero.sequences.phantom import Phantom
from mrzero.sequences.sequence import Sequence


@dataclass
class VoxelSet:
    """Per-voxel tissue (``[V]``), positions ``[V, 3]``, extent ``[3]`` and coils ``[C, V]``."""

    pd: torch.Tensor
    t1: torch.Tensor
    t2: torch.Tensor
    r2dash: torch.Tensor  # 1/T2' in 1/s, 0 = none
    b0: torch.Tensor  # Hz
    b1: torch.Tensor  # relative
    pos: torch.Tensor  # sequence FOV units
    size: torch.Tensor  # voxel extent (x, y, z) in sequence FOV units
    coil: torch.Tensor  # complex [C, V]
    diffusion: torch.Tensor | None = None  # m^2/s, None: no voxel diffuses
    #: tensors the engines derive from these once per simulation (not part of the tissue)
    derived: dict[str, torch.Tensor] = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_voxels(self) -> int:
        return int(self.pd.shape[0])


def complex_dtype(real: torch.dtype) -> torch.dtype:
    """complex64 for float32 (and lower), complex128 for float64."""
    return torch.complex128 if real == torch.float64 else torch.complex64


def voxels_of(phantom: Phantom, sequence: Sequence) -> VoxelSet:
    """Flatten ``phantom`` to its tissue voxels on the sequence's device and float dtype."""
    dtype, device = sequence.flip.dtype, sequence.device
    ph = phantom.to(device=device, dtype=dtype)
    keep = ph.mask().reshape(-1)
    fat = None if ph.fat is None else ph.fat.pd.reshape(-1) > 0
    if not bool(keep.any()) and (fat is None or not bool(fat.any())):
        raise ValueError(f"phantom {phantom.name!r} has no voxel with pd > 0: nothing to simulate")
    ratio = [p / s for p, s in zip(phantom.fov, sequence.fov, strict=True)]
    scale = torch.tensor(ratio, dtype=dtype, device=device)

    def flat(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(-1)[keep]

    t2dash = flat(ph.t2dash)
    r2dash = torch.where(t2dash > 0, 1.0 / t2dash.clamp_min(1e-12), torch.zeros_like(t2dash))
    diffusion = None
    if ph.diffusion is not None and bool((flat(ph.diffusion) > 0).any()):
        diffusion = flat(ph.diffusion)
    cdtype = complex_dtype(dtype)
    if ph.coil_sens is None:
        coil = torch.ones(1, int(keep.sum()), dtype=cdtype, device=device)
    else:
        coil = ph.coil_sens.reshape(ph.n_coils, -1)[:, keep].to(cdtype)
    water = VoxelSet(
        pd=flat(ph.pd),
        t1=flat(ph.t1),
        t2=flat(ph.t2),
        r2dash=r2dash,
        b0=flat(ph.b0),
        b1=flat(ph.b1),
        pos=ph.positions().reshape(-1, 3)[keep] * scale,
        size=ph.voxel_size() * scale,
        coil=coil,
        diffusion=diffusion,
    )
    if fat is None or not bool(fat.any()):
        return water
    # the fat voxels: same positions, B1, T2' and coils; fat's own PD, T1, T2 and frequency
    species = ph.fat
    fat_vox = voxels_of(
        replace(
            ph,
            pd=species.pd,
            t1=torch.full_like(ph.t1, species.t1),
            t2=torch.full_like(ph.t2, species.t2),
            b0=ph.b0 + species.shift_hz,
            fat=None,
            diffusion=None,
        ),
        sequence,
    )
    joined = {
        f: torch.cat([getattr(water, f), getattr(fat_vox, f)])
        for f in ("pd", "t1", "t2", "r2dash", "b0", "b1", "pos")
    }
    adc = None if diffusion is None else torch.cat([diffusion, torch.zeros_like(fat_vox.pd)])
    coils = torch.cat([water.coil, fat_vox.coil], dim=1)
    return VoxelSet(**joined, size=water.size, coil=coils, diffusion=adc)
