"""The one raw-MRD writer: files that ``ismrmrd.Dataset`` reads, and crash consistency (a process
killed between flushes leaves the file of its last flush)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import struct
from pathlib import Path

import h5py
import ismrmrd
import numpy as np
import pytest

from mrzero.core.mrd_file import RawMRDWriter, acquisition_body, readable_acquisitions, write_raw_file

XML = '<?xml version="1.0"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"></ismrmrdHeader>'


def acquisitions(n: int, coils: int = 2, samples: int = 16) -> list[ismrmrd.Acquisition]:
    rng = np.random.default_rng(n)
    out = []
    for k in range(n):
        data = rng.standard_normal((coils, samples)) + 1j * rng.standard_normal((coils, samples))
        acq = ismrmrd.Acquisition.from_array(data.astype(np.complex64))
        acq.scan_counter = k
        acq.idx.kspace_encode_step_1 = k % 7
        out.append(acq)
    return out


def test_written_file_reads_with_ismrmrd(tmp_path):
    acqs = acquisitions(300)
    traj = ismrmrd.Acquisition.from_array(
        np.ones((1, 4), np.complex64), trajectory=np.ones((4, 2), np.float32)
    )
    path = tmp_path / "raw.h5"
    assert write_raw_file(path, XML, [*acqs, traj], batch=64) == 301
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=False) as dset:
        assert dset.read_xml_header().decode() == XML
        assert dset.number_of_acquisitions() == 301
        for k in (0, 63, 64, 299):
            back = dset.read_acquisition(k)
            np.testing.assert_array_equal(back.data, acqs[k].data)
            assert back.scan_counter == k and back.idx.kspace_encode_step_1 == k % 7
        np.testing.assert_array_equal(dset.read_acquisition(300).traj, np.ones((4, 2), np.float32))
    with pytest.raises(FileExistsError):
        write_raw_file(path, XML, acqs)


def test_waveforms_images_and_attributes(tmp_path):
    writer = RawMRDWriter(tmp_path / "mixed.h5")
    writer.write_header(XML)
    writer.set_attribute("config", "cartesian")
    wav = ismrmrd.Waveform.from_array(np.arange(8, dtype=np.uint32).reshape(2, 4))
    writer.append_waveforms([wav.to_bytes()])
    image = ismrmrd.Image.from_array(np.arange(12, dtype=np.float32).reshape(3, 4), transpose=False)
    image.attribute_string = ismrmrd.Meta({"ImageComments": "x"}).serialize()
    head = bytes(image.getHead())
    attrs = image.attribute_string.encode()
    writer.append_image(head + struct.pack("<Q", len(attrs)) + attrs + image.data.tobytes())
    writer.close()
    with ismrmrd.Dataset(str(tmp_path / "mixed.h5"), "dataset", create_if_needed=False) as dset:
        np.testing.assert_array_equal(dset.read_waveform(0).data, wav.data)
        back = dset.read_image("images_received", 0)
        np.testing.assert_array_equal(back.data, image.data)
        assert ismrmrd.Meta.deserialize(back.attribute_string)["ImageComments"] == "x"
    with h5py.File(tmp_path / "mixed.h5", "r") as f:
        assert f["dataset"].attrs["config"] == "cartesian"


def _write_then_die(path: Path, flushed: int, unflushed: int) -> None:
    """Child: ``flushed`` rows flushed, ``unflushed`` more written, then SIGKILL."""
    acqs = acquisitions(flushed + unflushed)
    writer = RawMRDWriter(path)
    writer.write_header(XML)
    writer.append_acquisitions([acquisition_body(a) for a in acqs[:flushed]])
    writer.flush()
    for acq in acqs[flushed:]:  # many small writes: chunks and metadata change without a flush
        writer.append_acquisitions([acquisition_body(acq)])
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize("flushed, unflushed", [(10, 1), (100, 37), (64, 200)])
def test_a_process_killed_between_flushes_leaves_the_last_flush(tmp_path, flushed, unflushed):
    path = tmp_path / "killed.h5"
    child = multiprocessing.get_context("spawn").Process(
        target=_write_then_die, args=(path, flushed, unflushed)
    )
    child.start()
    child.join(120)
    assert child.exitcode == -signal.SIGKILL
    acqs = acquisitions(flushed + unflushed)
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=False) as dset:
        assert dset.number_of_acquisitions() == flushed
        for k in range(flushed):
            np.testing.assert_array_equal(dset.read_acquisition(k).data, acqs[k].data)
    assert readable_acquisitions(path) == flushed


def test_readable_acquisitions_stops_at_rows_that_never_reached_the_disk(tmp_path):
    path = tmp_path / "holes.h5"
    write_raw_file(path, XML, acquisitions(10))
    with h5py.File(path, "a") as f:
        f["dataset/data"].resize(70, axis=0)  # rows 10..69: never written, read as the fill value
    assert readable_acquisitions(path) == 10
    assert readable_acquisitions(tmp_path / "missing.h5") == 0
