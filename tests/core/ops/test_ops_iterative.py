"""Iterative adjoint (gradient iteration), conjugate gradients, power iteration and ``reconstruct``."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from encoding_samples import cartesian_trajectory, radial_trajectory, random_image, random_trajectory

from mrzero.core.ops.encoding import Encoding, EncodingError, encoding_matrix
from mrzero.core.ops.fft import fftc
from mrzero.core.ops.iterative import conjugate_gradient, gradient_iteration, power_iteration
from mrzero.core.ops.reconstruct import reconstruct
from mrzero.sequences.builders.radial import radial_gre


def dense_problem(samples: int = 120, shape=(6, 6), seed: int = 0):
    trajectory = random_trajectory(samples, shape, seed=seed)
    return trajectory, encoding_matrix(trajectory, shape), random_image(samples, seed=seed + 1)


def test_power_iteration_finds_largest_eigenvalue_of_normal_operator():
    trajectory, dense, _ = dense_problem()
    weights = torch.linspace(0.5, 2.0, 120, dtype=torch.float64)
    largest = torch.linalg.eigvalsh(dense.conj().T @ (weights[:, None] * dense))[-1]
    encoding = Encoding(trajectory, (6, 6), method="exact")
    like = torch.zeros(1, 6, 6, dtype=torch.complex128)
    estimate = power_iteration(encoding.normal_operator(weights), like, iterations=200)
    assert estimate == pytest.approx(float(largest), rel=1e-3)


def test_one_gradient_step_of_unit_size_is_the_plain_adjoint():
    trajectory, _, signal = dense_problem()
    encoding = Encoding(trajectory, (6, 6), method="exact")
    one_step = gradient_iteration(encoding, signal, iterations=1, step=1.0)
    torch.testing.assert_close(one_step, encoding.adjoint(signal))


def test_gradient_iteration_is_exact_after_one_step_on_full_cartesian_data():
    image = random_image(1, 8, 8, seed=3, dtype=torch.complex64)
    signal = fftc(image).reshape(1, -1)
    encoding = Encoding(cartesian_trajectory((8, 8)), 8, method="exact")
    result = gradient_iteration(encoding, signal, iterations=3)
    torch.testing.assert_close(result, image, atol=1e-5, rtol=0)


def test_gradient_iteration_follows_closed_form_of_the_seed_equation():
    trajectory, dense, signal = dense_problem()
    encoding = Encoding(trajectory, (6, 6), method="exact")
    step = 0.7 / power_iteration(
        encoding.normal_operator(), torch.zeros(1, 6, 6, dtype=torch.complex128), iterations=100
    )
    x = torch.zeros(36, dtype=torch.complex128)
    for _ in range(10):
        x = x - step * dense.conj().T @ (dense @ x - signal)
    result = gradient_iteration(encoding, signal, iterations=10, step=step)
    torch.testing.assert_close(result.reshape(-1), x)


@pytest.mark.parametrize("tikhonov", [0.0, 0.3])
def test_conjugate_gradient_solves_the_regularised_normal_equations(tikhonov):
    trajectory, dense, signal = dense_problem()
    weights = torch.linspace(0.5, 2.0, 120, dtype=torch.float64)
    normal = dense.conj().T @ (weights[:, None] * dense) + tikhonov * torch.eye(36)
    expected = torch.linalg.solve(normal, dense.conj().T @ (weights * signal))
    encoding = Encoding(trajectory, (6, 6), method="exact")
    result = conjugate_gradient(
        encoding, signal, iterations=200, tikhonov=tikhonov, weights=weights, tolerance=1e-12
    )
    torch.testing.assert_close(result.reshape(-1), expected, atol=1e-8, rtol=1e-8)


def test_conjugate_gradient_solves_coils_independently_and_stops_on_zero_data():
    trajectory, dense, signal = dense_problem()
    encoding = Encoding(trajectory, (6, 6), method="exact")
    both = conjugate_gradient(
        encoding, torch.stack([signal, torch.zeros_like(signal)]), iterations=100, tolerance=1e-12
    )
    expected = torch.linalg.lstsq(dense, signal[:, None]).solution[:, 0]
    torch.testing.assert_close(both[0].reshape(-1), expected, atol=1e-8, rtol=1e-8)
    assert not both[1].any()


def test_sense_cg_matches_dense_least_squares_on_undersampled_multicoil_radial_data():
    shape = (8, 8)
    y, x = torch.meshgrid(torch.linspace(-1, 1, 8), torch.linspace(-1, 1, 8), indexing="ij")
    sens = torch.stack(
        [torch.exp(-((x - cx) ** 2 + (y - cy) ** 2)) for cx, cy in [(-1, -1), (1, -1), (-1, 1), (1, 1)]]
    ).to(torch.complex128)
    trajectory = radial_trajectory(8, 4).double()  # 4 spokes: undersampled for one coil
    signal = random_image(4, trajectory.shape[0], seed=4)
    dense = torch.cat([encoding_matrix(trajectory, shape) * s.reshape(1, -1) for s in sens])
    expected = torch.linalg.pinv(dense) @ signal.reshape(-1)
    result = reconstruct(signal, trajectory, shape, method="cg", iterations=200, coil_sens=sens)
    assert result.shape == (1, 8, 8)
    assert float((result.reshape(-1) - expected).norm() / expected.norm()) < 1e-5


def test_iterations_reduce_the_radial_residual_and_density_speeds_them_up():
    trajectory = radial_trajectory(32, 50)
    image = random_image(1, 32, 32, seed=5, dtype=torch.complex64)
    encoding = Encoding(trajectory, 32)
    signal = encoding.forward(image)

    def error(**kwargs):
        result = reconstruct(signal, trajectory, 32, **kwargs)
        return float((result - image).norm() / image.norm())

    plain_ten = error(method="iterative", iterations=10)
    weighted_ten = error(method="iterative", iterations=10, density="pipe")
    assert plain_ten < error(method="iterative", iterations=2) < error(method="adjoint")
    assert weighted_ten < plain_ten
    assert error(method="cg", iterations=10, density="pipe") < weighted_ten


@pytest.mark.parametrize("method", ["iterative", "cg"])
def test_gradcheck_through_all_iterations_wrt_signal_and_trajectory(method):
    shape = (3, 3)
    trajectory = random_trajectory(14, shape, seed=6).requires_grad_()
    signal = random_image(1, 14, seed=7).requires_grad_()
    weights = torch.linspace(0.5, 1.5, 14, dtype=torch.float64)

    def recon(s, k):
        return reconstruct(
            s, k, shape, method=method, iterations=3, density=weights, step=0.05, operator="exact"
        )

    assert torch.autograd.gradcheck(recon, (signal, trajectory))


def test_reconstruct_returns_one_image_per_coil_without_sensitivities():
    trajectory = radial_trajectory(8, 6)
    signal = random_image(3, trajectory.shape[0], seed=8, dtype=torch.complex64)
    for method in ("adjoint", "iterative", "cg"):
        result = reconstruct(signal, trajectory, 8, method=method, iterations=2)
        assert result.shape == (3, 8, 8) and result.dtype == torch.complex64
    assert reconstruct(signal[0], trajectory, (8, 8)).shape == (1, 8, 8)
    float64_weights = torch.ones(trajectory.shape[0], dtype=torch.float64)
    assert reconstruct(signal, trajectory, 8, method="cg", density=float64_weights).dtype == torch.complex64


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(method="sense"), EncodingError, "unknown reconstruction method 'sense'"),
        (dict(density="ramp"), EncodingError, "unknown density compensation 'ramp'"),
        (dict(density=torch.ones(5)), EncodingError, r"density weights must be real \[96\]"),
        (dict(method="iterative", iterations=0), ValueError, "iterations must be a positive integer"),
        (dict(method="iterative", step=-1.0), ValueError, "step must be positive"),
        (dict(method="cg", tikhonov=-1.0), ValueError, "tikhonov must be non-negative"),
        (
            dict(signal=torch.zeros(2, 95, dtype=torch.complex64)),
            EncodingError,
            "the trajectory's 96 samples",
        ),
    ],
)
def test_reconstruct_rejects_bad_arguments_clearly(kwargs, error, message):
    trajectory = radial_trajectory(8, 6)
    signal = kwargs.pop("signal", torch.ones(2, 96, dtype=torch.complex64))
    with pytest.raises(error, match=message):
        reconstruct(signal, trajectory, 8, **kwargs)


def test_all_zero_density_weights_are_reported_when_choosing_a_step():
    encoding = Encoding(torch.zeros(4, 2), 4)
    with pytest.raises(ValueError, match="encoding operator is zero"):
        gradient_iteration(encoding, torch.ones(1, 4, dtype=torch.complex64), weights=torch.zeros(4))


@pytest.mark.parametrize("method", ["iterative", "cg"])
def test_nufft_toeplitz_iterations_give_the_exact_trajectory_gradient(method):
    image = random_image(1, 16, 16, seed=9, dtype=torch.complex64)
    grads = []
    for operator in ("exact", "nufft"):
        trajectory = radial_trajectory(16, 12).requires_grad_()
        signal = Encoding(trajectory.detach(), 16, method="exact").forward(image)
        result = reconstruct(
            signal, trajectory, 16, method=method, iterations=4, density="pipe", step=0.5, operator=operator
        )
        (result - image).abs().pow(2).sum().backward()
        grads.append(trajectory.grad)
    assert float((grads[1] - grads[0]).norm() / grads[0].norm()) < 1e-3


def test_gradients_reach_the_sequence_gradient_moments_through_the_trajectory():
    sequence = radial_gre(matrix=4, spokes=3, dtype=torch.float64)
    image = random_image(1, 4, 4, seed=10)
    signal = Encoding(sequence.trajectory(), 4, method="exact").forward(image)

    def recon(moment):
        trajectory = dataclasses.replace(sequence, moment=moment).trajectory()
        return reconstruct(
            signal, trajectory, 4, method="iterative", iterations=3, step=0.5, operator="exact"
        )

    moment = sequence.moment.clone().requires_grad_()
    assert torch.autograd.gradcheck(recon, (moment,))
    (recon(moment) - image).abs().pow(2).sum().backward()
    assert moment.grad[:, :, :2].abs().sum() > 0
