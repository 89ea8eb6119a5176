"""End to end with independent data: Debian's C++ Shepp-Logan generator's multi-coil raw data,
streamed through the server by ``mrzero demo``, give exactly the images of the offline run of
the same pipeline on the same file, and the demo writes MRD HDF5 and PNG files."""

from __future__ import annotations

import numpy as np
import pytest

from mrzero.pipelines.image_files import read_images_h5
from mrzero.pipelines.offline import reconstruct_file
from mrzero.shepp_logan_demo import run_demo

pytestmark = [pytest.mark.needs_ismrmrd_tools]


def test_demo_images_equal_the_offline_reconstruction(tmp_path):
    result = run_demo(tmp_path, matrix=64, coils=4)
    streamed = read_images_h5(result.images_h5)
    offline = reconstruct_file(result.raw, "cartesian")
    assert len(streamed) == len(offline) >= 1
    for a, b in zip(streamed, offline, strict=True):
        assert a.data.shape == b.data.shape and a.data.dtype == b.data.dtype
        assert np.array_equal(a.data, b.data)
        assert a.attribute_string == b.attribute_string
    assert result.pngs and all(p.read_bytes().startswith(b"\x89PNG") for p in result.pngs)
    journals = list(result.journal_dir.glob("*.h5"))
    assert len(journals) == 1
    assert any("pipeline cartesian:" in t for t in result.texts)
