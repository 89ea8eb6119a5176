"""Tissue relaxation and diffusion parameters at 3 T, T2' from T2* and partial-volume mixing.

Values of the embedded brain phantom (3 T, SI units):

========  =====  ======  ======  =======  ============================================
tissue    PD     T1 (s)  T2 (s)  T2* (s)  sources
========  =====  ======  ======  =======  ============================================
GM        0.80   1.33    0.110   0.066    T1, T2: Lu et al., JMRI 22:13 (2005), the values
                                          the ASLDRO ground truth carries; T2*: Wansapura
                                          et al., JMRI 9:531 (1999)
WM        0.70   0.83    0.080   0.053    same sources
CSF       1.00   4.30    2.000   0.500    T1 ~4.3-4.4 s (e.g. Rooney et al., MRM 57:308
                                          (2007)); T2 of CSF is reported between ~1.5 and
                                          2.5 s; T2* is an assumption (little mesoscopic
                                          dephasing in free water), not a measured value
========  =====  ======  ======  =======  ============================================

PD is the relative water content (water = 1; grey matter ~0.8, white matter ~0.7, as in
quantitative water-content mapping studies).

Apparent diffusion coefficients (m^2/s; ``Tissue.diffusion``, used by
``brain_phantom(diffusion=True)``): GM 0.8e-9 and WM 0.7e-9, typical adult mean ADCs (e.g.
Helenius et al., AJNR 23:194 (2002)); CSF 3.0e-9, free water at body temperature. Mean
values: white matter's anisotropy is not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Tissue:
    """One tissue's proton density (relative), relaxation times (s) and ADC (m^2/s, 0: none)."""

    pd: float
    t1: float
    t2: float
    t2star: float
    diffusion: float = 0.0

    def __post_init__(self) -> None:
        if self.pd < 0 or min(self.t1, self.t2, self.t2star) <= 0 or self.diffusion < 0:
            raise ValueError(f"tissue needs pd >= 0, positive T1/T2/T2* and diffusion >= 0, got {self}")
        if self.t2star > self.t2:
            raise ValueError(f"T2* ({self.t2star} s) cannot exceed T2 ({self.t2} s)")

    @property
    def t2dash(self) -> float:
        """Reversible decay time T2' (s) from ``1/T2' = 1/T2* - 1/T2`` (0 when T2* == T2)."""
        rate = 1 / self.t2star - 1 / self.t2
        return 0.0 if rate <= 0 else 1 / rate


#: Brain tissues at 3 T in the order of the phantom's labels (1 GM, 2 WM, 3 CSF); see the module docstring.
BRAIN_TISSUES_3T: dict[str, Tissue] = {
    "gm": Tissue(pd=0.80, t1=1.33, t2=0.110, t2star=0.066, diffusion=0.8e-9),
    "wm": Tissue(pd=0.70, t1=0.83, t2=0.080, t2star=0.053, diffusion=0.7e-9),
    "csf": Tissue(pd=1.00, t1=4.30, t2=2.000, t2star=0.500, diffusion=3.0e-9),
}


def t2dash_from_t2star(t2: torch.Tensor, t2star: torch.Tensor) -> torch.Tensor:
    """Voxel-wise T2' (s) from T2 and T2* (s): ``1/T2' = 1/T2* - 1/T2``.

    0 (no reversible dephasing) where T2* >= T2 or either is not positive.
    """
    valid = (t2star > 0) & (t2 > 0) & (t2star < t2)
    rate = torch.where(valid, 1 / torch.where(valid, t2star, 1) - 1 / torch.where(valid, t2, 1), 0)
    return torch.where(valid, 1 / torch.where(valid, rate, 1), torch.zeros_like(t2))


def mix_tissues(
    fractions: torch.Tensor, tissues: list[Tissue], background_time: float = 1.0
) -> dict[str, torch.Tensor]:
    """PD, T1, T2, T2' and diffusion maps of voxels holding tissue volume ``fractions`` ``[tissue, ...]``.

    PD adds up with volume. Relaxation *rates* are averaged with the PD-weighted fractions
    (a single-compartment approximation of a mixed voxel), and so is the ADC (the initial
    slope of the mixed voxel's signal over b); voxels without tissue get
    ``background_time`` seconds for T1 and T2 and no T2' dephasing, so engines never divide by 0.
    """
    if fractions.shape[0] != len(tissues):
        raise ValueError(f"{fractions.shape[0]} fraction maps for {len(tissues)} tissues")
    f = fractions

    def as_t(values: list[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=f.dtype, device=f.device).reshape(-1, *[1] * (f.ndim - 1))

    pd_t = as_t([t.pd for t in tissues])
    pd = (f * pd_t).sum(0)
    w = f * pd_t / torch.where(pd > 0, pd, 1)
    tissue = pd > 0

    def time(values: list[float], background: float) -> torch.Tensor:
        rates = as_t([0.0 if v == 0 else 1 / v for v in values])
        rate = (w * rates).sum(0)
        safe = torch.where(rate > 0, rate, 1)
        out = torch.where(rate > 0, 1 / safe, torch.zeros_like(rate))
        return torch.where(tissue, out, torch.full_like(out, background))

    return {
        "pd": pd,
        "t1": time([t.t1 for t in tissues], background_time),
        "t2": time([t.t2 for t in tissues], background_time),
        "t2dash": time([t.t2dash for t in tissues], 0.0),
        "diffusion": (w * as_t([t.diffusion for t in tissues])).sum(0),
    }
