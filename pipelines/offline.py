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
from tqdm import tqdm

from pipelines import registry
from pipelines.base import Context
from pipelines.header import parse_header

log = logging.getLogger("pipelines.offline")


class MRDFileError(ValueError):
    """The file is not a readable MRD HDF5 dataset."""


@contextmanager
def _dataset(path: str | Path, dataset: str) -> Iterator[ismrmrd.Dataset]:
    path = Path(path)
    if not path.is_file():
        raise MRDFileError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as probe:
            if dataset not in probe or "xml" not in probe[dataset]:
                raise MRDFileError(f"{path}: no MRD dataset {dataset!r} with a header in this file")
    except OSError as err:
        raise MRDFileError(f"{path}: not an HDF5 file ({err})") from err
    ds = ismrmrd.Dataset(str(path), dataset, create_if_needed=False)
    try:
        yield ds
    finally:
        ds.close()


def read_header(path: str | Path, dataset: str = "dataset") -> ismrmrd.xsd.ismrmrdHeader:
    """The parsed MRD header of ``path``."""
    with _dataset(path, dataset) as ds:
        return parse_header(ds.read_xml_header())


def _count(ds: ismrmrd.Dataset, group: str) -> int:
    return (ds.number_of_acquisitions() if group == "data" else ds.number_of_waveforms()) \
        if group in ds.list() else 0


def read_acquisitions(path: str | Path, dataset: str = "dataset", progress: bool = False
                      ) -> Iterator[ismrmrd.Acquisition]:
    """The acquisitions of ``path`` in stored order."""
    with _dataset(path, dataset) as ds:
        for i in tqdm(range(_count(ds, "data")), desc="acquisitions", unit="acq", disable=not progress):
            yield ds.read_acquisition(i)


def read_waveforms(path: str | Path, dataset: str = "dataset") -> Iterator[ismrmrd.Waveform]:
    """The waveforms of ``path`` in stored order (none if the file has none)."""
    with _dataset(path, dataset) as ds:
        for i in range(_count(ds, "waveforms")):
            yield ds.read_waveform(i)


def reconstruct_file(path: str | Path, pipeline_name: str = "", parameters: dict[str, Any] | None = None,
                     dataset: str = "dataset", progress: bool = False) -> list[ismrmrd.Image]:
    """Run the registered pipeline ``pipeline_name`` (default pipeline if empty) over a file."""
    spec = registry.get(pipeline_name)
    ctx = Context(header=read_header(path, dataset), parameters=dict(parameters or {}),
                  pipeline_name=spec.name)
    images = list(spec.run(read_acquisitions(path, dataset, progress), ctx))
    log.info("%s: pipeline %s made %d images", path, spec.name, len(images))
    return images
