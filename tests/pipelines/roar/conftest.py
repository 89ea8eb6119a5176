"""RoAR test helpers: one torch thread, a procedural anatomy, an FFT-synthesised mGRE scan maker
(exact truth maps) and digital-twin mGRE scans (the bundle's .seq simulated on the brain phantom)."""

from pathlib import Path

import pytest
import torch

from mrzero.pipelines.roar.synthetic import Anatomy


def ellipse_anatomy(size: int = 32, slices: int = 2) -> Anatomy:
    """Head-like ellipses: grey cortex around white matter, CSF ventricles in the middle."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    brain = ((xx / 0.7) ** 2 + (yy / 0.85) ** 2) < 1
    white = ((xx / 0.5) ** 2 + (yy / 0.65) ** 2) < 1
    csf = ((xx / 0.12) ** 2 + (yy / 0.3) ** 2) < 1
    gm = (brain & ~white).float()
    wm = (white & ~csf).float()
    return Anatomy(gm.expand(slices, -1, -1), wm.expand(slices, -1, -1), csf.float().expand(slices, -1, -1))


@pytest.fixture(autouse=True)
def _one_torch_thread(single_torch_thread):
    """RoAR tests use one torch thread (``single_torch_thread`` in tests/conftest.py)."""
    yield


@pytest.fixture
def anatomy() -> Anatomy:
    return ellipse_anatomy()


def mgre_raw(echoes: torch.Tensor, n_coils: int = 4, noise_std: float = 0.0, seed: int = 0):
    """An mGRE scan synthesised from magnitudes ``[E, z, y, x]``: MRD header and acquisitions.

    The header, readout order, counters (echo = contrast, slice) and flags come from the
    project's mGRE builder and MRD export (``sequences``); the signal is the centred forward
    FFT of the magnitudes times a smooth phase and loop-coil sensitivities, plus complex noise.
    """
    from mrzero.core.ops.fft import fftc
    from mrzero.sequences.builders.mgre import mgre
    from mrzero.sequences.mrd import acquisitions, layout_of, mrd_header
    from mrzero.sequences.phantoms.coils import coil_sensitivities

    n_echo, nz, ny, nx = echoes.shape
    seq = mgre(nx, n_echoes=n_echo)
    layout = layout_of(seq)
    header = mrd_header(seq, n_coils, layout=layout)
    header.encoding[0].encodingLimits.slice.maximum = nz - 1
    sens = coil_sensitivities((ny, nx), n_coils)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, ny), torch.linspace(-1, 1, nx), indexing="ij")
    phase = torch.exp(1j * (0.8 * xx + 0.5 * yy**2))
    g = torch.Generator().manual_seed(seed)
    acqs = []
    for z in range(nz):
        kspace = fftc(
            sens.unsqueeze(1) * (echoes[:, z] * phase).to(torch.complex64).unsqueeze(0)
        )  # [c, E, y, x]
        kspace = (
            kspace
            + noise_std
            * torch.complex(torch.randn(kspace.shape, generator=g), torch.randn(kspace.shape, generator=g))
            / 2**0.5
        )
        signal = torch.zeros(n_coils, seq.n_samples, dtype=torch.complex64)
        for r in layout.readouts:
            signal[:, r.first : r.first + r.n] = kspace[:, r.contrast, r.line]
        for acq in acquisitions(seq, signal, layout, first_scan_counter=len(acqs)):
            acq.idx.slice = z
            acqs.append(acq)
    return header, acqs


@pytest.fixture(scope="session")
def mgre_scan():
    """The ``mgre_raw`` scan maker."""
    return mgre_raw


@pytest.fixture(scope="session")
def twin_bundle(tmp_path_factory) -> Path:
    """The shipped network bundled with a 32 x 32 mGRE .seq (name ``roar_twin32``), for fast twin scans."""
    from mrzero.core.bundles import HEAD_FILE
    from mrzero.pipelines.roar.bundle import SHIPPED_BUNDLE
    from mrzero.roar_bundle import write_roar_bundle

    out = tmp_path_factory.mktemp("twin_bundle") / "roar_twin32"
    write_roar_bundle(SHIPPED_BUNDLE / HEAD_FILE, out, name="roar_twin32", matrix=32)
    return out


@pytest.fixture(scope="session")
def twin_mgre(twin_bundle):
    """``twin_mgre(snr)``: the twin scan of ``twin_bundle`` on the brain phantom (slice 3, 2 coils),
    simulated by the fast engine once per SNR."""
    from mrzero.sequences.digital_twin import twin_scan

    scans = {}

    def scan(snr: float):
        if snr not in scans:
            scans[snr] = twin_scan(twin_bundle, "brain", n_coils=2, snr=snr, seed=3)
        return scans[snr]

    return scan


@pytest.fixture(scope="session")
def twin_truth(twin_mgre) -> dict[str, torch.Tensor]:
    """The twin phantom's R2* = 1/T2 + 1/T2' (1/s) and its brain region (voxels at least half tissue)."""
    from mrzero.sequences.phantoms.brain import brain_tissue_fractions

    phantom = twin_mgre(100.0).phantom
    r2dash = torch.where(phantom.t2dash > 0, 1 / phantom.t2dash.clamp_min(1e-9), torch.zeros(()))
    brain = sum(brain_tissue_fractions(tuple(phantom.shape)).values()) > 0.5
    return {"r2s": 1 / phantom.t2 + r2dash, "brain": brain, "tissue": phantom.pd > 0}
