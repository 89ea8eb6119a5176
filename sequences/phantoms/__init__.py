"""Phantom sources: the embedded brain, multi-parametric NIfTI, arrays, sparse synthetic samples, coils,
water-fat discs.

The ``Phantom`` dataclass itself lives in ``sequences/phantom.py``.
"""

from mrzero.sequences.phantoms.arrays import phantom_from_arrays
from mrzero.sequences.phantoms.brain import (
    N_BRAIN_SLICES,
    TISSUE_NAMES,
    brain_b0_dz,
    brain_phantom,
    brain_tissue_fractions,
)
from mrzero.sequences.phantoms.coils import coil_sensitivities
from mrzero.sequences.phantoms.nifti import NiftiPhantomError, load_nifti_phantom
from mrzero.sequences.phantoms.resample import resample_phantom
from mrzero.sequences.phantoms.sparse import sparse_synthetic
from mrzero.sequences.phantoms.tissue import BRAIN_TISSUES_3T, Tissue, t2dash_from_t2star
from mrzero.sequences.phantoms.water_fat import water_fat_phantom

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
    "water_fat_phantom",
]
