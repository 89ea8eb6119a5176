"""Phantom sources: the embedded brain, multi-parametric NIfTI, arrays, sparse synthetic samples, coils.

The ``Phantom`` dataclass itself lives in ``sequences/phantom.py``.
"""

from sequences.phantoms.brain import (
    N_BRAIN_SLICES,
    TISSUE_NAMES,
    brain_b0_dz,
    brain_phantom,
    brain_tissue_fractions,
)
from sequences.phantoms.tissue import BRAIN_TISSUES_3T, Tissue, t2dash_from_t2star

__all__ = [
    "BRAIN_TISSUES_3T",
    "N_BRAIN_SLICES",
    "TISSUE_NAMES",
    "Tissue",
    "brain_b0_dz",
    "brain_phantom",
    "brain_tissue_fractions",
    "t2dash_from_t2star",
]
