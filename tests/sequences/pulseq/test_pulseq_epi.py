"""A fat-saturated EPI with navigators (written by pypulseq): TE from the imaging echo, fat
saturated and water kept in the digital twin, and ``mrzero simulate`` on the file."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import matplotlib.image
import numpy as np
import pytest
import torch
from epi_file import write_epi

from mrzero.cli import main
from mrzero.sequences.phantoms import water_fat_phantom
from mrzero.sequences.pulseq.import_ import echo_and_repetition_time, import_seq
from mrzero.sequences.simulate import simulate

N = 16


@pytest.fixture(scope="module")
def epi_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("epi")
    with_fs = write_epi(folder / "epi_fs.seq", n=N)
    write_epi(folder / "epi_plain.seq", n=N, fat_sat=False)
    return folder, with_fs


def test_te_is_the_imaging_echo_not_the_navigator(epi_files):
    folder, pulseq = epi_files
    imported = import_seq(folder / "epi_fs.seq")
    k, _, t_excitation, _, t_adc = pulseq.calculate_kspace()  # pypulseq's own trajectory and times
    imaging = np.arange(len(t_adc)) >= 3 * N  # the three navigators come first
    norm = np.linalg.norm(k, axis=0)
    nearest = np.argsort(np.where(imaging, norm, np.inf))[:2]  # kx = -1/2 and +1/2 of the centre line
    expected = float(t_adc[nearest].mean() - t_excitation[-1])
    assert imported.te == pytest.approx(expected, abs=1e-6)
    report = re.search(r"^TE: ([0-9.]+) s", pulseq.test_report(), re.MULTILINE)
    assert imported.te == pytest.approx(float(report.group(1)), abs=1e-6)  # pypulseq's test report agrees
    first_navigator = np.argsort(norm[:N])[:2]  # it crosses k = 0 as early as any imaging line does
    navigator = float(t_adc[first_navigator].mean() - t_excitation[-1])
    assert echo_and_repetition_time(imported.sequence)[0] == pytest.approx(
        navigator, abs=1e-6
    )  # global minimum
    assert navigator < imported.te - 4e-3
    assert imported.sequence.matrix[:2] == (N, N)


def signal_norm(path, phantom) -> float:
    imported = import_seq(path)
    return float(simulate(imported.sequence, phantom)[0][torch.from_numpy(imported.imaging)].abs().sum())


def test_fat_saturation_of_the_epi_saturates_fat_and_keeps_water(epi_files):
    folder, _ = epi_files
    both = water_fat_phantom((N, N))
    fat_only = replace(both, pd=torch.zeros_like(both.pd))
    water_only = replace(both, fat=None)
    imported = import_seq(folder / "epi_fs.seq")
    gap = float(imported.sequence.duration[0].sum())  # fat-sat centre to excitation centre
    fat_mz = 1 - (1 - math.cos(math.radians(110))) * math.exp(-gap / both.fat.t1)  # Mz of fat, recovering
    fat_ratio = signal_norm(folder / "epi_fs.seq", fat_only) / signal_norm(folder / "epi_plain.seq", fat_only)
    water_ratio = signal_norm(folder / "epi_fs.seq", water_only) / signal_norm(
        folder / "epi_plain.seq", water_only
    )
    assert fat_ratio == pytest.approx(abs(fat_mz), abs=0.01)
    assert water_ratio == pytest.approx(1.0, abs=0.01)


def test_mrzero_simulate_reads_the_epi_and_leaves_the_navigators_out_of_the_image(
    epi_files, tmp_path, capsys
):
    folder, _ = epi_files
    assert (
        main(
            [
                "simulate",
                str(folder / "epi_fs.seq"),
                "--phantom",
                "water_fat",
                "--no-progress",
                "-o",
                str(tmp_path),
            ]
        )
        == 0
    ), capsys.readouterr().err
    assert "304 ADC samples" in capsys.readouterr().out
    picture = matplotlib.image.imread(tmp_path / "epi_fs.png")
    assert picture.shape[:2] == (N, N)
