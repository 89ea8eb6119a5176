"""The RoAR brain mask: islands dropped, holes filled, separate lobes kept, a noise floor from the
data; on twin scans it covers the brain and, at low SNR, keeps the noise out."""

import numpy as np
import pytest

from mrzero.pipelines.base import Context
from mrzero.pipelines.registry import get
from mrzero.pipelines.roar.mask import brain_mask, fill_holes, keep_large_components, noise_floor


def _head(nz: int = 3, n: int = 40) -> np.ndarray:
    z, y, x = np.mgrid[0:nz, 0:n, 0:n]
    return (((y - n / 2) / (0.4 * n)) ** 2 + ((x - n / 2) / (0.3 * n)) ** 2) < 1


def test_specks_go_holes_fill_and_big_islands_stay():
    head = _head()
    image = head * 1.0
    image[:, 18:22, 19:21] = 0.02  # a dark hole in the middle of every slice
    image[1, 2, 2] = 5.0  # a hot speck outside (also above the 99th percentile's level)
    lobe = np.zeros_like(head)
    lobe[:, 26:40, 34:40] = True  # a separate island of 252 voxels: more than 10 % of the head
    image[lobe] = 1.0
    mask = brain_mask(image)
    assert mask[head].all() and mask[lobe].all()
    assert not mask[1, 2, 2]
    assert mask.sum() == head.sum() + lobe.sum()


def test_components_connect_through_slices():
    mask = np.zeros((2, 6, 6), bool)
    mask[0, 0:2, 0:2] = True  # 4 voxels, joined to the big one through slice 1
    mask[1, 0:6, 0:6] = True
    mask[0, 4, 4] = True  # joined too (above a slice-1 voxel)
    assert keep_large_components(mask, 0.5).sum() == mask.sum()
    lonely = np.zeros((1, 8, 8), bool)
    lonely[0, :4, :4] = True
    lonely[0, 6, 6] = True
    assert keep_large_components(lonely, 0.5).sum() == 16


def test_holes_touching_the_border_are_background():
    mask = np.ones((1, 5, 5), bool)
    mask[0, 2, 2] = False  # enclosed
    mask[0, 0, 2] = False  # on the border
    filled = fill_holes(mask)
    assert filled[0, 2, 2] and not filled[0, 0, 2]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"\[z, y, x\]"):
        brain_mask(np.ones((4, 4)))
    with pytest.raises(ValueError, match="threshold"):
        brain_mask(np.ones((1, 4, 4)), threshold=1.5)


def _masks(scan) -> tuple[np.ndarray, np.ndarray]:
    images = list(get("roar").run(iter(scan.acquisitions), Context(header=scan.header)))
    echoes = np.stack([im.data[0, 0] for im in images if im.image_series_index == 1])
    bare = echoes.mean(0) > 0.15 * np.percentile(echoes.mean(0), 99)  # the former mask
    return brain_mask(echoes[None, 0])[0], bare


def test_on_twin_scans_the_mask_covers_the_brain_and_little_else(twin_mgre, twin_truth):
    brain, tissue = twin_truth["brain"].numpy(), twin_truth["tissue"].numpy()
    clean, _ = _masks(twin_mgre(100.0))
    assert clean[brain].all() and (clean & ~tissue).sum() <= 2
    noisy, bare = _masks(twin_mgre(3.0))
    assert noisy[brain].all()
    # the noise floor keeps the air out (measured: 1 voxel outside the tissue), where 0.15 x p99
    # alone lets in 403 voxels of noise
    assert (noisy & ~tissue).sum() <= 5 and (bare & ~tissue).sum() > 100


def test_noise_floor_lifts_the_threshold_only_when_noise_is_strong():
    rng = np.random.default_rng(1)
    head = _head(1, 64)
    for sigma, expect_lifted in ((0.001, False), (0.3, True)):
        noise = sigma * np.abs(rng.standard_normal(head.shape) + 1j * rng.standard_normal(head.shape))
        image = head * 1.0 + noise
        assert (noise_floor(image) > 0.15 * np.percentile(image, 99)) == expect_lifted
        mask = brain_mask(image)
        assert mask[head].mean() > 0.99 and (mask & ~head).sum() <= 0.01 * head.sum()
