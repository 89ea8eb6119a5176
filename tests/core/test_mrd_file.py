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

from mrzero.core import mrd_file
from mrzero.core.mrd_file import (
    MRDFileError,
    RawMRDWriter,
    acquisition_body,
    readable_acquisitions,
    write_raw_file,
)

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


@pytest.fixture(params=["native", "h5py"])
def row_path(request, monkeypatch) -> str:
    """Rows through the HDF5 library directly, or through h5py (where that library is not found)."""
    if request.param == "h5py":
        monkeypatch.setattr(mrd_file, "_native", lambda: None)
    elif mrd_file._native() is None:
        pytest.skip("h5py's HDF5 library is not found in this process (not Linux?)")
    return request.param


def test_written_file_reads_with_ismrmrd(tmp_path, row_path):
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


def test_waveforms_images_and_attributes(tmp_path, row_path):
    writer = RawMRDWriter(tmp_path / "mixed.h5")
    writer.write_header(XML)
    writer.set_attribute("config", "cartesian")
    wav = ismrmrd.Waveform.from_array(np.arange(8, dtype=np.uint32).reshape(2, 4))
    wav2 = ismrmrd.Waveform.from_array(np.arange(30, dtype=np.uint32).reshape(3, 10) * 7)
    writer.append_waveforms([wav.to_bytes(), memoryview(bytearray(wav2.to_bytes()))])
    image = ismrmrd.Image.from_array(np.arange(12, dtype=np.float32).reshape(3, 4), transpose=False)
    image.attribute_string = ismrmrd.Meta({"ImageComments": "x"}).serialize()
    head = bytes(image.getHead())
    attrs = image.attribute_string.encode()
    writer.append_image(head + struct.pack("<Q", len(attrs)) + attrs + image.data.tobytes())
    writer.close()
    with ismrmrd.Dataset(str(tmp_path / "mixed.h5"), "dataset", create_if_needed=False) as dset:
        np.testing.assert_array_equal(dset.read_waveform(0).data, wav.data)
        np.testing.assert_array_equal(dset.read_waveform(1).data, wav2.data)
        back = dset.read_image("images_received", 0)
        np.testing.assert_array_equal(back.data, image.data)
        assert ismrmrd.Meta.deserialize(back.attribute_string)["ImageComments"] == "x"
    with h5py.File(tmp_path / "mixed.h5", "r") as f:
        assert f["dataset"].attrs["config"] == "cartesian"


def _write_then_die(path: Path, flushed: int, unflushed: int, flushes: int = 1) -> None:
    """Child: ``flushed`` rows flushed in ``flushes`` batches (the cache emptied after each),
    ``unflushed`` more written, then SIGKILL."""
    acqs = acquisitions(flushed + unflushed)
    writer = RawMRDWriter(path)
    writer.write_header(XML)
    for part in np.array_split(np.arange(flushed), flushes):
        writer.append_acquisitions([acquisition_body(acqs[k]) for k in part])
        writer.flush()
    for acq in acqs[flushed:]:  # many small writes: chunks and metadata change without a flush
        writer.append_acquisitions([acquisition_body(acq)])
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize(
    "flushed, unflushed, flushes", [(10, 1, 1), (100, 37, 1), (64, 200, 1), (150, 90, 7)]
)
def test_a_process_killed_between_flushes_leaves_the_last_flush(tmp_path, flushed, unflushed, flushes):
    path = tmp_path / "killed.h5"
    child = multiprocessing.get_context("spawn").Process(
        target=_write_then_die, args=(path, flushed, unflushed, flushes)
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


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_the_writer_holds_only_what_was_written_since_the_last_flush(tmp_path):
    """HDF5 keeps variable-length samples in its metadata cache: without the eviction after each
    flush it held the whole file (and the process twice its size)."""
    bodies = [acquisition_body(a) for a in acquisitions(16, coils=32, samples=512)]  # 2 MB
    writer = RawMRDWriter(tmp_path / "long.h5")
    rss = _rss_bytes()
    for _ in range(48):  # 96 MB
        writer.append_acquisitions(bodies)
        assert writer.cache_bytes() > 2 << 20  # the batch, until its flush
        writer.flush()
        assert writer.cache_bytes() <= 1 << 20  # HDF5's minimum cache size
    assert _rss_bytes() - rss < 40 << 20  # unbounded: 2 x 96 MB
    writer.close()
    assert readable_acquisitions(tmp_path / "long.h5") == 48 * 16


def test_reserved_space_is_allocated_past_the_end_and_given_back_at_close(tmp_path):
    path = tmp_path / "reserved.h5"
    writer = RawMRDWriter(path)
    writer.write_header(XML)
    writer.flush()
    size = os.stat(path).st_size
    if not writer.reserve(8 << 20):
        pytest.skip("this file system cannot allocate space past the end of a file")
    reserved = os.stat(path)
    assert reserved.st_size == size and reserved.st_blocks * 512 >= size + (8 << 20)
    writer.append_acquisitions([acquisition_body(a) for a in acquisitions(50)])
    writer.close()
    closed = os.stat(path)
    assert closed.st_blocks * 512 < closed.st_size + (1 << 20)
    assert readable_acquisitions(path) == 50


def test_a_body_that_does_not_match_its_header_is_refused(tmp_path, row_path):
    body = acquisition_body(acquisitions(1)[0])
    writer = RawMRDWriter(tmp_path / "bad.h5")
    with pytest.raises((MRDFileError, ValueError)):
        writer.append_acquisitions([body[:-3]])
    writer.close()
