"""The demo's overview figures: error figures by hand (a scaled image is exact; a map's error counts only
in tissue), and the figure of a T1 map carries colour bars in seconds."""

from __future__ import annotations

import ismrmrd
import matplotlib.image
import numpy as np
import pytest

from mrzero.demo_overview import Truth, compare, overview_figure


def test_images_compare_after_a_least_squares_scale():
    truth = Truth(np.arange(1.0, 17.0).reshape(1, 4, 4), None, "target magnitude [a.u.]")
    _, exact = compare(truth.values * 250.0, truth)  # the server's own units
    assert exact.relative_error == pytest.approx(0.0, abs=1e-12)
    off = truth.values.copy()
    off[0, 0, 0] += 1.0
    _, comparison = compare(off, truth)
    assert 0 < comparison.relative_error < 1.0 / np.linalg.norm(truth.values)


def test_maps_compare_in_tissue_only():
    tissue = np.zeros((4, 4), dtype=bool)
    tissue[1:3, 1:3] = True
    truth = Truth(np.where(tissue, 1.2, 0.0)[None], tissue, "T1 [s]")
    result = np.where(tissue, 1.32, 7.0)[None]  # +10 % in tissue, nonsense in the background
    scaled, comparison = compare(result, truth)
    assert scaled is result  # maps keep their values
    assert comparison.relative_error == pytest.approx(0.1)
    assert comparison.median_abs_error == pytest.approx(0.12)
    assert "T1 [s]" in str(comparison)


def test_t1_overview_figure(tmp_path):
    tissue = np.zeros((8, 8), dtype=bool)
    tissue[2:6, 2:6] = True
    truth = Truth(np.where(tissue, 1.0, 0.0)[None], tissue, "T1 [s]")
    image = ismrmrd.Image.from_array(np.where(tissue, 1.1, 0.0).astype(np.float32)[None, None])
    meta = ismrmrd.Meta()
    meta["DataRole"], meta["Quantity"], meta["Units"] = "Quantitative", "T1", "s"
    image.attribute_string = meta.serialize()
    comparison = overview_figure("t1", [image], truth, tmp_path / "t1_overview.png")
    assert comparison.relative_error == pytest.approx(0.1, rel=1e-5)
    assert matplotlib.image.imread(tmp_path / "t1_overview.png").shape[1] > 600  # three panels


def test_a_blurred_image_shows_in_the_high_band_not_in_the_total():
    """Truth 3 + cos(2 pi 2 x / N) + 0.5 cos(2 pi k x / N) for k = 6, 10, 14 (every band holds some);
    the result lacks the |k| = 14 part (blur). The least-squares scale is then exactly 1 (the missing
    part is orthogonal to the rest), so the high band (|k| >= 12) is 100 % wrong, the others exact,
    and the total only sqrt(0.125 / 9.875) = 11 % (mean squares: 9 + 0.5 + 3 x 0.125 against 0.125)."""
    n = 32
    x = np.arange(n)[None, :] * np.ones((n, 1))
    wave = [np.cos(2 * np.pi * k * x / n) for k in (2, 6, 10, 14)]
    blurred = 3 + wave[0] + 0.5 * (wave[1] + wave[2])
    truth = Truth((blurred + 0.5 * wave[3])[None], None, "magnitude [a.u.]")
    _, comparison = compare(blurred[None], truth)
    assert comparison.relative_error == pytest.approx(np.sqrt(0.125 / 9.875), rel=1e-9)
    assert comparison.bands["err_k12+"] == pytest.approx(1.0, rel=1e-9)
    for band in ("err_k0-4", "err_k4-8", "err_k8-12"):
        assert comparison.bands[band] == pytest.approx(0.0, abs=1e-9)
    assert "|k| 12+ 100.0 %" in str(comparison)


def test_map_errors_per_tissue_are_rms_relative_errors():
    gm, wm = np.zeros((4, 4), dtype=bool), np.zeros((4, 4), dtype=bool)
    gm[:2, :] = True
    wm[2:3, :] = True  # the last row is background
    t1 = np.where(gm, 1.5, np.where(wm, 0.9, 0.0))
    truth = Truth(t1[None], gm | wm, "T1 [s]", {"gm": gm, "wm": wm})
    result = np.where(gm, 1.5 * 1.1, np.where(wm, 0.9 * 0.8, 3.0))[None]  # +10 % gm, -20 % wm
    _, comparison = compare(result, truth)
    assert comparison.per_tissue["gm"] == pytest.approx(0.1)
    assert comparison.per_tissue["wm"] == pytest.approx(0.2)
    assert comparison.rms_relative == pytest.approx(np.sqrt((8 * 0.01 + 4 * 0.04) / 12))
    assert comparison.pixels == 12
    assert "gm 10.0 %" in str(comparison) and "wm 20.0 %" in str(comparison)


def test_image_overview_figure_has_colour_bars(tmp_path):
    n = 16
    truth = Truth(np.linspace(0.0, 1.0, n * n).reshape(1, n, n), None, "magnitude [a.u.]")
    image = ismrmrd.Image.from_array((3 * truth.values[0]).astype(np.float32)[None, None])
    comparison = overview_figure("gre", [image], truth, tmp_path / "gre_overview.png")
    assert comparison.relative_error == pytest.approx(0.0, abs=1e-6)
    assert set(comparison.bands) == {"err_k0-4", "err_k4-8", "err_k8-12"}  # 16x16 reaches |k| 11.3
