"""GRAPPA against ISMRMRD's generator and a closed-form 3D phantom.

Error measure (issue #15): NRMSE = ||rss(x) - rss(truth)||_2 / ||rss(truth)||_2 of magnitude images
(root-sum-of-squares over coils of the inverse centred FFT, readout oversampling cropped), the truth
being the generator's noiseless fully sampled run, itself checked against the C++ reconstruction
``ismrmrd_recon_cartesian_2d``. No scale is fitted: GRAPPA keeps the data's scale.
"""

from __future__ import annotations

import shutil
import subprocess

import h5py
import numpy as np
import pytest
import torch
from coil_phantoms import multicoil_kspace
from shepp_logan_mrd import calibration_block, generate, nrmse, read_repetitions, rss_image

from mrzero.core.ops.coils import rss
from mrzero.core.ops.fft import ifftc
from mrzero.core.ops.grappa import grappa_apply, grappa_calibrate, sampling_lattice
from mrzero.core.ops.partial_fourier import pocs

TARGET = {2: 0.08, 3: 0.12}  # issue #15, 128 x 128, 8 coils, noise 0.005, 32 calibration lines


@pytest.fixture(scope="module")
def truth_path(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("full") / "full.h5", accel=1, noise=0.0)


@pytest.fixture(scope="module")
def truth(truth_path):
    return rss_image(read_repetitions(truth_path)[0].kspace)


@pytest.fixture(scope="module", params=[2, 3], ids=["R2", "R3"])
def accelerated(request, tmp_path_factory):
    path = generate(
        tmp_path_factory.mktemp("acc") / "acc.h5", accel=request.param, acs=32, noise=0.005, noise_scan=True
    )
    return request.param, read_repetitions(path)


@pytest.mark.needs_ismrmrd_tools
def test_truth_is_the_cpp_reconstruction(truth_path, truth, tmp_path):
    copy = tmp_path / "cpp.h5"
    shutil.copy(truth_path, copy)
    subprocess.run(["ismrmrd_recon_cartesian_2d", str(copy), "dataset"], check=True, capture_output=True)
    with h5py.File(copy, "r") as f:
        cpp = torch.from_numpy(np.asarray(f["dataset/cpp/data"][0, 0, 0], dtype=np.float32))
    scale = float((cpp * truth).sum() / (truth * truth).sum())  # C++: unnormalised DFT
    assert scale == pytest.approx(np.sqrt(128 * 256), rel=1e-4)
    assert nrmse(truth * scale, cpp) < 1e-4


@pytest.mark.needs_ismrmrd_tools
def test_every_repetition_reaches_the_issue_target(accelerated, truth):
    accel, reps = accelerated
    assert sorted(reps) == list(range(accel))  # one repetition per lattice offset
    for r, rep in reps.items():
        assert sampling_lattice(rep.sampled, (accel, 1)) == (r, 0)
        kernel = grappa_calibrate(calibration_block(rep), (accel, 1))
        filled = grappa_apply(kernel, rep.kspace, rep.sampled)
        assert torch.equal(filled[:, :, rep.sampled[0]], rep.kspace[:, :, rep.sampled[0]])
        assert nrmse(rss_image(rep.kspace), truth) > 0.2  # folded without GRAPPA
        assert nrmse(rss_image(filled), truth) < TARGET[accel], f"repetition {r}"


@pytest.mark.needs_ismrmrd_tools
def test_separate_calibration_lines_are_not_needed_in_the_data(accelerated, truth):
    # ACS only as a separate block (Siemens' reference scan): the imaging data keep the lattice only
    accel, reps = accelerated
    rep = reps[accel - 1]
    kernel = grappa_calibrate(calibration_block(rep), (accel, 1))
    lattice_only = rep.kspace * rep.imaging[:, :, None]
    filled = grappa_apply(kernel, lattice_only, rep.imaging)
    assert nrmse(rss_image(filled), truth) < TARGET[accel]


@pytest.mark.parametrize("offset", [0, 3])
def test_r4_in_ky_with_any_first_line(offset):
    kspace, image, maps = multicoil_kspace(16, (1, 96, 96), noise=1e-3)
    truth = (image.abs() * rss(maps))[0]
    sampled = torch.zeros(1, 96, dtype=torch.bool)
    sampled[0, offset::4] = True
    kernel = grappa_calibrate(kspace[:, :, 48 - 16 : 48 + 16], (4, 1))
    filled = grappa_apply(kernel, kspace * sampled[:, :, None], sampled)
    error = float((rss(ifftc(filled[:, 0], 2)) - truth).norm() / truth.norm())
    folded = float((rss(ifftc((kspace * sampled[:, :, None])[:, 0], 2)) - truth).norm() / truth.norm())
    assert error < 0.08 and folded > 0.4


@pytest.mark.parametrize("accel", [(1, 2), (2, 2), (2, 3)], ids=["Rz2", "Ry2Rz2", "Ry2Rz3"])
def test_3d_acceleration_in_kz(accel):
    """3D phantom: k-space is NumPy's closed-form FFT of ellipsoids times smooth Gaussian coil maps
    (``tests/support/coil_phantoms.py``), not the code under test; the truth is its rss image."""
    ry, rz = accel
    shape = (24, 40, 40)
    kspace, image, maps = multicoil_kspace(12, shape, noise=1e-4)  # 3 rings of 4 coils
    truth = image.abs() * rss(maps)
    sampled = torch.zeros(shape[:2], dtype=torch.bool)
    sampled[1::rz, ::ry] = True  # kz lattice starts at 1
    acs = kspace[:, 12 - 6 : 12 + 6, 20 - 8 : 20 + 8]
    kernel = grappa_calibrate(acs, (ry, rz))
    filled = grappa_apply(kernel, kspace * sampled[None, :, :, None], sampled)
    zero_filled = rss(ifftc(kspace * sampled[None, :, :, None], 3))
    error = float((rss(ifftc(filled, 3)) - truth).norm() / truth.norm())
    assert error < 0.08 and float((zero_filled - truth).norm() / truth.norm()) > 0.3


def test_refuses_what_it_cannot_do():
    kspace, _, _ = multicoil_kspace(4, (1, 32, 32))
    with pytest.raises(ValueError, match="too few ACS lines"):
        grappa_calibrate(kspace[:, :, 14:19], (2, 1))  # 5 lines, the 4-block kernel spans 7
    with pytest.raises(ValueError, match="too few ACS lines"):
        grappa_calibrate(kspace[:, :, 12:20, 10:14], (2, 1))  # fits, but fewer equations than unknowns
    with pytest.raises(ValueError, match="nothing to fill"):
        grappa_calibrate(kspace[:, :, 8:24], (1, 1))
    kernel = grappa_calibrate(kspace[:, :, 8:24], (2, 1))
    r3 = torch.zeros(1, 32, dtype=torch.bool)
    r3[0, ::3] = True
    with pytest.raises(ValueError, match="does not match R_y=2"):
        grappa_apply(kernel, kspace * r3[:, :, None], r3)
    full = torch.ones(1, 32, dtype=torch.bool)
    with pytest.raises(ValueError, match="sampled more densely"):
        grappa_apply(kernel, kspace, full)
    r2 = torch.zeros(1, 32, dtype=torch.bool)
    r2[0, ::2] = True
    with pytest.raises(ValueError, match="3 coils, the kernel was calibrated for 4"):
        grappa_apply(kernel, kspace[:3] * r2[:, :, None], r2)


@pytest.mark.needs_ismrmrd_tools
def test_grappa_then_pocs_with_phase_partial_fourier(accelerated, truth):
    # the clinical combination: R = 2 or 3 with partial Fourier 6/8 (the first 32 of 128 lines not
    # acquired); GRAPPA fills up to one cell into the gap, POCS fills the rest
    accel, reps = accelerated
    for r, rep in reps.items():
        sampled = rep.sampled.clone()
        sampled[:, :32] = False
        kspace = rep.kspace * sampled[:, :, None]
        filled = grappa_apply(grappa_calibrate(calibration_block(rep), (accel, 1)), kspace, sampled)
        lines = torch.nonzero(filled.abs().sum(dim=(0, 1, 3)) > 0).flatten()
        assert 32 - accel <= int(lines[0]) <= 32 and torch.equal(lines, torch.arange(int(lines[0]), 128))
        known = torch.zeros(filled.shape[1:], dtype=torch.bool)
        known[:, int(lines[0]) :] = True
        assert nrmse(rss_image(pocs(filled, known)), truth) < TARGET[accel], f"repetition {r}"
