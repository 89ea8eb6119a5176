"""A table of bad command lines: each ends with its exit status and exactly one line saying what is
wrong (no traceback, no ``None``, no API wording), before any long work, and leaves no output behind."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from mrzero.cli import main

GRE = Path(__file__).parents[1] / "data" / "twix" / "gre.dat"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed once the probe is


@pytest.fixture(scope="module")
def gre_h5(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gre") / "gre.h5"
    assert main(["convert", str(GRE), "-o", str(path)]) == 0
    return path


#: (command line, exit status, text the one line must contain); ``{h5}`` an MRD raw file, ``{out}`` an
#: empty folder that must stay empty, ``{dir}`` an existing folder, ``{port}`` a closed port.
BAD = [
    (["convert", str(GRE), "-o", "/proc/x.h5"], 2, "/proc/x.h5: cannot write there"),
    (["convert", "{dir}"], 2, "is a folder, expected a file"),
    (["convert", "{out}/missing.dat"], 2, "missing.dat: no such file"),
    (["convert", str(GRE), "-o", "{h5}"], 2, "exists (use --force to replace it)"),
    (["send", "{h5}", "--port", "{port}", "-o", "{out}/images.h5"], 2, "no MRD server at 127.0.0.1:{port}"),
    (["send", "{h5}", "-o", "/proc/x.h5"], 2, "/proc/x.h5: cannot write there"),
    (["send", "{dir}"], 2, "is a folder, expected a file"),
    (["send", "{h5}", "--timeout", "-3"], 2, "argument --timeout: '-3' is not a positive number of seconds"),
    (["send", "{h5}", "--port", "70000"], 2, "argument --port: '70000' is not a TCP port"),
    (["scan", "learned_gre", "--port", "{port}", "-o", "{out}/scan"], 2, "no MRD server at 127.0.0.1:{port}"),
    (["scan", "learned_gre", "--coils", "-2"], 2, "argument --coils: '-2' is not a coil count"),
    (["scan", "learned_gre", "--noise", "0"], 2, "argument --noise: '0' is not a positive SNR"),
    (["scan", "learned_gre", "-o", "/proc/x"], 2, "/proc/x: cannot write there"),
    (["scan", "{dir}", "--port", "{port}"], 2, "not a bundle directory nor a shipped bundle"),
    (["recon", "{h5}", "-o", "/proc/x"], 2, "/proc/x: cannot write there"),
    (["recon", "{out}/missing.h5", "-o", "{out}/r"], 2, "missing.h5: no such file or folder"),
    (["recon", "{h5}", "-o", "{out}/r", "--parameters", "[1]"], 2, "--parameters: must be a JSON object"),
    (["recon", "{h5}", "-o", "{out}/r", "--pipeline", "nope"], 2, "nope"),
    (["export", "{dir}/fake.png", "-o", "{out}/bundle"], 1, "fake.png: not a safe torch checkpoint"),
    (["demo", "-o", "/proc/d"], 2, "/proc/d: cannot write there"),
    (["demo", "--coils", "0"], 2, "argument --coils: '0' is not a coil count"),
    (["demo", "--shepp-logan", "--matrix", "-4"], 2, "argument --matrix: '-4' is not an image matrix size"),
    (["serve", "--max-connections", "-1"], 2, "--max-connections"),
    (["serve", "--timeout", "-3"], 2, "--timeout"),
    (["serve", "--dicom-dir", "/proc/x", "--port", "0"], 2, "/proc/x: cannot write there"),
    (["bundle", "check", "{dir}"], 1, "not a bundle directory"),
    (["deploy", "{dir}", "--store", "{out}/store"], 1, "not a bundle directory"),
    (["simulate", "--sequence", "gre", "--slice", "99", "-o", "{out}/sim"], 2, "--slice 99"),
    (["simulate", "--sequence", "gre", "-o", "/proc/simx"], 2, "/proc/simx"),
    (["simulate", "--sequence", "gre", "--coils", "-2", "-o", "{out}/sim"], 2, "--coils -2"),
    (["nonsense"], 2, "invalid choice: 'nonsense'"),
    (["pipelines", "extra"], 2, "unknown pipeline 'extra'; known pipelines: adjoint, cartesian"),
    (["send", "{h5}", "--bogus"], 2, "unrecognized arguments: --bogus"),
]


@pytest.mark.parametrize(("argv", "status", "says"), BAD, ids=[" ".join(b[0])[:60] for b in BAD])
def test_bad_invocation(argv, status, says, gre_h5, tmp_path, capsys, monkeypatch):
    out, folder, port = tmp_path / "out", tmp_path / "dir", _closed_port()
    out.mkdir()
    folder.mkdir()
    (folder / "fake.png").write_bytes(b"\x89PNG not really")
    fill = {"h5": str(gre_h5), "out": str(out), "dir": str(folder), "port": str(port)}
    argv = [arg.format(**fill) for arg in argv]
    root = logging.getLogger()  # main() logs to this test's stderr, as it would to a terminal's
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse
        code = exit_.code
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == status, lines
    assert len(lines) == 1, lines  # one line, printed once
    (line,) = lines
    assert says.format(**fill) in line
    for wrong in ("Traceback", "None", "overwrite=True", "weights_only"):
        assert wrong not in captured.err + captured.out + line
    assert list(out.iterdir()) == []  # a failed command leaves nothing
