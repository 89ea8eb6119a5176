"""Accelerated scans from ISMRMRD's generator streamed through a real server on 127.0.0.1: every
repetition comes back unfolded (GRAPPA by default), equal to the offline reconstruction of the
same file; what the pipeline refuses comes back as one error text and no image, and the raw data
stay in the journal. NRMSE and the reference are those of
``tests/pipelines/test_cartesian_generator.py``."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import h5py
import ismrmrd
import numpy as np
import pytest
from server_harness import only_error
from shepp_logan_mrd import generate

from mrzero.client import send_file
from mrzero.pipelines.offline import reconstruct_file

pytestmark = pytest.mark.needs_ismrmrd_tools
AS_CPP = {"output": "float", "scale": "dft", "prewhiten": False}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> np.ndarray:
    work = tmp_path_factory.mktemp("reference")
    path = generate(work / "noiseless.h5", noise=0.0, noise_scan=True)
    subprocess.run(["ismrmrd_recon_cartesian_2d", str(path), "dataset"], check=True, capture_output=True)
    with h5py.File(path, "r") as f:
        return f["dataset/cpp/data"][0, 0, 0]


def _send(server, path: Path, parameters: dict | None = None):
    host, port = server.address
    return send_file(
        path,
        host=host,
        port=port,
        config="cartesian",
        parameters=json.dumps({"parameters": parameters}) if parameters is not None else None,
        progress=False,
        timeout_s=120,
    )


@pytest.mark.parametrize(("accel", "limit"), [(2, 0.08), (3, 0.12)])
def test_streamed_repetitions_are_unfolded(server, tmp_path, reference, accel, limit):
    path = generate(tmp_path / f"r{accel}.h5", accel=accel, acs=32, noise_scan=True)
    reply = _send(server, path, AS_CPP)
    assert reply.errors == [] and reply.closed, reply.texts
    assert sorted(im.repetition for im in reply.images) == list(range(accel))
    for im in reply.images:
        error = float(np.linalg.norm(im.data[0, 0] - reference) / np.linalg.norm(reference))
        assert error < limit
    # the offline run of the same file (its GRAPPA fit may sum in another order: other thread count)
    offline = reconstruct_file(path, "cartesian", AS_CPP)
    for streamed, expected in zip(sorted(reply.images, key=lambda im: im.repetition), offline, strict=True):
        np.testing.assert_allclose(streamed.data, expected.data, atol=1e-3 * expected.data.max())
    default = _send(server, path)  # default parameters: 16-bit images of every repetition
    assert default.errors == [] and [im.data.dtype for im in default.images] == [np.uint16] * accel


def test_refusal_is_one_error_text_and_no_image_and_the_journal_keeps_the_data(server, tmp_path):
    path = generate(tmp_path / "good.h5", accel=2, acs=32, noise_scan=True)
    radial = tmp_path / "radial.h5"
    shutil.copy(path, radial)
    with h5py.File(radial, "r+") as f:
        xml = f["dataset/xml"][0].decode()
        del f["dataset/xml"]
        f["dataset"].create_dataset(
            "xml",
            data=[
                xml.replace("<trajectory>cartesian</trajectory>", "<trajectory>radial</trajectory>").encode()
            ],
            dtype=h5py.string_dtype(),
        )
    before = set(server.settings.data_dir.glob("*.h5"))
    error = only_error(_send(server, radial))
    assert (
        error.startswith("ERROR")
        and (
            "pipeline 'cartesian' failed: cannot reconstruct this scan: encoding 0 has a 'radial' trajectory"
        )
        in error
    )
    assert server.wait_idle(120)
    (journal,) = set(server.settings.data_dir.glob("*.h5")) - before
    with ismrmrd.Dataset(str(journal), "dataset", create_if_needed=False) as dset:
        assert dset.number_of_acquisitions() == 161  # the noise scan and both repetitions (64 + 16 lines)
