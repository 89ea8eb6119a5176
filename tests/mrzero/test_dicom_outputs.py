"""DICOM from every place images leave: ``mrzero recon --dicom``, ``mrzero send --dicom`` and the server's
``--dicom-dir``, on the real twix GRE (real patient geometry): read back with pydicom, each file's
pixels are the MRD image's and its first pixel sits where the MRD geometry puts it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from mrzero.cli import main
from mrzero.pipelines.image_files import read_images_h5
from mrzero.pipelines.image_geometry import lps_affine
from mrzero.server.limits import Settings
from mrzero.server.listener import Server

GRE = Path(__file__).parents[1] / "data" / "twix" / "gre.dat"


@pytest.fixture(scope="module")
def gre_h5(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gre") / "gre.h5"
    assert main(["convert", str(GRE), "-o", str(path)]) == 0
    return path


def _assert_matches(dicom_dir: Path, images) -> None:
    files = sorted(dicom_dir.glob("*.dcm"))
    assert len(files) == len(images) >= 1
    for path, image in zip(files, images, strict=True):
        ds = pydicom.dcmread(path)
        np.testing.assert_array_equal(ds.pixel_array, image.data[0, 0])
        first_pixel = (lps_affine(image) @ [0, 0, 0, 1])[:3]
        np.testing.assert_allclose(np.array(ds.ImagePositionPatient, dtype=float), first_pixel, atol=1e-4)
        assert ds.SeriesNumber == image.image_series_index
        assert not any(p.name.endswith(".part") for p in dicom_dir.iterdir())


def test_recon_writes_dicom_beside_nifti_and_png(gre_h5, tmp_path, capsys):
    assert main(["recon", str(gre_h5), "-o", str(tmp_path / "out"), "--dicom", "--no-progress"]) == 0
    folder = tmp_path / "out" / "gre"
    assert str(folder) in capsys.readouterr().out  # says where it wrote
    images = read_images_h5(folder / "gre_images.h5")
    _assert_matches(folder / "dicom", images)
    names = {p.stem for p in (folder / "dicom").glob("*.dcm")}
    assert names == {p.stem for p in (folder / "png").glob("*.png")}  # one naming scheme


def test_server_dicom_dir_and_send_dicom(gre_h5, tmp_path, capsys):
    server = Server(Settings(port=0, data_dir=tmp_path / "journal", dicom_dir=tmp_path / "pacs")).start()
    try:
        _, port = server.address
        code = main(
            [
                "send",
                str(gre_h5),
                "--port",
                str(port),
                "-o",
                str(tmp_path / "images.h5"),
                "--dicom",
                str(tmp_path / "sent"),
            ]
        )
    finally:
        server.stop()
    assert code == 0
    out = capsys.readouterr().out
    texts = [line for line in out.splitlines() if line.startswith("server:")]
    assert texts and len(texts) == len(set(texts))  # each server text printed once
    assert "images (DICOM)" in out
    images = read_images_h5(tmp_path / "images.h5")
    _assert_matches(tmp_path / "sent", images)
    (scan_folder,) = (tmp_path / "pacs").iterdir()  # one folder per scan
    _assert_matches(scan_folder, images)
    sent, stored = (pydicom.dcmread(next(d.glob("*.dcm"))) for d in (tmp_path / "sent", scan_folder))
    assert sent.StudyInstanceUID == stored.StudyInstanceUID  # the same scan is the same study


def test_send_to_a_closed_port_fails_before_streaming_and_writes_nothing(gre_h5, tmp_path, capsys):
    server = Server(Settings(port=0, data_dir=tmp_path / "j")).start()
    _, port = server.address
    server.stop()  # the port is now closed
    code = main(["send", str(gre_h5), "--port", str(port), "-o", str(tmp_path / "images.h5")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.strip() == f"mrzero send: no MRD server at 127.0.0.1:{port} (connection refused)"
    assert not (tmp_path / "images.h5").exists()
