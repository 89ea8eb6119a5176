"""Writing MRD raw-data HDF5 files (``/dataset/xml`` and ``/dataset/data``) in batches.

``ismrmrd.Dataset.append_acquisition`` grows the HDF5 dataset by one row per acquisition,
which costs milliseconds each and made conversion slower than reading the twix file. This
writer fills the same layout, with ``ismrmrd``'s own row type (``ismrmrd.hdf5.acquisition_dtype``),
a few hundred rows at a time; ``ismrmrd.Dataset`` and ISMRMRD's C++ tools read the result.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import h5py
import ismrmrd
import numpy as np
from ismrmrd.hdf5 import acquisition_dtype, acquisition_header_dtype

#: Acquisitions per HDF5 write.
BATCH = 256


def _rows(batch: list[ismrmrd.Acquisition]) -> np.ndarray:
    rows = np.empty(len(batch), dtype=acquisition_dtype)
    for k, acq in enumerate(batch):
        rows[k]["head"] = np.frombuffer(acq.getHead(), dtype=acquisition_header_dtype)[0]
        rows[k]["data"] = np.ascontiguousarray(acq.data).view(np.float32).ravel()
        rows[k]["traj"] = np.ascontiguousarray(acq.traj, dtype=np.float32).ravel()
    return rows


def write_raw_file(path: str | Path, header: ismrmrd.xsd.ismrmrdHeader,
                   acquisitions: Iterable[ismrmrd.Acquisition], count: int, group: str = "dataset") -> int:
    """Write ``header`` and the ``count`` acquisitions to a new MRD HDF5 file; returns how many."""
    with h5py.File(path, "w") as f:
        dataset = f.create_group(group)
        xml = dataset.create_dataset("xml", shape=(1,), dtype=h5py.special_dtype(vlen=bytes))
        xml[0] = ismrmrd.xsd.ToXML(header).encode()
        data = dataset.create_dataset("data", shape=(count,), maxshape=(None,), dtype=acquisition_dtype,
                                      chunks=(max(1, min(count, BATCH)),))
        written = 0
        batch: list[ismrmrd.Acquisition] = []
        for acq in acquisitions:
            batch.append(acq)
            if len(batch) == BATCH:
                data[written:written + len(batch)] = _rows(batch)
                written += len(batch)
                batch = []
        if batch:
            data[written:written + len(batch)] = _rows(batch)
            written += len(batch)
        if written != count:
            data.resize((written,))
    return written
