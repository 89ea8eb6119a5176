"""``mrzero simulate`` end to end: builder -> engine -> MRD file -> cartesian pipeline and PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch

from mrzero.cli import main
from mrzero.pipelines.mrd_header import parse_header
from mrzero.sequences.phantoms import brain_phantom


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_simulated_gre_is_written_as_mrd_and_reconstructs_upright(tmp_path, capsys):
    import ismrmrd

    import mrzero.pipelines.catalog  # noqa: F401  (registers the mrzero.pipelines)
    from mrzero.pipelines.offline import reconstruct_file

    n = 16
    rc = main(
        [
            "simulate",
            "--sequence",
            "gre",
            "--matrix",
            str(n),
            "--coils",
            "2",
            "--flip",
            "15",
            "--noise",
            "1e-4",
            "-o",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "time simulate" in out and "flash 16x16" in out
    raw, png = tmp_path / "gre_16.h5", tmp_path / "gre_16.png"
    ds = ismrmrd.Dataset(str(raw), "dataset", create_if_needed=False)
    try:
        header = parse_header(ds.read_xml_header())
        assert ds.number_of_acquisitions() == 8 + n  # 4096 noise samples as 8 scans, then the lines
    finally:
        ds.close()
    assert header.acquisitionSystemInformation.receiverChannels == 2
    assert header.sequenceParameters.flipAngle_deg == [pytest.approx(15.0, abs=1e-3)]
    pd = brain_phantom((n, n)).pd.numpy()
    image = np.abs(reconstruct_file(raw, "cartesian", {"output": "float"})[0].data.squeeze())
    assert corr(image, pd) > 0.97
    assert corr(image, pd) > corr(image[::-1], pd) + 0.01  # upright, not flipped
    picture = matplotlib.image.imread(png)[..., 0]
    assert picture.shape == (n, n) and corr(picture, image) > 0.99


@pytest.mark.parametrize("sequence, tiles", [("mgre", (2, 5)), ("rare", (1, 1)), ("radial", (1, 1))])
def test_other_sequences_give_one_tile_per_image(tmp_path, capsys, sequence, tiles):
    n = 8
    rc = main(["simulate", "--sequence", sequence, "--matrix", str(n), "-o", str(tmp_path)])
    assert rc == 0, capsys.readouterr().out
    picture = matplotlib.image.imread(tmp_path / f"{sequence}_{n}.png")
    assert picture.shape[:2] == (tiles[0] * n, tiles[1] * n)


def test_mgre_echoes_decay_in_the_reconstructed_images(tmp_path):
    from mrzero.sequences.builder_scan import simulate_scan

    result = simulate_scan("mgre", 8, tmp_path, n_coils=1)
    means = result.images.mean(dim=(1, 2))
    assert result.images.shape == (10, 8, 8)
    assert bool(torch.all(means[1:] < means[:-1]))  # T2* decay from echo to echo


def test_bad_options_fail_with_a_clear_message(tmp_path, capsys):
    assert main(["simulate", "--sequence", "rare", "--matrix", "8", "--te", "5", "-o", str(tmp_path)]) == 2
    assert "sequence 'rare' has no option(s) te" in capsys.readouterr().err
    assert (
        main(["simulate", "--sequence", "gre", "--phantom", str(tmp_path / "x.nii.gz"), "-o", str(tmp_path)])
        == 2
    )
    assert "no such file" in capsys.readouterr().err
    assert main(["simulate", "--sequence", "gre", "--matrix", "64", "--te", "1", "-o", str(tmp_path)]) == 2
    assert "flash: TE 1.00 ms" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--sequence", "gre", "--slice", "99"], "--slice 99: the brain phantom has slices 0..7"),
        (["--sequence", "gre", "--coils", "-2"], "--coils -2: must be 1..64"),
        (["--sequence", "gre", "--engine", "warp"], "--engine warp: choose one of fast, isochromat"),
        (["--sequence", "gre", "--matrix", "1"], "--matrix 1: must be 2..1024"),
        (["--sequence", "gre", "--noise", "-1"], "--noise -1.0: must be >= 0"),
        ([], "give either a .seq FILE or --sequence NAME (one of them)"),
        (["missing.seq"], "missing.seq: no such file"),
    ],
)
def test_arguments_are_checked_before_simulating(tmp_path, capsys, argv, message):
    assert main(["simulate", *argv, "-o", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"mrzero simulate: {message}\n"  # one line, no traceback
    assert not (tmp_path / "out").exists()


def test_output_that_is_a_file_is_refused_before_simulating(tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    assert main(["simulate", "--sequence", "gre", "-o", str(tmp_path / "taken")]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err


def test_a_seq_file_is_simulated_with_its_own_labels_and_matrix(tmp_path, capsys):
    import ismrmrd

    seq_file = Path(__file__).resolve().parents[1] / "data" / "pulseq" / "gre_matlab.seq"
    rc = main(["simulate", str(seq_file), "--coils", "2", "--no-progress", "-o", str(tmp_path)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "gre_matlab: 64 reps x 65 events, 4096 ADC samples" in captured.out
    ds = ismrmrd.Dataset(str(tmp_path / "gre_matlab.h5"), "dataset", create_if_needed=False)
    try:
        acqs = [ds.read_acquisition(i) for i in range(ds.number_of_acquisitions())]
        header = parse_header(ds.read_xml_header())
    finally:
        ds.close()
    assert len(acqs) == 64 and acqs[0].data.shape == (2, 64)
    assert sorted(a.idx.kspace_encode_step_1 for a in acqs) == list(range(64))  # the file's LIN labels
    assert header.encoding[0].encodedSpace.matrixSize.x == 64
    picture = matplotlib.image.imread(tmp_path / "gre_matlab.png")[..., 0]
    pd = brain_phantom((64, 64)).pd.numpy()
    assert picture.shape == (64, 64) and corr(picture, pd) > 0.9


def test_radial_scan_reconstructs_the_brain_from_its_own_trajectory(tmp_path):
    from mrzero.sequences.builder_scan import simulate_scan

    n = 16
    pd = brain_phantom((n, n)).pd.numpy()
    result = simulate_scan("radial", n, tmp_path, spokes=2 * n, recon="cg")
    image = result.images[0].numpy()
    assert corr(image, pd) > 0.97
    assert corr(image, pd) > corr(image[::-1], pd) + 0.005


def test_seq_files_without_fov_or_samples_are_refused_with_a_reason(tmp_path, capsys):
    rotations = Path(__file__).resolve().parents[1] / "data" / "pulseq" / "radial_rotations_matlab.seq"
    assert main(["simulate", str(rotations), "-o", str(tmp_path)]) == 2
    assert (
        "defines no FOV; give one to import it (fov=(x, y, z) in m; --fov X Y Z in mm)"
        in capsys.readouterr().err
    )
    assert main(["simulate", str(rotations), "--fov", "200", "200", "5", "-o", str(tmp_path)]) == 2
    assert "the file acquires no ADC samples" in capsys.readouterr().err
