"""The encoding operator E and its adjoint: exactness, adjointness, chunking, gradients, errors."""

from __future__ import annotations

import math

import pytest
import torch
from encoding_samples import cartesian_trajectory, radial_trajectory, random_image, random_trajectory

from mrzero.core.ops.density import pipe_menon_density
from mrzero.core.ops.encoding import Encoding, EncodingError, encoding_matrix
from mrzero.core.ops.fft import fftc, ifftc

OPERATORS = ("exact", "nufft")


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("shape", [(16, 16), (5, 6), (4, 6, 8)])
@pytest.mark.parametrize("operator", OPERATORS)
def test_adjoint_of_full_cartesian_scan_is_centred_orthonormal_ifft(shape, operator):
    kspace = random_image(3, *shape, seed=1, dtype=torch.complex64)
    encoding = Encoding(cartesian_trajectory(shape), shape, method=operator)
    image = encoding.adjoint(kspace.reshape(3, -1))
    expected = ifftc(kspace, len(shape))
    tolerance = 1e-5 if operator == "exact" else 1e-4
    torch.testing.assert_close(image, expected, atol=tolerance * float(expected.abs().max()), rtol=0)
    torch.testing.assert_close(
        encoding.forward(expected), kspace.reshape(3, -1), atol=tolerance * float(kspace.abs().max()), rtol=0
    )


def test_full_cartesian_forward_is_centred_fft_of_upright_image():
    image = torch.zeros(8, 8, dtype=torch.complex64)
    image[1, 6] = 1  # row 1 (y = -3/8), column 6 (x = +2/8)
    signal = Encoding(cartesian_trajectory((8, 8)), 8, method="exact").forward(image)
    torch.testing.assert_close(signal.reshape(8, 8), fftc(image), atol=1e-6, rtol=0)
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    at_k = Encoding(k, 8, method="exact").forward(image)[0]
    expected = torch.tensor([math.e ** (-2j * math.pi * 2 / 8), math.e ** (-2j * math.pi * -3 / 8)]) / 8
    torch.testing.assert_close(at_k, expected.to(torch.complex64), atol=1e-6, rtol=0)


@pytest.mark.parametrize("operator", OPERATORS)
@pytest.mark.parametrize("shape", [(12, 10), (6, 5, 4)])
def test_dot_product_adjointness_on_random_radial_like_trajectories(operator, shape):
    trajectory = random_trajectory(400, shape, seed=2)
    encoding = Encoding(trajectory, shape, method=operator)
    x = random_image(2, *shape, seed=3)
    y = random_image(2, 400, seed=4)
    lhs = torch.vdot(encoding.forward(x).flatten(), y.flatten())
    rhs = torch.vdot(x.flatten(), encoding.adjoint(y).flatten())
    assert abs(complex(lhs - rhs)) < 1e-10 * abs(complex(lhs))


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
@pytest.mark.parametrize("max_elements", [1, 37, 1 << 20])
def test_chunked_exact_operator_equals_dense_matrix(dtype, max_elements):
    shape = (7, 6)
    trajectory = random_trajectory(90, shape, seed=5, dtype=torch.float64)
    dense = encoding_matrix(trajectory, shape).to(dtype)
    encoding = Encoding(
        trajectory.to(torch.float32 if dtype == torch.complex64 else torch.float64),
        shape,
        method="exact",
        max_elements=max_elements,
    )
    x = random_image(3, *shape, seed=6, dtype=dtype)
    y = random_image(3, 90, seed=7, dtype=dtype)
    tolerance = 1e-5 if dtype == torch.complex64 else 1e-12
    assert relative_error(encoding.forward(x), x.reshape(3, -1) @ dense.T) < tolerance
    assert relative_error(encoding.adjoint(y), (y @ dense.conj()).reshape(3, *shape)) < tolerance


def test_nufft_matches_exact_operator_on_radial_64():
    trajectory = radial_trajectory(64, 40)
    image = random_image(1, 64, 64, seed=8, dtype=torch.complex64)
    exact, nufft = Encoding(trajectory, 64, method="exact"), Encoding(trajectory, 64, method="nufft")
    signal = exact.forward(image)
    assert relative_error(nufft.forward(image), signal) < 1e-4
    assert relative_error(nufft.adjoint(signal), exact.adjoint(signal)) < 1e-4


def test_third_trajectory_column_does_not_change_a_2d_encoding():
    trajectory = random_trajectory(50, (6, 6, 6), seed=9)
    image = random_image(1, 6, 6, seed=10)
    with_kz = Encoding(trajectory, (6, 6), method="exact").forward(image)
    without = Encoding(trajectory[:, :2], (6, 6), method="exact").forward(image)
    torch.testing.assert_close(with_kz, without)


@pytest.mark.parametrize("use_sens", [False, True])
def test_gradcheck_wrt_data_trajectory_and_sensitivities(use_sens):
    shape = (4, 3)
    trajectory = random_trajectory(10, shape, seed=11).requires_grad_()
    sens = random_image(2, *shape, seed=12).requires_grad_() if use_sens else None
    image = random_image(1 if use_sens else 2, *shape, seed=13).requires_grad_()
    signal = random_image(2, 10, seed=14).requires_grad_()

    def forward(x, k, *s):
        return Encoding(k, shape, coil_sens=s[0] if s else None, method="exact", max_elements=5).forward(x)

    def adjoint(y, k, *s):
        return Encoding(k, shape, coil_sens=s[0] if s else None, method="exact", max_elements=5).adjoint(y)

    extra = (sens,) if use_sens else ()
    assert torch.autograd.gradcheck(forward, (image, trajectory, *extra))
    assert torch.autograd.gradcheck(adjoint, (signal, trajectory, *extra))


def test_gradcheck_wrt_3d_trajectory():
    shape = (3, 2, 3)
    trajectory = random_trajectory(6, shape, seed=15).requires_grad_()
    image = random_image(1, *shape, seed=16).requires_grad_()

    def forward(x, k):
        return Encoding(k, shape, method="exact").forward(x)

    assert torch.autograd.gradcheck(forward, (image, trajectory))


def test_nufft_trajectory_gradient_matches_exact_gradient():
    shape = (32, 32)
    image = random_image(1, *shape, seed=17, dtype=torch.complex64)
    target = random_image(1, 300, seed=18, dtype=torch.complex64)
    grads = []
    for operator in OPERATORS:
        trajectory = random_trajectory(300, shape, seed=19, dtype=torch.float32).requires_grad_()
        loss = (Encoding(trajectory, shape, method=operator).forward(image) - target).abs().pow(2).sum()
        loss.backward()
        grads.append(trajectory.grad)
    assert relative_error(grads[1], grads[0]) < 1e-3


def test_multicoil_forward_and_adjoint_apply_sensitivities():
    shape = (6, 5)
    trajectory = random_trajectory(40, shape, seed=20)
    sens = random_image(3, *shape, seed=21)
    image = random_image(1, *shape, seed=22)
    signal = random_image(3, 40, seed=23)
    plain = Encoding(trajectory, shape, method="exact")
    sense = Encoding(trajectory, shape, coil_sens=sens, method="exact")
    torch.testing.assert_close(sense.forward(image), plain.forward(sens * image))
    combined = (sens.conj() * plain.adjoint(signal)).sum(0, keepdim=True)
    torch.testing.assert_close(sense.adjoint(signal), combined)


def test_memory_bounded_exact_operator_handles_256_with_65k_samples():
    trajectory = radial_trajectory(256, 128)  # 65536 samples
    encoding = Encoding(trajectory, 256, method="exact", max_elements=1 << 22)
    assert encoding.n_samples == 65536
    signal = torch.zeros(1, encoding.n_samples, dtype=torch.complex64)
    signal[0, 256] = 1  # the k = 0 sample of the first spoke: a flat image
    image = encoding.adjoint(signal)
    torch.testing.assert_close(image, torch.full((1, 256, 256), 1 / 256, dtype=torch.complex64))


def test_density_weights_are_one_for_full_cartesian_and_ramp_up_for_radial():
    weights = pipe_menon_density(cartesian_trajectory((16, 16)), 16)
    torch.testing.assert_close(weights, torch.ones(256), atol=1e-3, rtol=0)
    radial = pipe_menon_density(radial_trajectory(32, 50), 32).reshape(50, 64)
    assert radial[:, 40].mean() > 4 * radial[:, 33].mean()  # |k| = 4 vs |k| = 0.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(trajectory=torch.zeros(10)), r"trajectory must be \[n_samples"),
        (dict(trajectory=torch.zeros(10, 1)), r"trajectory must be \[n_samples"),
        (dict(trajectory=torch.zeros(10, 2, dtype=torch.complex64)), "real floating point"),
        (dict(trajectory=torch.full((10, 2), math.nan)), "NaN"),
        (dict(matrix=(0, 4)), "positive sizes"),
        (dict(method="fast"), "unknown encoding method"),
        (dict(coil_sens=torch.ones(2, 3, 4, dtype=torch.complex64)), r"coil_sens must be \[coils, 4, 4\]"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    args = dict(trajectory=torch.zeros(10, 2), matrix=(4, 4)) | kwargs
    with pytest.raises(EncodingError, match=message):
        Encoding(args.pop("trajectory"), args.pop("matrix"), **args)


def test_data_that_do_not_fit_the_trajectory_raise_clear_errors():
    encoding = Encoding(torch.zeros(10, 2), (4, 4))
    with pytest.raises(EncodingError, match=r"signal must be \[coils, 10\] to match the trajectory's 10"):
        encoding.adjoint(torch.zeros(2, 12, dtype=torch.complex64))
    with pytest.raises(EncodingError, match=r"image must be \[batch, 4, 4\]"):
        encoding.forward(torch.zeros(1, 4, 5, dtype=torch.complex64))
    with pytest.raises(EncodingError, match="complex"):
        encoding.forward(torch.zeros(4, 4))
