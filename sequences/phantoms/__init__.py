"""Phantom sources: the embedded brain, multi-parametric NIfTI, arrays, sparse synthetic samples, coils.

The ``Phantom`` dataclass itself lives in ``sequences/phantom.py``.
"""

from sequences.phantoms.arrays import phantom_from_arrays
from sequences.phantoms.brain import (
    N_BRAIN_SLICES,
    TISSUE_NAMES,
    brain_b0_dz,
    brain_phantom,
    brain_tissue_fractions,
)
from sequences.phantoms.coils import coil_sensitivities
from sequences.phantoms.nifti import NiftiPhantomError, load_nifti_phantom
from sequences.phantoms.resample import resample_phantom
from sequences.phantoms.sparse import sparse_synthetic
from sequences.phantoms.tissue import BRAIN_TISSUES_3T, Tissue, t2dash_from_t2star

__all__ = [
    "BRAIN_TISSUES_3T",
    "N_BRAIN_SLICES",
    "NiftiPhantomError",
    "TISSUE_NAMES",
    "Tissue",
    "brain_b0_dz",
    "brain_phantom",
    "brain_tissue_fractions",
    "coil_sensitivities",
    "load_nifti_phantom",
    "phantom_from_arrays",
    "resample_phantom",
    "sparse_synthetic",
    "t2dash_from_t2star",
]
