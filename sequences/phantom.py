"""Phantoms: per-voxel tissue parameters on a 2D (or 3D) grid, SI units.

Maps are ``[ny, nx]`` (or ``[nz, ny, nx]``) float tensors: proton density (arbitrary units),
T1, T2, T2' (s), B0 off-resonance (Hz), B1 (relative transmit scale, 1 = nominal), and
optionally complex coil sensitivities ``[coil, ...map shape]``. Voxel positions follow
``core/units.py``: FOV units, pixel ``i`` of ``n`` at ``(i - n//2) / n``.
Loaders (NIfTI, the embedded brain phantom, sparse synthetic samples) live beside this module.

A phantom may hold a second species, fat (:class:`FatSpecies`): its own proton density map and
T1/T2, resonating ``shift_ppm`` (default -3.4 ppm, the main methylene peak) from water at the
field strength ``field_strength`` (T). The engines simulate it as separate voxels at the same
positions with ``b0 + shift`` (Hz), so fat saturation, in/out-of-phase echoes and the fat shift
appear in simulated images (single-peak fat model; no exchange with water).

An optional ``diffusion`` map holds the apparent diffusion coefficient (ADC, m^2/s; brain
tissue ~0.7-0.8e-9, CSF ~3e-9). ``None`` (the default) or an all-zero map means no diffusion;
the fast engine then runs exactly as without it (``sequences/engines/diffusion.py``). Fat voxels
do not diffuse (lipid ADCs are ~100x below water's).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

MAP_FIELDS = ("pd", "t1", "t2", "t2dash", "b0", "b1")
#: Proton gyromagnetic ratio (Hz/T), for the chemical shift in Hz.
GAMMA_HZ_PER_T = 42.577478e6


class PhantomError(ValueError):
    """A phantom is malformed: mismatched shapes, NaN, non-positive relaxation times, ..."""


@dataclass
class FatSpecies:
    """Fat beside water in the same voxels: density map (like ``Phantom.pd``), relaxation (s), shift."""

    pd: torch.Tensor
    t1: float = 0.38  # s, subcutaneous fat at 3 T
    t2: float = 0.13  # s
    shift_ppm: float = -3.4
    field_strength: float = 3.0  # T

    @property
    def shift_hz(self) -> float:
        """Chemical shift of fat relative to water in Hz (negative: fat precesses slower)."""
        return self.shift_ppm * 1e-6 * GAMMA_HZ_PER_T * self.field_strength


@dataclass
class Phantom:
    """Tissue maps of one object; see the module docstring for units and layout."""

    pd: torch.Tensor
    t1: torch.Tensor
    t2: torch.Tensor
    t2dash: torch.Tensor
    b0: torch.Tensor
    b1: torch.Tensor
    fov: tuple[float, float, float] = (0.2, 0.2, 0.005)  # m (x, y, z)
    coil_sens: torch.Tensor | None = None  # complex [coil, *shape]
    name: str = "phantom"
    fat: FatSpecies | None = None  # a second species at the chemical shift of fat
    diffusion: torch.Tensor | None = None  # apparent diffusion coefficient (m^2/s); None: none

    def __post_init__(self) -> None:
        self.validate()

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.pd.shape)

    @property
    def n_coils(self) -> int:
        return 1 if self.coil_sens is None else int(self.coil_sens.shape[0])

    def validate(self) -> None:
        """Raise ``PhantomError`` naming the map when shapes or values are impossible."""
        if self.pd.ndim not in (2, 3):
            raise PhantomError(f"pd must be [ny, nx] or [nz, ny, nx], got shape {self.shape}")
        for name in MAP_FIELDS:
            t = getattr(self, name)
            if tuple(t.shape) != self.shape:
                raise PhantomError(f"{name} has shape {tuple(t.shape)}, pd has {self.shape}")
            if not bool(torch.isfinite(t).all()):
                raise PhantomError(f"{name} contains NaN or inf")
        tissue = self.pd > 0
        for name in ("t1", "t2"):
            if bool((getattr(self, name)[tissue] <= 0).any()):
                raise PhantomError(f"{name} must be positive wherever pd > 0 (seconds)")
        if bool((self.t2dash[tissue] < 0).any()):
            raise PhantomError("t2dash must be non-negative (0 means no T2' dephasing)")
        if bool((self.pd < 0).any()):
            raise PhantomError("pd must be non-negative")
        if self.coil_sens is not None and tuple(self.coil_sens.shape[1:]) != self.shape:
            raise PhantomError(
                f"coil_sens must be [coil, {', '.join(map(str, self.shape))}], "
                f"got {tuple(self.coil_sens.shape)}"
            )
        if any(f <= 0 for f in self.fov):
            raise PhantomError(f"fov must be positive in metres, got {self.fov}")
        if self.diffusion is not None:
            d = self.diffusion
            if tuple(d.shape) != self.shape or not bool(torch.isfinite(d).all()) or bool((d < 0).any()):
                raise PhantomError(
                    f"diffusion must be a finite non-negative map (m^2/s) of shape {self.shape}, "
                    f"got shape {tuple(d.shape)}"
                )
        if self.fat is not None:
            fat = self.fat
            if (
                tuple(fat.pd.shape) != self.shape
                or not bool(torch.isfinite(fat.pd).all())
                or bool((fat.pd < 0).any())
            ):
                raise PhantomError(f"fat.pd must be a finite non-negative map of shape {self.shape}")
            if fat.t1 <= 0 or fat.t2 <= 0 or fat.field_strength <= 0:
                raise PhantomError("fat.t1, fat.t2 (s) and fat.field_strength (T) must be positive")

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Phantom:
        """A copy on ``device`` with real maps cast to ``dtype`` when given."""
        maps = {n: getattr(self, n).to(device=device, dtype=dtype) for n in MAP_FIELDS}
        coils = None if self.coil_sens is None else self.coil_sens.to(device)
        fat = None if self.fat is None else replace(self.fat, pd=self.fat.pd.to(device=device, dtype=dtype))
        diffusion = None if self.diffusion is None else self.diffusion.to(device=device, dtype=dtype)
        return replace(self, coil_sens=coils, fat=fat, diffusion=diffusion, **maps)

    def positions(self) -> torch.Tensor:
        """Voxel centre positions in FOV units, ``[*shape, 3]`` as (x, y, z)."""
        axes = [
            (torch.arange(n, dtype=self.pd.dtype, device=self.pd.device) - n // 2) / n for n in self.shape
        ]
        if self.pd.ndim == 2:
            y, x = torch.meshgrid(axes[0], axes[1], indexing="ij")
            z = torch.zeros_like(x)
        else:
            z, y, x = torch.meshgrid(axes[0], axes[1], axes[2], indexing="ij")
        return torch.stack([x, y, z], dim=-1)

    def voxel_size(self) -> torch.Tensor:
        """Voxel extent in FOV units (x, y, z): 1/n in-plane; 1 along z for a 2D phantom."""
        n = list(reversed(self.shape)) + [1] * (3 - self.pd.ndim)
        return torch.tensor([1.0 / k for k in n], dtype=self.pd.dtype, device=self.pd.device)

    def mask(self) -> torch.Tensor:
        """Voxels that contribute water signal (pd > 0)."""
        return self.pd > 0
