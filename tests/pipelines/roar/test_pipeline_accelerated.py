"""``roar`` reconstructs its echo images with the Cartesian chain's parallel imaging and partial
Fourier: an accelerated or partial-Fourier mGRE gives the fully sampled echo images and maps, not
folded or blurred ones (the echoes are the same synthetic scan as ``test_pipeline.py``'s)."""

import copy

import ismrmrd
import numpy as np
import pytest

from mrzero.pipelines.base import Context
from mrzero.pipelines.registry import get
from mrzero.pipelines.roar.synthetic import brain_anatomy, make_subject

CAL, CAL_IMG = ismrmrd.ACQ_IS_PARALLEL_CALIBRATION, ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING


@pytest.fixture(scope="module")
def scan(mgre_scan):
    subject = make_subject(brain_anatomy(64), index=101, seed=5)
    return mgre_scan(subject.clean()[:, [2, 5]], n_coils=4, noise_std=0.0)


def _echoes(header, acqs, **parameters) -> np.ndarray:
    images = get("roar").run(iter(acqs), Context(header=header, parameters=parameters))
    echoes = sorted((im for im in images if im.image_series_index == 1), key=lambda im: im.image_index)
    return np.stack([np.abs(im.data[0, 0]) for im in echoes])


def _nrmse(x: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(x - ref) / np.linalg.norm(ref))


def _accelerated(header, acqs, r: int = 2, acs: int = 24):
    """Every ``r``-th line plus a central block of ``acs`` calibration lines (embedded, flagged)."""
    header = copy.deepcopy(header)
    enc = header.encoding[0]
    ny = enc.encodedSpace.matrixSize.y
    centre = enc.encodingLimits.kspace_encoding_step_1.center
    enc.parallelImaging = ismrmrd.xsd.parallelImagingType(
        accelerationFactor=ismrmrd.xsd.accelerationFactorType(
            kspace_encoding_step_1=r, kspace_encoding_step_2=1
        ),
        calibrationMode=ismrmrd.xsd.calibrationModeType.EMBEDDED,
    )
    kept = []
    for acq in acqs:
        ky = acq.idx.kspace_encode_step_1
        in_acs, on_lattice = abs(ky - centre) < acs // 2, ky % r == 0
        if in_acs or on_lattice:
            acq = copy.deepcopy(acq)
            if in_acs:
                acq.set_flag(CAL_IMG if on_lattice else CAL)
            kept.append(acq)
    assert ny // r < len(kept) // 20 < ny  # 10 echoes x 2 slices
    return header, kept


def _partial_fourier(header, acqs, eighths: int = 6):
    """The first ``8 - eighths`` eighths of the phase-encoding lines left out, the header saying so."""
    header = copy.deepcopy(header)
    limits = header.encoding[0].encodingLimits.kspace_encoding_step_1
    first = (limits.maximum + 1) * (8 - eighths) // 8
    limits.minimum = first
    return header, [a for a in acqs if a.idx.kspace_encode_step_1 >= first]


def test_accelerated_mgre_gives_the_fully_sampled_echoes(scan):
    header, acqs = scan
    full = _echoes(header, acqs)
    for method in ("grappa", "sense"):
        echoes = _echoes(*_accelerated(header, acqs), parallel_imaging=method)
        assert _nrmse(echoes, full) < 0.05, method


def test_partial_fourier_mgre_is_completed_not_zero_filled(scan):
    header, acqs = scan
    full = _echoes(header, acqs)
    pf = _partial_fourier(header, acqs)
    pocs, zero = _echoes(*pf), _echoes(*pf, partial_fourier="zero_fill")
    assert _nrmse(pocs, full) < 0.5 * _nrmse(zero, full)
