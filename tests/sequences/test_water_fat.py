"""Fat in simulated images: opposed- and in-phase echoes, and the fat shift along the readout."""

from __future__ import annotations

import math

import pytest
import torch

from mrzero.sequences.builder_scan import simulate_scan
from mrzero.sequences.phantom import FatSpecies, PhantomError
from mrzero.sequences.phantoms import water_fat_phantom


def test_fat_species_is_validated():
    ph = water_fat_phantom((8, 8))
    assert ph.fat is not None and ph.fat.shift_hz == pytest.approx(-3.4e-6 * 42.577478e6 * 3.0)
    with pytest.raises(PhantomError, match="fat.pd must be a finite non-negative map of shape"):
        ph.fat = FatSpecies(torch.ones(4, 4))
        ph.validate()
    with pytest.raises(PhantomError, match="fat.t1, fat.t2"):
        ph.fat = FatSpecies(torch.ones(8, 8), t2=0.0)
        ph.validate()


def region_means(image: torch.Tensor, n: int) -> tuple[float, float]:
    """Mean of the mixed (bottom) disc and of the water (left) disc."""
    ph = water_fat_phantom((n, n))
    mixed = (ph.pd == 0.5) & (ph.fat.pd == 0.5)
    water = (ph.pd == 1) & (ph.fat.pd == 0)
    return float(image[mixed].mean()), float(image[water].mean())


def test_mixed_voxels_cancel_at_opposed_phase_and_add_in_phase(tmp_path):
    n = 32
    opposed = simulate_scan("gre", n, tmp_path / "op", phantom="water_fat", te=3.45e-3).images[0]
    in_phase = simulate_scan("gre", n, tmp_path / "ip", phantom="water_fat", te=4.6e-3).images[0]
    mixed_op, water_op = region_means(opposed, n)
    mixed_ip, water_ip = region_means(in_phase, n)
    assert mixed_op < 0.25 * mixed_ip  # water and fat cancel in the mixed disc
    t2_star = 1 / (1 / 0.05 + 1 / 0.05)  # the phantom's water: T2 50 ms, T2' 50 ms
    assert water_ip / water_op == pytest.approx(math.exp(-1.15e-3 / t2_star), abs=0.01)  # pure water: T2*


def test_fat_is_shifted_along_the_readout_by_its_frequency_over_the_pixel_bandwidth(tmp_path):
    n = 64
    result = simulate_scan("gre", n, tmp_path, phantom="water_fat", te=4.6e-3)
    seq, image = result.sequence, result.images[0]
    dwell = float(seq.duration[0][seq.adc[0]][1])
    shift = result.phantom.fat.shift_hz * dwell * n  # pixels along x (the readout), negative: to -x
    ph = water_fat_phantom((n, n))
    x = torch.arange(n, dtype=torch.float64)
    rows = slice(0, n // 2)  # the upper half: the pure water (left) and pure fat (right) discs
    right = torch.zeros(n, n, dtype=torch.bool)
    right[:, n // 2 :] = True

    def centroid(weights: torch.Tensor) -> float:
        w = weights[rows].double() * right[rows]
        return float((w.sum(0) * x).sum() / w.sum())

    assert abs(shift) > 1.0  # a visible shift at this bandwidth
    assert centroid(image) - centroid(ph.fat.pd) == pytest.approx(shift, abs=0.25)


def test_resampling_keeps_the_fat_amount():
    from mrzero.sequences.phantoms import resample_phantom

    ph = water_fat_phantom((32, 32))
    half = resample_phantom(ph, (16, 16))
    assert half.fat.pd.shape == (16, 16)
    assert float(half.fat.pd.sum()) * 4 == pytest.approx(float(ph.fat.pd.sum()), rel=1e-5)
