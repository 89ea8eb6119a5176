"""Coil combination: rss by definition, adaptive (Walsh) on a phantom of known sensitivities."""

import numpy as np
import pytest
import torch

from mrzero.core.ops.coils import adaptive_combine, coil_sensitivities, rss


def _phantom(n: int = 32):
    """Smooth complex sensitivities of 4 coils (coil 0 real and strongest) and a complex object."""
    y, x = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n), indexing="ij")
    sens = np.stack(
        [
            2.0 + 0.3 * x,
            (0.8 + 0.2 * y) * np.exp(1j * (0.5 + 0.4 * x)),
            (0.6 - 0.2 * x) * np.exp(-1j * (1.0 + 0.3 * y)),
            0.5 * np.exp(1j * 0.3 * (x + y)),
        ]
    )
    disc = (x**2 + y**2 < 0.5).astype(float)
    obj = (1.0 + disc) * np.exp(1j * (0.7 * disc + 0.2))
    return torch.from_numpy(sens).to(torch.complex64), torch.from_numpy(obj).to(torch.complex64)


def test_rss_is_the_root_sum_of_squares():
    x = torch.tensor([[3 + 0j, 1j], [4j, 0]], dtype=torch.complex64)
    torch.testing.assert_close(rss(x), torch.tensor([5.0, 1.0]))


def test_adaptive_recovers_sensitivity_weighted_object_with_its_phase():
    sens, obj = _phantom()
    images = sens * obj
    norm = torch.linalg.vector_norm(sens, dim=0)
    combined = adaptive_combine(images.unsqueeze(1)).squeeze(0)  # through a z axis of 1
    inner = (slice(3, -3), slice(3, -3))  # the box window is one-sided at the border
    torch.testing.assert_close(combined[inner], (norm * obj)[inner], rtol=0.02, atol=0.02)
    # without noise its magnitude is the rss image
    torch.testing.assert_close(combined.abs()[inner], rss(images)[inner], rtol=0.02, atol=0.02)


def test_adaptive_sensitivities_are_unit_norm_and_follow_the_coils():
    sens, obj = _phantom()
    est = coil_sensitivities(sens * obj)
    torch.testing.assert_close(torch.linalg.vector_norm(est, dim=0), torch.ones(32, 32), atol=1e-4, rtol=0)
    truth = sens / torch.linalg.vector_norm(sens, dim=0)
    torch.testing.assert_close(est[:, 8:-8, 8:-8], truth[:, 8:-8, 8:-8], atol=0.02, rtol=0)


def test_adaptive_beats_rss_in_noise():
    # with white noise, the matched filter has a lower noise floor than rss's bias in the background
    sens, _ = _phantom()
    obj = torch.zeros(32, 32, dtype=torch.complex64)
    obj[8:24, 8:24] = 1.0
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(4, 32, 32, dtype=torch.complex64, generator=gen) * 0.05
    images = sens * obj + noise
    background = (slice(0, 32), slice(0, 4))
    assert adaptive_combine(images)[background].abs().mean() < 0.7 * rss(images)[background].mean()


def test_bad_kernel_and_shape_are_named():
    with pytest.raises(ValueError, match="odd"):
        coil_sensitivities(torch.ones(2, 4, 4, dtype=torch.complex64), kernel=4)
    with pytest.raises(ValueError, match="coil, ..., y, x"):
        adaptive_combine(torch.ones(2, 4, dtype=torch.complex64))


def test_row_blocks_and_power_iteration_match_a_full_eigendecomposition():
    sens, obj = _phantom(24)
    gen = torch.Generator().manual_seed(1)
    noise = 0.3 * torch.randn(4, 24, 24, dtype=torch.complex64, generator=gen)
    images = (sens * obj + noise).to(torch.complex128)
    whole = coil_sensitivities(images, kernel=5)
    blocked = coil_sensitivities(images, kernel=5, max_elements=4 * 4 * 24 * 3)  # 3 rows per block
    torch.testing.assert_close(blocked, whole)
    # reference: the eigenvector of the largest eigenvalue of each pixel's 5x5-averaged covariance
    pad = torch.nn.functional.pad
    cov = images.unsqueeze(1) * images.conj().unsqueeze(0)
    padded = torch.complex(pad(cov.real, (2, 2, 2, 2)), pad(cov.imag, (2, 2, 2, 2)))
    window = padded.unfold(2, 5, 1).unfold(3, 5, 1).sum(dim=(-1, -2))  # [c, c, y, x], zero outside
    vecs = torch.linalg.eigh(window.permute(2, 3, 0, 1))[1][..., -1].permute(2, 0, 1)  # [c, y, x]
    vecs = vecs * torch.exp(-1j * torch.angle(vecs[0]))
    inner = (slice(None), slice(2, -2), slice(2, -2))  # away from the border, where the windows agree
    torch.testing.assert_close(whole[inner], vecs[inner], atol=2e-3, rtol=0)
