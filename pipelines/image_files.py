"""Writing and reading MRD images on disk: MRD HDF5 files and PNG pictures.

Shared by ``mrzero send``/``demo`` (images a server returned) and offline reprocessing. HDF5
groups are named ``image_<series index>`` inside ``/dataset``, as python-ismrmrd-server's
client writes them, so files from either tool read the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import ismrmrd
import numpy as np


def write_images_h5(images: Iterable[ismrmrd.Image], path: Path | str, dataset: str = "dataset",
                    header_xml: str | None = None) -> Path:
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


def _window(image: ismrmrd.Image, pixels: np.ndarray) -> tuple[float, float]:
    """Display range from the image's WindowCenter/WindowWidth meta, else its min..max."""
    try:
        meta = ismrmrd.Meta.deserialize(image.attribute_string)
        center, width = float(meta["WindowCenter"]), float(meta["WindowWidth"])
        if width > 0:
            return center - width / 2, center + width / 2
    except (KeyError, ValueError, TypeError, SyntaxError):
        pass
    return float(pixels.min()), float(pixels.max())


#: PNG previews of images with fewer rows are enlarged by whole pixels towards this many rows.
PREVIEW_MIN_ROWS = 128


def write_pngs(images: Iterable[ismrmrd.Image], directory: Path | str, stem: str = "image") -> list[Path]:
    """One grey-scale PNG per image, channel and slice (magnitude of complex data).

    Small matrices (a 16x16 learned sequence, say) are enlarged by an integer factor, each pixel a
    square block, so that a person can see them; the values are not interpolated.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for n, image in enumerate(images):
        data = np.abs(image.data) if np.iscomplexobj(image.data) else image.data.astype(np.float32)
        low, high = _window(image, data)
        for c in range(data.shape[0]):
            for z in range(data.shape[1]):
                suffix = (f"_c{c}" if data.shape[0] > 1 else "") + (f"_z{z}" if data.shape[1] > 1 else "")
                path = directory / f"{stem}_s{image.image_series_index}_{n:03d}{suffix}.png"
                plane = data[c, z]
                factor = max(1, PREVIEW_MIN_ROWS // plane.shape[0])
                plane = np.kron(plane, np.ones((factor, factor), dtype=plane.dtype))
                plt.imsave(path, plane, cmap="gray", vmin=low, vmax=high, origin="upper")
                written.append(path)
    return written
