"""Bad twix files (empty, truncated, not twix, protocol without the needed fields): each error names
the file and the problem, nothing is left behind, and a folder run carries on and summarises."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import twix_writer as tw

from mrzero.cli import main
from mrzero.pipelines.image_files import read_images_h5
from mrzero.pipelines.reprocess import reprocess
from mrzero.pipelines.twix import TwixError, convert_twix

GRE = Path(__file__).resolve().parents[2] / "data" / "twix" / "gre.dat"


def _bad_files(folder: Path) -> dict[str, str]:
    """Bad files written into ``folder``: name -> words the error must contain."""
    raw = GRE.read_bytes()
    (folder / "empty.dat").write_bytes(b"")
    (folder / "truncated.dat").write_bytes(raw[: len(raw) * 3 // 5])
    (folder / "header_only.dat").write_bytes(raw[:12000])
    # gre.dat readouts are 5376 bytes: 192-byte header + 2 x (32-byte channel header + 320 x 8 bytes)
    corrupt = bytearray(raw)
    first_readout = 10240 + int.from_bytes(raw[10240:10244], "little")
    corrupt[first_readout + 5 * 5376 : first_readout + 5 * 5376 + 192] = bytes(192)  # sixth readout's header
    (folder / "corrupt.dat").write_bytes(bytes(corrupt))
    (folder / "notes.dat").write_text("scan notes: patient moved during the third series\n" * 20)
    (folder / "noise.dat").write_bytes(np.random.default_rng(1).bytes(200_000))
    tw.write_synthetic(folder / "no_base_resolution.dat", noise_readouts=2, with_base_resolution=False)
    return {
        "empty.dat": "empty file",
        "truncated.dat": "truncated",
        "header_only.dat": "truncated",
        "corrupt.dat": "corrupt readout header",
        "notes.dat": "not a twix file",
        "noise.dat": "not a twix file",
        "no_base_resolution.dat": "MeasYaps.sKSpace.lBaseResolution",
    }


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("bad")
    return folder, _bad_files(folder)


def test_each_bad_file_gets_an_error_naming_file_and_problem_and_no_output(bad_folder, tmp_path):
    folder, problems = bad_folder
    for name, words in problems.items():
        out = tmp_path / f"{name}.h5"
        with pytest.raises(TwixError) as caught:
            convert_twix(folder / name, out)
        message = str(caught.value)
        assert str(folder / name) in message and words in message, message
    assert list(tmp_path.iterdir()) == []  # no output, no temporary file


def test_a_truncated_multi_raid_file_names_the_measurement(tmp_path):
    whole = tmp_path / "whole.dat"
    tw.write_synthetic(whole)
    cut = tmp_path / "cut.dat"
    cut.write_bytes(whole.read_bytes()[:-5000])
    with pytest.raises(TwixError, match=r"cut\.dat: truncated: measurement 1 "):
        convert_twix(cut, tmp_path / "cut.h5")


def test_a_failure_at_the_last_step_removes_the_temporary_file(tmp_path):
    (tmp_path / "gre.h5").mkdir()  # the output name is taken by a folder: the final rename fails
    with pytest.raises(OSError):
        convert_twix(GRE, tmp_path / "gre.h5", overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["gre.h5"] and not any((tmp_path / "gre.h5").iterdir())


def test_an_existing_output_is_not_replaced_without_asking(tmp_path):
    out = tmp_path / "gre.h5"
    out.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="--force"):
        convert_twix(GRE, out)
    assert out.read_bytes() == b"keep me"


def test_a_folder_run_continues_past_bad_files_and_summarises(bad_folder, capsys):
    folder, problems = bad_folder
    shutil.copy(GRE, folder / "gre.dat")
    convert_twix(GRE, folder / "gre.h5")  # the same scan as MRD raw data
    out = folder / "out"  # inside the input folder: a rerun must not read it
    try:
        assert main(["recon", str(folder), "-o", str(out), "--no-progress"]) == 1  # some files failed
        assert main(["recon", str(folder), "-o", str(out), "--no-progress", "--force"]) == 1
        printed = capsys.readouterr().out.split("file(s) reconstructed")[-2:]
        assert all(text.startswith(f", {len(problems)} failed") for text in printed)
        report = printed[-1]
        for name, words in problems.items():
            line = next(line for line in report.splitlines() if f"{name}:" in line)
            assert "FAILED" in line and words in line, line
        assert sorted(p.name for p in out.iterdir()) == ["gre_dat", "gre_h5"]  # no failures' leftovers
        for name in ("gre_dat", "gre_h5"):
            assert (out / name / f"{name}_images.h5").is_file()
            assert (out / name / f"{name}_s001.nii.gz").is_file()
            assert list((out / name / "png").glob("*.png"))
        (from_dat,), (from_h5,) = (read_images_h5(out / n / f"{n}_images.h5") for n in ("gre_dat", "gre_h5"))
        np.testing.assert_array_equal(from_dat.data, from_h5.data)
    finally:
        (folder / "gre.dat").unlink()
        (folder / "gre.h5").unlink()
        shutil.rmtree(out, ignore_errors=True)


def test_summary_of_a_run_in_python(bad_folder, tmp_path):
    folder, problems = bad_folder
    summary = reprocess(folder / "empty.dat", tmp_path, progress=False)
    assert len(summary.failed) == 1 and not summary.succeeded
    assert "empty file" in summary.failed[0].error and list(tmp_path.iterdir()) == []


def test_cli_errors_and_exit_codes(bad_folder, tmp_path, capsys):
    folder, _ = bad_folder
    assert main(["convert", str(folder / "notes.dat"), "-o", str(tmp_path / "x.h5")]) == 1
    assert not (tmp_path / "x.h5").exists()
    assert main(["recon", str(tmp_path / "missing"), "-o", str(tmp_path / "out")]) == 2
    (tmp_path / "empty_folder").mkdir()
    assert main(["recon", str(tmp_path / "empty_folder"), "-o", str(tmp_path / "out")]) == 2
    assert main(["recon", str(GRE), "-o", str(tmp_path / "out"), "--pipeline", "no_such"]) == 2
    assert main(["recon", str(GRE), "-o", str(tmp_path / "out"), "--parameters", "[1, 2]"]) == 2
    assert not (tmp_path / "out").exists()
    assert main(["convert", str(GRE), "-o", str(tmp_path / "gre.h5")]) == 0
    assert "160 acquisitions (0 noise)" in capsys.readouterr().out
