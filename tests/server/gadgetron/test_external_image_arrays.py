"""Images and Gadgetron image arrays reach a pipeline that takes images, one MRD image per
``(n, s, loc)`` of the array, with its header and meta text; the image array bytes are written
here as Gadgetron's C++ ImageArray writer lays them out."""

from __future__ import annotations

import struct

import ismrmrd
import numpy as np
import pytest

from mrzero.server.gadgetron.peer import opening, run_chain

# gadgetron's reader builds an object array of ctypes headers (server/gadgetron/wire.py silences
# this outside pytest, which resets warning filters per test)
pytestmark = pytest.mark.filterwarnings("ignore:A builtin ctypes object:RuntimeWarning")

HEADER = """<?xml version="1.0"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
  <experimentalConditions><H1resonanceFrequency_Hz>63500000</H1resonanceFrequency_Hz></experimentalConditions>
  <encoding>
    <encodedSpace><matrixSize><x>8</x><y>6</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>200</x><y>150</y><z>5</z></fieldOfView_mm></encodedSpace>
    <reconSpace><matrixSize><x>8</x><y>6</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>200</x><y>150</y><z>5</z></fieldOfView_mm></reconSpace>
    <encodingLimits/>
    <trajectory>cartesian</trajectory>
  </encoding>
</ismrmrdHeader>"""


def _dims(shape: tuple[int, ...]) -> bytes:
    return struct.pack(f"<Q{len(shape)}Q", len(shape), *shape)


def image_array_message(data: np.ndarray, headers: list[ismrmrd.ImageHeader], meta: list[str]) -> bytes:
    """Message 1024: data ``[x, y, z, cha, n, s, loc]`` column-major, headers ``[n, s, loc]``
    column-major, meta texts (uint64 lengths), no waveforms, no acquisition headers."""
    out = struct.pack("<H", 1024) + _dims(data.shape) + data.astype(np.complex64).tobytes(order="F")
    out += _dims(data.shape[4:]) + b"".join(bytes(h) for h in headers)
    out += struct.pack("<Q", len(meta)) + b"".join(struct.pack("<Q", len(m)) + m.encode() for m in meta)
    return out + b"\x00\x00"


def test_image_arrays_become_images_of_the_pipeline(gadget):
    rng = np.random.default_rng(3)
    nx, ny, nz, cha, n, s, loc = 8, 6, 1, 2, 2, 1, 2
    data = (
        rng.standard_normal((nx, ny, nz, cha, n, s, loc))
        + 1j * rng.standard_normal((nx, ny, nz, cha, n, s, loc))
    ).astype(np.complex64)
    order = [np.unravel_index(i, (n, s, loc), order="F") for i in range(n * s * loc)]
    headers, meta = [], []
    for i, _ in enumerate(order):
        head = ismrmrd.ImageHeader()
        head.image_index = i + 1
        head.image_series_index = 7
        headers.append(head)
        m = ismrmrd.Meta()
        m["GADGETRON_ImageNumber"] = str(i + 1)
        meta.append(m.serialize())
    plain = ismrmrd.Image.from_array(np.ones((1, 1, 4, 4), np.float32))
    plain.image_index = 99

    answer = run_chain(
        gadget.address,
        opening({"pipeline": "test_echo_images"}, HEADER),
        [image_array_message(data, headers, meta), plain],
    )

    assert answer.closed and answer.errors == [] and answer.illegal is None
    assert len(answer.images) == len(order) + 1
    for i, (image, (a, b, c)) in enumerate(zip(answer.images[:-1], order, strict=True)):
        assert image.image_index == i + 1 and image.image_series_index == 7
        assert image.data.dtype == np.complex64 and image.data.shape == (cha, nz, ny, nx)
        assert np.array_equal(image.data, data[:, :, :, :, a, b, c].transpose(3, 2, 1, 0))
        assert ismrmrd.Meta.deserialize(image.attribute_string)["GADGETRON_ImageNumber"] == str(i + 1)
    assert answer.images[-1].image_index == 99 and np.array_equal(answer.images[-1].data, plain.data)
