"""The Toeplitz-embedded normal operator equals ``E^H W E`` applied directly, gradients included."""

from __future__ import annotations

import pytest
import torch
from encoding_samples import radial_trajectory, random_image, random_trajectory

from mrzero.core.ops.encoding import Encoding


@pytest.mark.parametrize("shape", [(12, 12), (7, 10), (4, 6, 5)])
@pytest.mark.parametrize("operator", ["exact", "nufft"])
def test_toeplitz_normal_equals_direct_normal(shape, operator):
    trajectory = random_trajectory(300, shape, seed=1)
    weights = torch.linspace(0.2, 2.0, 300, dtype=torch.float64)
    encoding = Encoding(trajectory, shape, method=operator)
    image = random_image(2, *shape, seed=2)
    direct = encoding.normal(image, weights)
    fast = encoding.normal_operator(weights, toeplitz=True, dtype=image.dtype)(image)
    assert float((fast - direct).norm() / direct.norm()) < (1e-10 if operator == "exact" else 1e-4)


def test_toeplitz_normal_with_coil_sensitivities_on_radial_data():
    trajectory = radial_trajectory(16, 20)
    sens = random_image(3, 16, 16, seed=3, dtype=torch.complex64)
    encoding = Encoding(trajectory, 16, coil_sens=sens, method="nufft")
    image = random_image(1, 16, 16, seed=4, dtype=torch.complex64)
    direct = encoding.normal(image)
    fast = encoding.normal_operator()(image)
    assert fast.shape == (1, 16, 16)
    assert float((fast - direct).norm() / direct.norm()) < 1e-4


def test_gradcheck_of_toeplitz_normal_wrt_image_trajectory_and_weights():
    shape = (3, 4)
    trajectory = random_trajectory(9, shape, seed=5).requires_grad_()
    weights = torch.linspace(0.5, 1.5, 9, dtype=torch.float64).requires_grad_()
    image = random_image(1, *shape, seed=6).requires_grad_()

    def normal(x, k, w):
        return Encoding(k, shape, method="exact").normal_operator(w, toeplitz=True, dtype=x.dtype)(x)

    assert torch.autograd.gradcheck(normal, (image, trajectory, weights))
