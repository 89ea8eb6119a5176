"""Radial reconstruction against Debian's BART (``bart nufft``): conventions and image quality.

Uses BART 0.8 from Debian (marker ``needs_bart``; CI installs it). BART's trajectory is
``[3, samples, spokes]`` in units of 1/FOV, i.e. cycles/FOV like ours, and its images are
``[x, y]``: our ``[y, x]`` arrays are transposed on the way in and out.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from encoding_samples import radial_trajectory, random_image

from mrzero.core.ops.encoding import Encoding
from mrzero.core.ops.reconstruct import reconstruct
from mrzero.pipelines.bart import read_cfl, run_bart, write_cfl

pytestmark = pytest.mark.needs_bart

N = 64
SPOKES = 100
#: Complex Gaussian noise standard deviation relative to the largest k-space magnitude.
NOISE = 0.005


def fitted_error(image: np.ndarray, truth: np.ndarray) -> float:
    """Relative error after the best complex scalar fit (BART and we scale differently)."""
    x, t = image.ravel(), truth.ravel()
    scale = np.vdot(x, t) / np.vdot(x, x)
    return float(np.linalg.norm(scale * x - t) / np.linalg.norm(t))


def write_radial(tmp_path, trajectory: torch.Tensor, signal: torch.Tensor, spokes: int) -> None:
    readout = trajectory.shape[0] // spokes
    write_cfl(tmp_path / "traj", trajectory.numpy().reshape(spokes, readout, 3).transpose(2, 1, 0))
    write_cfl(tmp_path / "ksp", signal.numpy().reshape(spokes, readout).T[None])


def test_bart_nufft_uses_our_sign_units_and_orientation(tmp_path):
    trajectory = radial_trajectory(32, 20, golden=True)
    image = random_image(32, 32, seed=1, dtype=torch.complex64)
    encoding = Encoding(trajectory, 32, method="exact")
    write_cfl(tmp_path / "img", image.numpy().T)
    write_cfl(tmp_path / "traj", trajectory.numpy().reshape(20, 64, 3).transpose(2, 1, 0))
    # -P: periodic k-space, as the DFT is; without it BART treats the k = -N/2 edge differently.
    run_bart("nufft", "-P", "traj", "img", "ksp", cwd=tmp_path)
    bart_signal = read_cfl(tmp_path / "ksp").reshape(64, 20).T.ravel()
    ours = encoding.forward(image)[0].numpy()
    assert fitted_error(bart_signal, ours) < 5e-3  # BART's NUFFT is accurate to ~1e-3
    scale = np.vdot(bart_signal, ours) / np.vdot(bart_signal, bart_signal)
    assert abs(scale - 1) < 5e-3  # same orthonormal scaling too
    run_bart("nufft", "-P", "-a", "-d", "32:32:1", "traj", "ksp", "adj", cwd=tmp_path)
    ours_adjoint = encoding.adjoint(torch.from_numpy(ours))[0].numpy()
    assert fitted_error(read_cfl(tmp_path / "adj").T, ours_adjoint) < 5e-3


@pytest.mark.parametrize("golden", [False, True], ids=["uniform", "golden-angle"])
def test_ten_iterations_are_at_least_as_close_to_truth_as_bart_nufft_inverse(tmp_path, golden):
    run_bart("phantom", "-x", str(N), "phantom", cwd=tmp_path)
    truth = read_cfl(tmp_path / "phantom").T.copy()  # Shepp-Logan, ours [y, x]
    trajectory = radial_trajectory(N, SPOKES, golden=golden)  # 2x oversampled readouts
    signal = Encoding(trajectory, N).forward(torch.from_numpy(truth).to(torch.complex64))[0]
    generator = torch.Generator().manual_seed(7)
    noise = torch.complex(
        torch.randn(signal.shape, generator=generator), torch.randn(signal.shape, generator=generator)
    ) / math.sqrt(2)
    signal = signal + NOISE * float(signal.abs().max()) * noise

    write_radial(tmp_path, trajectory, signal, SPOKES)
    run_bart("nufft", "-i", "-d", f"{N}:{N}:1", "traj", "ksp", "bart", cwd=tmp_path)
    bart_error = fitted_error(read_cfl(tmp_path / "bart").T, truth)

    iterative = reconstruct(signal, trajectory, N, method="iterative", iterations=10, density="pipe")
    cg = reconstruct(signal, trajectory, N, method="cg", iterations=10, density="pipe")
    adjoint = reconstruct(signal, trajectory, N, method="adjoint")
    errors = {
        name: fitted_error(x[0].numpy(), truth)
        for name, x in [("iterative", iterative), ("cg", cg), ("adjoint", adjoint)]
    }
    assert errors["iterative"] <= bart_error, (errors, bart_error)
    assert errors["cg"] <= bart_error, (errors, bart_error)
    assert errors["adjoint"] > 2 * bart_error  # the plain adjoint is blurred: the iterations matter
