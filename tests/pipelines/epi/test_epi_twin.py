"""Digital-twin EPI: a ramp-sampled, blipped EPI Pulseq file with three navigators and a deliberate
odd/even echo shift (written with pypulseq, ``epi_pulseq``), imported and simulated on the embedded
brain by the project's Pulseq import and simulation, reconstructed by the EPI stage and the
Cartesian stages. The navigators find the shift and the receiver phase that were put in, the
Nyquist ghost stays below the issue's 3 % of the object's mean, and the image is that of a fully
sampled Cartesian scan of the same phantom (its own Pulseq file, same simulation). The
reconstruction is the server's registered ``cartesian`` pipeline."""

import math

import numpy as np
import pytest
import torch
from epi_kspace import EpiReadout, epi_acquisitions, epi_header, ghost_ratio, nrmse
from epi_pulseq import OVERSAMPLING, TRAPEZOID, twin_phantom, write_cartesian, write_epi

from mrzero.core.ops.epi import Regridder, navigator_correction
from mrzero.core.ops.fft import ifftc
from mrzero.pipelines import registry
from mrzero.pipelines.base import Context
from mrzero.sequences.pulseq.import_ import import_seq
from mrzero.sequences.simulate import simulate

N, COILS = 32, 4
NAVIGATORS = 3


def _simulate(path, phantom) -> np.ndarray:
    with torch.no_grad():
        return simulate(import_seq(path).sequence, phantom).numpy()


@pytest.fixture(scope="module")
def phantom():
    return twin_phantom(N, COILS)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, phantom):
    """The fully sampled Cartesian image (root sum of squares over the coils)."""
    path = tmp_path_factory.mktemp("cartesian") / "cartesian.seq"
    write_cartesian(path, N)
    kspace = torch.from_numpy(_simulate(path, phantom).reshape(COILS, N, N))
    return ifftc(kspace).abs().pow(2).sum(0).sqrt().numpy()


def _epi_scan(tmp_path, phantom, shift: float, constant: float) -> list[EpiReadout]:
    """The twin's EPI readouts; reflected ones also get a receiver phase ``constant`` (the import
    does not model per-ADC phases, so it is applied to the simulated samples)."""
    path = tmp_path / "epi.seq"
    write_epi(path, N, shift)
    signal = _simulate(path, phantom)
    n = TRAPEZOID.n_samples
    assert signal.shape == (COILS, (NAVIGATORS + N) * n)
    readouts = []
    for k in range(NAVIGATORS + N):
        reflected = k % 2 == 1
        data = signal[:, k * n : (k + 1) * n] * (np.exp(1j * constant) if reflected else 1.0)
        line = N // 2 if k < NAVIGATORS else k - NAVIGATORS
        readouts.append(EpiReadout(line, reflected, k < NAVIGATORS, 0, data.astype(np.complex64)))
    return readouts


@pytest.mark.parametrize(("shift", "constant"), [(0.6, 0.5), (-1.2, -2.0)])
def test_twin_epi_with_a_known_echo_shift(tmp_path, phantom, reference, shift, constant):
    readouts = _epi_scan(tmp_path, phantom, shift, constant)
    n_grid = OVERSAMPLING * N

    # the navigators find what was put in: phase = constant + slope * pixel, slope = -2 pi shift / n
    regrid = Regridder(TRAPEZOID, n_grid)
    navigators = [
        (regrid(torch.from_numpy(r.data), r.reflected), r.reflected) for r in readouts if r.navigator
    ]
    found = navigator_correction(navigators)
    assert found.slope == pytest.approx(-2 * math.pi * shift / n_grid, abs=2e-3)
    assert math.remainder(found.constant - constant, 2 * math.pi) == pytest.approx(0.0, abs=0.02)

    # the server's default pipeline, as a scan streamed to it would be reconstructed
    ctx = Context(
        header=epi_header(N, n_grid, TRAPEZOID), parameters={"output": "float"}, pipeline_name="cartesian"
    )
    (image,) = registry.get("cartesian").run(epi_acquisitions(readouts, TRAPEZOID), ctx)
    image = image.data[0, 0]
    mask = phantom.pd.numpy() > 0.05 * float(phantom.pd.max())
    assert ghost_ratio(image, mask) < 0.03
    assert ghost_ratio(image, mask) < ghost_ratio(reference, mask) + 0.003  # no more than Gibbs ringing
    assert nrmse(image, reference) < 0.01

    # regridding without the navigator correction leaves the half-FOV ghost of the echo shift
    kspace = torch.zeros(COILS, N, n_grid, dtype=torch.complex64)
    for r in readouts[NAVIGATORS:]:
        kspace[:, r.line] = regrid(torch.from_numpy(r.data), r.reflected)
    uncorrected = ifftc(kspace).abs().pow(2).sum(0).sqrt()[:, n_grid // 4 : 3 * n_grid // 4].numpy()
    assert ghost_ratio(uncorrected, mask) > 0.1
