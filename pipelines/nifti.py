"""MRD images as NIfTI volumes whose affine places every voxel where the scanner measured it.

MRD images carry their geometry in the patient coordinates of DICOM (LPS, millimetres): the
``position`` of the image centre, the unit vectors ``read_dir`` (along a row, increasing column
index x), ``phase_dir`` (down a column, increasing row index y) and ``slice_dir``, and the
``field_of_view`` over ``matrix_size``. As everywhere in this project (``core/ops/units``),
pixel ``i`` of ``n`` sits at ``(i - n // 2)`` pixels from the centre. NIfTI's world space is
RAS, so the affine is ``diag(-1, -1, 1)`` times the LPS one. Voxel axes are (x, y, z[, volume]):
the NIfTI array is the MRD ``[z, y, x]`` array transposed.

Images of one series are stacked into one file: 2D images along their slice normal (when the
slices are parallel and evenly spaced) and the groups of counters that repeat a slice
(contrast, phase, repetition, set, channel) along a fourth axis; whatever cannot be stacked is
written one file per image.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import ismrmrd
import nibabel as nib
import numpy as np

log = logging.getLogger(__name__)

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
#: Relative tolerance on slice spacing and direction agreement when stacking slices.
_STACK_TOLERANCE = 1e-3


def _vector(values) -> np.ndarray:
    return np.array([float(v) for v in values])


def lps_affine(image: ismrmrd.Image, slice_spacing_mm: float | None = None) -> np.ndarray:
    """4x4 matrix from voxel (x, y, z) indices of ``image`` to LPS millimetres.

    ``slice_spacing_mm`` overrides the z spacing (the distance between stacked 2D slices);
    otherwise it is ``field_of_view[2] / matrix_size[2]`` (the slice thickness of a 2D image).
    """
    size = [int(n) for n in image.matrix_size]
    fov = _vector(image.field_of_view)
    spacing = fov / np.maximum(size, 1)
    if slice_spacing_mm is not None:
        spacing[2] = slice_spacing_mm
    axes = np.stack([_vector(image.read_dir), _vector(image.phase_dir), _vector(image.slice_dir)], axis=1)
    for k in range(3):
        norm = np.linalg.norm(axes[:, k])
        if not 0.9 < norm < 1.1:
            raise ValueError(f"image {image.image_index} has no valid geometry "
                             f"(direction {k} has length {norm:.3g})")
        axes[:, k] /= norm
    columns = axes * spacing
    centre_index = np.array([n // 2 for n in size], dtype=float)
    affine = np.eye(4)
    affine[:3, :3] = columns
    affine[:3, 3] = _vector(image.position) - columns @ centre_index
    return affine


def ras_affine(image: ismrmrd.Image, slice_spacing_mm: float | None = None) -> np.ndarray:
    """The NIfTI (RAS) affine of ``image``; see :func:`lps_affine`."""
    flip = np.eye(4)
    flip[:3, :3] = _LPS_TO_RAS
    return flip @ lps_affine(image, slice_spacing_mm)


def _volume_key(image: ismrmrd.Image) -> tuple[int, ...]:
    return (int(image.contrast), int(image.phase), int(image.repetition), int(image.set), int(image.average))


def _stack_slices(images: list[ismrmrd.Image]) -> tuple[list[ismrmrd.Image], float | None] | None:
    """Slices sorted along their normal with their spacing, or None if they do not form a volume."""
    if len(images) == 1:
        return images, None
    first = images[0]
    normal = _vector(first.slice_dir)
    for image in images[1:]:
        same = (tuple(image.matrix_size) == tuple(first.matrix_size)
                and np.allclose(_vector(image.read_dir), _vector(first.read_dir), atol=_STACK_TOLERANCE)
                and np.allclose(_vector(image.phase_dir), _vector(first.phase_dir), atol=_STACK_TOLERANCE))
        if not same or int(image.matrix_size[2]) != 1:
            return None
    ordered = sorted(images, key=lambda im: float(_vector(im.position) @ normal))
    positions = np.array([_vector(im.position) for im in ordered])
    steps = np.diff(positions, axis=0)
    along = steps @ normal
    if along.min() <= 0 or not np.allclose(along, along[0], rtol=_STACK_TOLERANCE):
        return None
    if not np.allclose(steps, np.outer(along, normal), atol=_STACK_TOLERANCE * float(along[0]) + 1e-6):
        return None  # shifted in-plane from slice to slice
    return ordered, float(along[0])


def _series_volumes(images: list[ismrmrd.Image]) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """(data [x, y, z, volumes], RAS affine) for a whole series, or None if it does not stack."""
    groups: dict[tuple[int, ...], list[ismrmrd.Image]] = defaultdict(list)
    for image in images:
        groups[_volume_key(image)].append(image)
    stacks = [_stack_slices(group) for _, group in sorted(groups.items())]
    if any(s is None for s in stacks):
        return None
    reference, spacing = stacks[0]
    for ordered, other_spacing in stacks[1:]:
        if len(ordered) != len(reference) or other_spacing != spacing or any(
                not np.allclose(_vector(a.position), _vector(b.position), atol=1e-3)
                for a, b in zip(ordered, reference, strict=True)):
            return None
    volumes = []
    for ordered, _ in stacks:
        data = np.concatenate([im.data for im in ordered], axis=1)  # [channel, z, y, x]
        volumes.extend(data[c].transpose(2, 1, 0) for c in range(data.shape[0]))
    array = np.stack(volumes, axis=-1)
    if array.shape[-1] == 1:
        array = array[..., 0]
    return [(array, ras_affine(reference[0], spacing))]


def _nifti(data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    if data.dtype == np.float64:
        data = data.astype(np.float32)
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=1)  # scanner-based anatomical coordinates
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    return image


def write_nifti(images: Iterable[ismrmrd.Image], directory: str | Path, stem: str) -> list[Path]:
    """Write ``images`` as NIfTI files ``{stem}_s{series}.nii.gz`` in ``directory``; returns the paths."""
    directory = Path(directory)
    series: dict[int, list[ismrmrd.Image]] = defaultdict(list)
    for image in images:
        series[int(image.image_series_index)].append(image)
    written: list[Path] = []
    for index, members in sorted(series.items()):
        volumes = _series_volumes(members)
        if volumes is None:
            log.info("series %d does not form one volume; writing its %d images separately", index,
                     len(members))
            volumes = [(im.data.transpose(3, 2, 1, 0).squeeze(-1) if im.data.shape[0] == 1
                        else im.data.transpose(3, 2, 1, 0), ras_affine(im)) for im in members]
        for n, (data, affine) in enumerate(volumes):
            suffix = f"_{n:03d}" if len(volumes) > 1 else ""
            path = directory / f"{stem}_s{index:03d}{suffix}.nii.gz"
            directory.mkdir(parents=True, exist_ok=True)
            nib.save(_nifti(data, affine), str(path))
            written.append(path)
    return written
