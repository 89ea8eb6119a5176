"""``mrzero serve`` and ``mrzero send`` as a user runs them: separate processes, real TCP."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import ismrmrd
import numpy as np
from pipelines_for_tests import rss_image
from scans_for_tests import header_xml, scan

from mrzero.pipelines.image_files import read_images_h5
from mrzero.pipelines.mrd_header import parse_header

HERE = Path(__file__).resolve().parent
MRZERO = [sys.executable, "-c", "import sys; from mrzero.cli import main; sys.exit(main())"]


def test_serve_and_send_processes(tmp_path):
    acqs, xml = scan(seed=4), header_xml()
    raw = tmp_path / "raw.h5"
    with ismrmrd.Dataset(str(raw), "dataset", mode="w") as dset:
        dset.write_xml_header(xml.encode())
        for acq in acqs:
            dset.append_acquisition(acq)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    server = subprocess.Popen(
        [
            *MRZERO,
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path / "journal"),
            "--pipeline-module",
            "pipelines_for_tests",
            "--max-connections",
            "2",
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in server.stderr:
            if match := re.search(r"listening on 127\.0\.0\.1:(\d+)", line):
                port = match.group(1)
                break
        else:
            raise AssertionError("the server did not report its address")
        assert "2 connections" in line and "test_rss" in line
        out = tmp_path / "images.h5"
        sent = subprocess.run(
            [
                *MRZERO,
                "send",
                str(raw),
                "--port",
                port,
                "--config",
                "test_rss",
                "-o",
                str(out),
                "--png",
                str(tmp_path / "png"),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert sent.returncode == 0, sent.stderr
        assert "1 images received" in sent.stdout
        images = read_images_h5(out)
        np.testing.assert_allclose(images[0].data[0, 0], rss_image(acqs, parse_header(xml)), rtol=1e-5)
        assert len(list((tmp_path / "png").glob("*.png"))) == 1

        refused = subprocess.run(
            [*MRZERO, "send", str(raw), "--port", port, "--config", "nope"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert refused.returncode == 1 and "unknown pipeline 'nope'" in refused.stderr  # errors: stderr, once
        assert refused.stderr.count("unknown pipeline 'nope'") == 1
    finally:
        server.send_signal(signal.SIGTERM)
        log = server.communicate(timeout=120)[1]
    assert server.returncode == 0, log
    assert "pipeline test_rss: 32 acquisitions" in log and "stopping" in log
    assert len(list((tmp_path / "journal").glob("*.h5"))) == 2


def test_send_explains_bad_files_and_unreachable_servers(tmp_path, capsys):
    from mrzero.cli import main as mrzero

    not_hdf5 = tmp_path / "notes.h5"
    not_hdf5.write_text("not HDF5")
    assert mrzero(["send", str(tmp_path / "missing.h5")]) == 2
    assert mrzero(["send", str(not_hdf5)]) == 2
    with socket.socket() as unused:  # a port nobody listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    raw = tmp_path / "raw.h5"
    with ismrmrd.Dataset(str(raw), "dataset", mode="w") as dset:
        dset.write_xml_header(header_xml().encode())
    assert mrzero(["send", str(raw), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert "missing.h5: no such file" in err and "not an HDF5 file" in err
    assert f"no MRD server at 127.0.0.1:{port} (connection refused)" in err
