"""MRD images as NIfTI volumes whose affine places every voxel where the scanner measured it.

MRD images carry their geometry in the patient coordinates of DICOM (LPS, millimetres): the
``position`` of the image centre, the unit vectors ``read_dir`` (along a row, increasing column
index x), ``phase_dir`` (down a column, increasing row index y) and ``slice_dir``, and the
``field_of_view`` over ``matrix_size``. As everywhere in this project (``core/units.py``),
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

from mrzero.pipelines.image_files import series_name
from mrzero.pipelines.image_geometry import lps_affine, vector, warn_without_geometry
from mrzero.pipelines.images import meta_text, read_meta, rescale

log = logging.getLogger(__name__)

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
#: Relative tolerance on slice spacing and direction agreement when stacking slices.
_STACK_TOLERANCE = 1e-3


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
    normal = vector(first.slice_dir)
    for image in images[1:]:
        same = (
            tuple(image.matrix_size) == tuple(first.matrix_size)
            and np.allclose(vector(image.read_dir), vector(first.read_dir), atol=_STACK_TOLERANCE)
            and np.allclose(vector(image.phase_dir), vector(first.phase_dir), atol=_STACK_TOLERANCE)
        )
        if not same or int(image.matrix_size[2]) != 1:
            return None
    ordered = sorted(images, key=lambda im: float(vector(im.position) @ normal))
    positions = np.array([vector(im.position) for im in ordered])
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
        if (
            len(ordered) != len(reference)
            or other_spacing != spacing
            or any(
                not np.allclose(vector(a.position), vector(b.position), atol=1e-3)
                for a, b in zip(ordered, reference, strict=True)
            )
        ):
            return None
    volumes = []
    for ordered, _ in stacks:
        data = np.concatenate([im.data for im in ordered], axis=1)  # [channel, z, y, x]
        volumes.extend(data[c].transpose(2, 1, 0) for c in range(data.shape[0]))
    array = np.stack(volumes, axis=-1)
    if array.shape[-1] == 1:
        array = array[..., 0]
    return [(array, ras_affine(reference[0], spacing))]


def _scaling(members: list[ismrmrd.Image]) -> tuple[float, float, str]:
    """(scl_slope, scl_inter, description) of a series: its ``RescaleSlope``/``RescaleIntercept``
    meta and ``Quantity [Units]`` (NaN slope when images differ, which then leave as values)."""
    scales = {rescale(im) for im in members}
    slope, intercept = scales.pop() if len(scales) == 1 else (float("nan"), 0.0)
    meta = read_meta(members[0])
    quantity = meta_text(meta, "Quantity", meta_text(meta, "SequenceDescriptionAdditional", "image"))
    units = meta_text(meta, "Units")
    return slope, intercept, f"{quantity} [{units}]" if units else quantity


def _nifti(
    data: np.ndarray, affine: np.ndarray, slope: float, intercept: float, description: str
) -> nib.Nifti1Image:
    """A NIfTI image whose ``scl_slope``/``scl_inter`` turn the stored integers into values."""
    if data.dtype == np.float64:
        data = data.astype(np.float32)
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=1)  # scanner-based anatomical coordinates
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    image.header.set_data_dtype(data.dtype)
    if (slope, intercept) != (1.0, 0.0):
        image.header.set_slope_inter(slope, intercept)
    image.header["descrip"] = description.encode("ascii", "replace")[:79]
    return image


def write_nifti(images: Iterable[ismrmrd.Image], directory: str | Path, stem: str) -> list[Path]:
    """Write ``images`` as NIfTI files ``{stem}_s{series:03d}.nii.gz`` in ``directory``; returns the paths.

    Integer images keep their integers, with the ``RescaleSlope``/``RescaleIntercept`` meta as
    ``scl_slope``/``scl_inter``; the description says ``Quantity [Units]``. Images without patient
    geometry get the identity orientation (``image_geometry``), with a warning.
    """
    directory = Path(directory)
    images = list(images)
    warn_without_geometry(images, f"NIfTI {stem}")
    series: dict[int, list[ismrmrd.Image]] = defaultdict(list)
    for image in images:
        series[int(image.image_series_index)].append(image)
    written: list[Path] = []
    for index, members in sorted(series.items()):
        slope, intercept, description = _scaling(members)
        if np.isnan(slope):  # maps with different scalings in one series: store the values
            members = [_as_values(im) for im in members]
            slope, intercept = 1.0, 0.0
        volumes = _series_volumes(members)
        if volumes is None:
            log.info(
                "series %d does not form one volume; writing its %d images separately", index, len(members)
            )
            volumes = [
                (
                    im.data.transpose(3, 2, 1, 0).squeeze(-1)
                    if im.data.shape[0] == 1
                    else im.data.transpose(3, 2, 1, 0),
                    ras_affine(im),
                )
                for im in members
            ]
        for n, (data, affine) in enumerate(volumes):
            suffix = f"_{n:03d}" if len(volumes) > 1 else ""
            path = directory / f"{series_name(stem, index)}{suffix}.nii.gz"
            directory.mkdir(parents=True, exist_ok=True)
            nib.save(_nifti(data, affine, slope, intercept, description), str(path))
            written.append(path)
    return written


def _as_values(image: ismrmrd.Image) -> ismrmrd.Image:
    """A float32 copy of ``image`` holding ``pixel * slope + intercept``."""
    slope, intercept = rescale(image)
    return ismrmrd.Image(
        head=image.getHead(),
        attribute_string=image.attribute_string,
        data=image.data.astype(np.float32) * np.float32(slope) + np.float32(intercept),
    )
