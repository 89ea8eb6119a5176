"""Building MRD images (``ismrmrd.Image``) with the geometry and meta that FIRE expects.

Every pipeline ends here: ``make_image`` copies the geometry of the acquisition nearest the
k-space centre (position, read/phase/slice directions, patient table position, time stamps,
slice/contrast/phase/repetition/set/average), takes the field of view from the header's recon
space, and writes the FIRE meta keys: ``DataRole``, ``ImageProcessingHistory``,
``WindowCenter``, ``WindowWidth``, ``SequenceDescriptionAdditional``, ``ImageComments``,
``ImageRowDir`` and ``ImageColumnDir``.
"""

from __future__ import annotations

from collections.abc import Sequence

import ismrmrd
import numpy as np
import torch

#: Largest value of a 16-bit unsigned image.
UINT16_MAX = 65535


def as_numpy(data: np.ndarray | torch.Tensor) -> np.ndarray:
    """A tensor or array on the host as a numpy array."""
    return data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)


def to_uint16(data: np.ndarray | torch.Tensor) -> np.ndarray:
    """Magnitude rounded and clipped to ``[0, 65535]`` as ``uint16``."""
    mag = np.abs(as_numpy(data)).astype(np.float64)
    return np.clip(np.rint(mag), 0, UINT16_MAX).astype(np.uint16)


def window(data: np.ndarray | torch.Tensor) -> tuple[float, float]:
    """(centre, width) spanning the image's value range (width at least 1)."""
    mag = np.abs(as_numpy(data))
    lo, hi = (float(mag.min()), float(mag.max())) if mag.size else (0.0, 0.0)
    return (hi + lo) / 2.0, max(hi - lo, 1.0)


def _directions(values: Sequence[float]) -> list[str]:
    return [f"{float(v):.18f}" for v in values]


def make_image(
    data: np.ndarray | torch.Tensor,
    reference: ismrmrd.AcquisitionHeader | ismrmrd.Acquisition,
    header: ismrmrd.xsd.ismrmrdHeader,
    *,
    series: int,
    index: int,
    role: str = "Image",
    comment: str = "",
    history: Sequence[str] = ("MRZERO",),
    description: str = "",
    encoding: int | None = None,
    window_meta: tuple[float, float] | None = None,
    image_type: int | None = None,
) -> ismrmrd.Image:
    """An MRD image of ``data`` (``[y, x]``, ``[z, y, x]`` or ``[channel, z, y, x]``).

    ``reference`` is the acquisition (or its header) nearest the k-space centre; ``series`` and
    ``index`` become ``image_series_index`` and ``image_index``; ``role`` is FIRE's ``DataRole``
    (``Image``, ``Quantitative``, ...); ``description`` goes to ``SequenceDescriptionAdditional``.
    The window (centre, width) defaults to the data's value range; ``image_type`` defaults to
    magnitude for real data and complex for complex data. ``encoding`` selects the header's
    encoding for the FOV (default: the reference's ``encoding_space_ref``).
    """
    array = np.ascontiguousarray(as_numpy(data))
    if array.ndim not in (2, 3, 4):
        raise ValueError(f"image data must be [y, x], [z, y, x] or [channel, z, y, x], got {array.shape}")
    enc = header.encoding[reference.encoding_space_ref if encoding is None else encoding]
    fov = enc.reconSpace.fieldOfView_mm
    if image_type is None:
        image_type = ismrmrd.IMTYPE_COMPLEX if np.iscomplexobj(array) else ismrmrd.IMTYPE_MAGNITUDE
    image = ismrmrd.Image.from_array(
        array,
        acquisition=reference,
        image_type=image_type,
        image_index=index,
        image_series_index=series,
        field_of_view=(fov.x, fov.y, fov.z),
    )
    centre, width = window_meta if window_meta is not None else window(array)
    meta = ismrmrd.Meta()
    meta["DataRole"] = role
    meta["ImageProcessingHistory"] = list(history)
    meta["WindowCenter"] = str(round(centre, 6))
    meta["WindowWidth"] = str(round(width, 6))
    meta["SequenceDescriptionAdditional"] = description
    meta["ImageComments"] = comment
    meta["ImageRowDir"] = _directions(reference.read_dir)
    meta["ImageColumnDir"] = _directions(reference.phase_dir)
    image.attribute_string = meta.serialize()
    return image


def read_meta(image: ismrmrd.Image) -> ismrmrd.Meta:
    """The image's meta attributes (empty when it has none or they do not parse)."""
    try:
        return ismrmrd.Meta.deserialize(image.attribute_string) if image.attribute_string else ismrmrd.Meta()
    except (ValueError, SyntaxError, KeyError):  # the XML parser's errors for a malformed string
        return ismrmrd.Meta()


def meta_text(meta: ismrmrd.Meta, key: str, default: str = "") -> str:
    """One meta value as text (the first of a list), ``default`` when absent or empty."""
    value = meta.get(key, default)
    if isinstance(value, list):
        value = value[0] if value else default
    return str(value) if str(value) else default


def rescale(image: ismrmrd.Image) -> tuple[float, float]:
    """(slope, intercept) with which a pixel becomes a value, ``RescaleSlope``/``RescaleIntercept`` meta
    (``value = pixel * slope + intercept``; (1, 0) when absent)."""
    meta = read_meta(image)
    try:
        return float(meta_text(meta, "RescaleSlope", "1")), float(meta_text(meta, "RescaleIntercept", "0"))
    except ValueError:
        return 1.0, 0.0
