"""Where the voxels of an MRD image sit in the patient: shared by the NIfTI and DICOM writers.

MRD images carry their geometry in the patient coordinates of DICOM (LPS, millimetres): the
``position`` of the image centre, the unit vectors ``read_dir`` (along a row, increasing column
index x), ``phase_dir`` (down a column, increasing row index y) and ``slice_dir``, and the
``field_of_view`` over ``matrix_size``. As everywhere in this project (``core/units.py``), pixel
``i`` of ``n`` sits at ``(i - n // 2)`` pixels from the centre.

Images without geometry (zero direction vectors, as ISMRMRD's own
``ismrmrd_generate_cartesian_shepp_logan`` writes them) get the identity orientation, with a
warning: the pixels are still right, only their place in the patient is unknown.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import ismrmrd
import numpy as np

log = logging.getLogger(__name__)

#: A direction vector is usable when its length is within this fraction of 1.
_UNIT_TOLERANCE = 0.1


def vector(values) -> np.ndarray:
    """A float64 copy of an MRD header vector."""
    return np.array([float(v) for v in values])


def has_geometry(image: ismrmrd.Image) -> bool:
    """True when the image's read, phase and slice directions are unit vectors."""
    return all(
        abs(np.linalg.norm(vector(d)) - 1.0) < _UNIT_TOLERANCE
        for d in (image.read_dir, image.phase_dir, image.slice_dir)
    )


def image_axes(image: ismrmrd.Image) -> np.ndarray:
    """3x3 matrix whose columns are the unit read, phase and slice directions (LPS).

    The identity when the image has no valid geometry (writers warn with :func:`warn_without_geometry`).
    """
    if not has_geometry(image):
        return np.eye(3)
    axes = np.stack([vector(image.read_dir), vector(image.phase_dir), vector(image.slice_dir)], axis=1)
    return axes / np.linalg.norm(axes, axis=0)


def voxel_spacing(image: ismrmrd.Image) -> np.ndarray:
    """(x, y, z) voxel size in mm: field of view over matrix size (z: the slice thickness of 2D images)."""
    size = np.maximum([int(n) for n in image.matrix_size], 1)
    return vector(image.field_of_view) / size


def lps_affine(image: ismrmrd.Image, slice_spacing_mm: float | None = None) -> np.ndarray:
    """4x4 matrix from voxel (x, y, z) indices of ``image`` to LPS millimetres.

    ``slice_spacing_mm`` overrides the z spacing (the distance between stacked 2D slices);
    otherwise it is ``field_of_view[2] / matrix_size[2]`` (the slice thickness of a 2D image).
    """
    spacing = voxel_spacing(image)
    if slice_spacing_mm is not None:
        spacing[2] = slice_spacing_mm
    columns = image_axes(image) * spacing
    centre_index = np.array([int(n) // 2 for n in image.matrix_size], dtype=float)
    affine = np.eye(4)
    affine[:3, :3] = columns
    affine[:3, 3] = vector(image.position) - columns @ centre_index
    return affine


def warn_without_geometry(images: Iterable[ismrmrd.Image], what: str) -> None:
    """One warning naming the series whose images have no patient geometry, for output ``what``."""
    series = sorted({int(im.image_series_index) for im in images if not has_geometry(im)})
    if series:
        log.warning(
            "%s: series %s %s no patient geometry (zero direction vectors); written with the "
            "identity orientation",
            what,
            ", ".join(map(str, series)),
            "has" if len(series) == 1 else "have",
        )
