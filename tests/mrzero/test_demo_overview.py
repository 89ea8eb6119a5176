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
