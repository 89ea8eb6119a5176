"""The encoding prior against closed forms and a dense encoding matrix built here with numpy.

The reference is independent of the module's difference-grid sums: it forms the encoding vectors
``exp(-2 pi i k . x / n) / n`` of every sample explicitly, their Gram matrix ``G = E E^H`` and the
sum of ``|G_ij|^2``; the closed forms are the orthonormal Nyquist grid (0, shifted or not) and
coincident samples (``M - 1``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mrzero.sequences.training.encoding_prior import EncodingPrior, beyond_grid, frame_potential


def _grid(n: int, shift: tuple[float, float] = (0.0, 0.0)) -> torch.Tensor:
    axis = torch.arange(n, dtype=torch.float64) - n // 2
    ky, kx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([kx.reshape(-1) + shift[0], ky.reshape(-1) + shift[1], torch.zeros(n * n)], 1)


def _dense(k: np.ndarray, n: int) -> float:
    x = np.arange(n) - n // 2
    xs, ys = np.meshgrid(x, x, indexing="xy")
    phase = (np.outer(k[:, 0], xs.ravel()) + np.outer(k[:, 1], ys.ravel())) / n
    enc = np.exp(-2j * np.pi * phase) / n
    gram = enc @ enc.conj().T
    return float((np.abs(gram) ** 2).sum() - len(k)) / len(k)


@pytest.mark.parametrize("n", [4, 8, 9])
def test_the_nyquist_grid_and_its_shifts_are_orthonormal(n):
    assert float(frame_potential(_grid(n), n)) == pytest.approx(0.0, abs=1e-9)
    assert float(frame_potential(_grid(n, (0.3, -0.7)), n)) == pytest.approx(0.0, abs=1e-9)


def test_coincident_samples_give_m_minus_one():
    assert float(frame_potential(torch.zeros(37, 3, dtype=torch.float64), 8)) == pytest.approx(36.0)


@pytest.mark.parametrize("n, m", [(8, 40), (8, 64), (7, 100)])
def test_random_samples_match_the_dense_gram_matrix(n, m):
    rng = np.random.default_rng(n + m)
    k = rng.uniform(-n / 2, n / 2, size=(m, 3))
    got = float(frame_potential(torch.from_numpy(k), n))
    assert got == pytest.approx(_dense(k, n), rel=1e-9)
    assert got >= m / n**2 - 1 - 1e-9  # the frame bound


def test_gradients_match_finite_differences():
    k = (torch.rand(12, 3, dtype=torch.float64) * 6 - 3).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: frame_potential(t, 6), (k,))


def test_spreading_coincident_samples_lowers_it():
    n = 8
    grid = _grid(n)
    crowded = grid * 0.25  # the same samples packed into a quarter of k-space
    assert float(frame_potential(crowded, n)) > float(frame_potential(grid * 0.5, n)) > 0.0


def test_the_wall_counts_only_samples_beyond_the_grid():
    n = 8
    assert float(beyond_grid(_grid(n), n)) == 0.0
    k = torch.zeros(4, 3, dtype=torch.float64)
    k[0, 0], k[1, 1] = 6.0, -5.0  # 2 and 1 beyond |k| = 4
    assert float(beyond_grid(k, n)) == pytest.approx((4.0 + 1.0) / 4)


def test_the_weight_falls_linearly_to_zero_at_until():
    prior = EncodingPrior(weight=2.0, until=0.5, matrix=8)
    assert [prior.weight_at(f) for f in (0.0, 0.25, 0.5, 0.9)] == pytest.approx([2.0, 1.0, 0.0, 0.0])
    k = torch.zeros(5, 3, dtype=torch.float64)
    assert float(prior(k, 0.25)) == pytest.approx(1.0 * 4.0)  # weight 1 x (M - 1)
    assert float(prior(k, 0.6)) == 0.0


def test_no_samples_is_refused():
    with pytest.raises(ValueError, match="no samples"):
        frame_potential(torch.zeros(0, 3), 8)
