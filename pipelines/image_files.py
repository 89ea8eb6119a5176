"""Writing and reading MRD images on disk: MRD HDF5 files and PNG figures, with the file names that
NIfTI, PNG and DICOM share.

Shared by ``mrzero send``/``demo`` (images a server returned) and offline reprocessing. HDF5
groups are named ``image_<series index>`` inside ``/dataset``, as python-ismrmrd-server's
client writes them, so files from either tool read the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import ismrmrd
import numpy as np

from mrzero.pipelines.images import meta_text, read_meta, rescale


def write_images_h5(
    images: Iterable[ismrmrd.Image], path: Path | str, dataset: str = "dataset", header_xml: str | None = None
) -> Path:
    """Write images (and optionally the scan's XML header, which makes the file streamable)
    to a new MRD HDF5 file, replacing an existing one; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with ismrmrd.Dataset(str(path), dataset, mode="w") as dset:
        if header_xml is not None:
            dset.write_xml_header(header_xml.encode("utf-8"))
        for image in images:
            dset.append_image(f"image_{image.image_series_index}", image)
    return path


def read_images_h5(path: Path | str, dataset: str = "dataset") -> list[ismrmrd.Image]:
    """All images of an MRD HDF5 file, group by group (sorted by name), in stored order."""
    with ismrmrd.Dataset(str(path), dataset, mode="r") as dset:
        groups = sorted(k for k in dset.list() if k.startswith("image"))
        return [dset.read_image(g, i) for g in groups for i in range(dset.number_of_images(g))]


def series_name(stem: str, series: int) -> str:
    """The file-name stem of one series, the same for NIfTI, PNG and DICOM: ``{stem}_s{series:03d}``."""
    return f"{stem}_s{int(series):03d}"


def plane_name(stem: str, image: ismrmrd.Image, number: int, channel: int, z: int) -> str:
    """The file-name stem of one 2D plane: ``{stem}_s{series:03d}_{number:03d}`` with ``_c{channel}``
    and ``_z{z}`` when the image has several channels or slices (shared by PNG and DICOM)."""
    channels, planes = image.data.shape[:2]
    return (
        f"{series_name(stem, image.image_series_index)}_{number:03d}"
        + (f"_c{channel}" if channels > 1 else "")
        + (f"_z{z}" if planes > 1 else "")
    )


#: Size in inches and resolution of a PNG preview (a 16x16 image's pixels become 20-pixel squares).
PREVIEW_INCHES, PREVIEW_DPI = 4.0, 80
#: Colour maps: grey for images, a perceptually uniform one for quantitative maps.
IMAGE_CMAP, MAP_CMAP = "gray", "viridis"


def plane_values(image: ismrmrd.Image) -> np.ndarray:
    """``[channel, z, y, x]`` float values (magnitude of complex data, ``pixel * slope + intercept``)."""
    data = np.abs(image.data) if np.iscomplexobj(image.data) else image.data
    slope, intercept = rescale(image)
    return data.astype(np.float64) * slope + intercept


def display_range(image: ismrmrd.Image, values: np.ndarray) -> tuple[float, float]:
    """(low, high) in values from the image's ``WindowCenter``/``WindowWidth`` meta, else the value range."""
    meta = read_meta(image)
    slope, intercept = rescale(image)
    try:
        centre, width = float(meta_text(meta, "WindowCenter")), float(meta_text(meta, "WindowWidth"))
    except ValueError:
        width = 0.0
    if width > 0:
        centre = centre * slope + intercept
        return centre - width * abs(slope) / 2, centre + width * abs(slope) / 2
    finite = values[np.isfinite(values)]
    return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)


def image_title(image: ismrmrd.Image, channel: int = 0, z: int = 0) -> str:
    """``pipeline, series, slice`` (and what the image is): the title of a preview."""
    meta = read_meta(image)
    history = meta.get("ImageProcessingHistory", [])
    history = [history] if isinstance(history, str) else list(history)
    pipeline = " ".join(h for h in history if h and h != "MRZERO").lower() or "mrzero"
    what = meta_text(meta, "SequenceDescriptionAdditional")
    if what and what.lower() not in pipeline:
        pipeline = f"{pipeline}: {what}"
    where = f"series {image.image_series_index}, slice {image.slice}"
    extra = (f", channel {channel}" if image.data.shape[0] > 1 else "") + (
        f", z {z}" if image.data.shape[1] > 1 else ""
    )
    return f"{pipeline}\n{where}{extra}, image {image.image_index}"


def map_label(image: ismrmrd.Image) -> str | None:
    """``Quantity [Units]`` of a quantitative map (``DataRole`` ``Quantitative``), None for other images."""
    meta = read_meta(image)
    if meta_text(meta, "DataRole") != "Quantitative":
        return None
    quantity = meta_text(meta, "Quantity") or meta_text(meta, "SequenceDescriptionAdditional", "map")
    return f"{quantity} [{meta_text(meta, 'Units', 'a.u.')}]"


def show_plane(
    ax,
    plane: np.ndarray,
    low: float,
    high: float,
    label: str | None,
    title: str,
    mask: np.ndarray | None = None,
):
    """Draw one plane on ``ax``: grey for images; for maps (``label`` ``Quantity [Units]``) a colour
    map with the background masked (``mask`` False, else zero or non-finite pixels) and a colour bar."""
    if label is not None:
        keep = np.isfinite(plane) & (plane != 0) if mask is None else mask & np.isfinite(plane)
        plane = np.ma.masked_where(~keep, plane)
    shown = ax.imshow(
        plane,
        cmap=IMAGE_CMAP if label is None else MAP_CMAP,
        vmin=low,
        vmax=high,
        interpolation="nearest",
        origin="upper",
    )
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()
    if label is not None:
        ax.figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.04).set_label(label, fontsize=8)
    return shown


def preview_figure(image: ismrmrd.Image, channel: int = 0, z: int = 0):
    """The matplotlib figure of one plane: title (pipeline, series, slice), maps with a colour bar."""
    from matplotlib.figure import Figure

    values = plane_values(image)
    low, high = display_range(image, values)
    label = map_label(image)
    figure = Figure(
        figsize=(PREVIEW_INCHES * (1.25 if label else 1.0), PREVIEW_INCHES),
        dpi=PREVIEW_DPI,
        layout="constrained",
    )
    show_plane(figure.add_subplot(), values[channel, z], low, high, label, image_title(image, channel, z))
    return figure


def write_pngs(images: Iterable[ismrmrd.Image], directory: Path | str, stem: str = "image") -> list[Path]:
    """One PNG per image, channel and slice, named ``{stem}_s{series:03d}_{n:03d}[_c][_z].png``
    (as the DICOM files): a titled figure, maps in colour with their units on a colour bar.

    Pixels are drawn as squares (no interpolation), so a 16x16 image is as readable as a 256x256 one.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for n, image in enumerate(images):
        for c in range(image.data.shape[0]):
            for z in range(image.data.shape[1]):
                path = directory / f"{plane_name(stem, image, n, c, z)}.png"
                preview_figure(image, c, z).savefig(path)
                written.append(path)
    return written
