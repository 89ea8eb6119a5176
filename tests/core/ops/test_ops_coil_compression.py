"""SVD coil compression on a 32-channel closed-form phantom (NumPy FFT of ellipses x Gaussian coil maps).

Error measure: NRMSE = ||rss(compressed) - rss(all coils)||_2 / ||rss(all coils)||_2 of the
magnitude images (rss over coils of the inverse centred FFT).
"""

from __future__ import annotations

import pytest
import torch
from coil_phantoms import multicoil_kspace

from mrzero.core.ops.coil_compression import compress, compression_matrix, retained_energy
from mrzero.core.ops.coils import rss
from mrzero.core.ops.fft import ifftc
from mrzero.core.ops.grappa import grappa_apply, grappa_calibrate


@pytest.fixture(scope="module")
def head32():
    return multicoil_kspace(32, (1, 96, 96), noise=1e-3)


def _error(image: torch.Tensor, reference: torch.Tensor) -> float:
    return float((image - reference).norm() / reference.norm())


def test_32_to_8_virtual_coils_keep_the_rss_image(head32):
    kspace, _, _ = head32
    calibration = kspace[:, :, 48 - 12 : 48 + 12]
    matrix = compression_matrix(calibration, 8)
    assert matrix.shape == (8, 32) and matrix.dtype == torch.complex64
    torch.testing.assert_close(
        matrix @ matrix.conj().T, torch.eye(8, dtype=torch.complex64), atol=1e-5, rtol=0
    )
    assert retained_energy(calibration, 8) > 0.995
    reference = rss(ifftc(kspace[:, 0], 2))
    compressed = rss(ifftc(compress(kspace, matrix)[:, 0], 2))
    assert _error(compressed, reference) < 0.02
    assert _error(rss(ifftc(kspace[:4, 0], 2)), reference) > 0.3  # dropping channels instead: far off


def test_all_virtual_coils_are_a_unitary_change_of_basis(head32):
    kspace, _, _ = head32
    matrix = compression_matrix(kspace[:, :, 40:56], 32)
    image = ifftc(kspace[:, 0], 2)
    torch.testing.assert_close(
        rss(ifftc(compress(kspace, matrix)[:, 0], 2)), rss(image), atol=1e-5, rtol=1e-4
    )
    # deterministic: the largest entry of every row is real and positive
    peaks = matrix.gather(1, matrix.abs().argmax(dim=1, keepdim=True))
    assert bool((peaks.imag.abs() < 1e-6).all()) and bool((peaks.real > 0).all())


def test_grappa_on_virtual_coils(head32):
    kspace, image, maps = head32
    matrix = compression_matrix(kspace[:, :, 32:64], 12)
    virtual = compress(kspace, matrix)
    truth = rss(compress(maps * image, matrix))[0]
    sampled = torch.zeros(1, 96, dtype=torch.bool)
    sampled[0, 1::2] = True
    kernel = grappa_calibrate(virtual[:, :, 32:64], (2, 1))
    filled = grappa_apply(kernel, virtual * sampled[:, :, None], sampled)
    assert _error(rss(ifftc(filled[:, 0], 2)), truth) < 0.05


def test_refuses_what_it_cannot_do(head32):
    kspace, _, _ = head32
    with pytest.raises(ValueError, match="between 1 and the 32 coils"):
        compression_matrix(kspace, 33)
    with pytest.raises(ValueError, match="fewer than the 8 virtual coils"):
        compression_matrix(kspace[:, 0, 0, :4], 8)
    with pytest.raises(ValueError, match=r"matrix must be \[n_virtual, 32\]"):
        compress(kspace, torch.eye(8, 16, dtype=torch.complex64))
