"""Offline reconstruction of MRD HDF5 files: the same pipelines as the server, without a socket.

``read_header``/``read_acquisitions``/``read_waveforms`` read a dataset written by
``ismrmrd.Dataset`` (Python or C++, including Debian's ISMRMRD 1.8 tools, whose header says
``<version>8</version>``); ``reconstruct_file`` runs a registered pipeline over it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import ismrmrd
import numpy as np
from tqdm import tqdm

from mrzero.pipelines import registry
from mrzero.pipelines.base import Context
from mrzero.pipelines.mrd_header import parse_header

log = logging.getLogger("mrzero.pipelines.offline")

#: Acquisitions read from HDF5 per request.
READ_CHUNK = 256


class MRDFileError(ValueError):
    """The file is not a readable MRD HDF5 dataset."""


def _check(path: str | Path, dataset: str) -> None:
    """``MRDFileError`` unless ``path`` is an HDF5 file with an MRD dataset that has a header."""
    path = Path(path)
    if not path.is_file():
        raise MRDFileError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as probe:
            if dataset not in probe or "xml" not in probe[dataset]:
                raise MRDFileError(f"{path}: no MRD dataset {dataset!r} with a header in this file")
    except OSError as err:
        raise MRDFileError(f"{path}: not an HDF5 file ({err})") from err


@contextmanager
def _dataset(path: str | Path, dataset: str) -> Iterator[ismrmrd.Dataset]:
    _check(path, dataset)
    ds = ismrmrd.Dataset(str(path), dataset, create_if_needed=False)
    try:
        yield ds
    finally:
        ds.close()


def read_header(path: str | Path, dataset: str = "dataset") -> ismrmrd.xsd.ismrmrdHeader:
    """The parsed MRD header of ``path``."""
    with _dataset(path, dataset) as ds:
        return parse_header(ds.read_xml_header())


def _acquisition(row: np.void) -> ismrmrd.Acquisition:
    """One row of a dataset's ``data`` table as an acquisition (what ``Dataset.read_acquisition``
    does, without reading the row three times)."""
    acq = ismrmrd.Acquisition(row["head"])
    shape = (acq.active_channels, acq.number_of_samples)
    data = row["data"].view(np.complex64)
    if data.size != shape[0] * shape[1]:
        raise MRDFileError(
            f"acquisition scan_counter={acq.scan_counter} stores {data.size} samples, "
            f"its header says {shape[0]} coils x {shape[1]} samples"
        )
    acq.data[:] = data.reshape(shape)
    if acq.traj.size:
        acq.traj[:] = row["traj"].reshape(acq.traj.shape)
    return acq


def read_acquisitions(
    path: str | Path, dataset: str = "dataset", progress: bool = False
) -> Iterator[ismrmrd.Acquisition]:
    """The acquisitions of ``path`` in stored order, read ``READ_CHUNK`` rows at a time."""
    _check(path, dataset)
    with h5py.File(path, "r") as f:
        if "data" not in f[dataset]:
            return
        table = f[dataset]["data"]
        with tqdm(total=table.shape[0], desc="acquisitions", unit="acq", disable=not progress) as bar:
            for start in range(0, table.shape[0], READ_CHUNK):
                for row in table[start : start + READ_CHUNK]:
                    yield _acquisition(row)
                    bar.update()


def read_waveforms(path: str | Path, dataset: str = "dataset") -> Iterator[ismrmrd.Waveform]:
    """The waveforms of ``path`` in stored order (none if the file has none)."""
    with _dataset(path, dataset) as ds:
        for i in range(ds.number_of_waveforms() if "waveforms" in ds.list() else 0):
            yield ds.read_waveform(i)


def reconstruct_file(
    path: str | Path,
    pipeline_name: str = "",
    parameters: dict[str, Any] | None = None,
    dataset: str = "dataset",
    progress: bool = False,
    bundle_store: str | Path | None = None,
) -> list[ismrmrd.Image]:
    """Run the registered pipeline ``pipeline_name`` (default pipeline if empty) over a file;
    ``bundle_store`` is where MRzero pipelines find the scan's bundle (as the server's ``--bundle-store``)."""
    spec = registry.get(pipeline_name)
    ctx = Context(
        header=read_header(path, dataset),
        parameters=dict(parameters or {}),
        pipeline_name=spec.name,
        bundle_store=Path(bundle_store) if bundle_store else None,
    )
    images = list(spec.run(read_acquisitions(path, dataset, progress), ctx))
    log.info("%s: pipeline %s made %d images", path, spec.name, len(images))
    return images
