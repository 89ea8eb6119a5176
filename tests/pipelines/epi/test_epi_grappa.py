"""Accelerated EPI: the EPI stage's output lines (R = 2 imaging shot and a separate, two-shot
calibration scan flagged ``ACQ_IS_PARALLEL_CALIBRATION``, each shot with its own navigators and its
own odd/even error) carry the encode steps and flags that GRAPPA (``core/ops/grappa.py``) needs:
calibrated on the calibration lines and applied to the imaging lines, they give the known object."""

import ismrmrd
import numpy as np
import torch
from epi_kspace import ellipse_object, epi_acquisitions, epi_header, epi_readouts, ghost_ratio, nrmse

from mrzero.core.ops.fft import ifftc
from mrzero.core.ops.grappa import grappa_apply, grappa_calibrate
from mrzero.pipelines.base import Context
from mrzero.pipelines.stages.epi import epi_stage

NY, NX, COILS, R = 32, 64, 4, 2
ACS = list(range(10, 22))


def _kspace(lines: list[ismrmrd.Acquisition], rows: list[int]) -> torch.Tensor:
    k = torch.zeros(COILS, 1, len(rows), NX, dtype=torch.complex64)
    for acq in lines:
        k[:, 0, rows.index(acq.idx.kspace_encode_step_1)] = torch.from_numpy(acq.data)
    return k


def test_grappa_on_epi_stage_lines_gives_the_object():
    images = ellipse_object(NY, NX, COILS)
    truth = np.sqrt((np.abs(images) ** 2).sum(0))[:, NX // 4 : 3 * NX // 4]
    calibration = epi_acquisitions(epi_readouts(images, shots=2, constant=-0.4, shift=0.9, lines=ACS))
    for acq in calibration:
        if not acq.is_flag_set(ismrmrd.ACQ_IS_PHASECORR_DATA):
            acq.set_flag(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)
    imaging = epi_acquisitions(epi_readouts(images, constant=0.7, shift=-0.6, lines=list(range(0, NY, R))))
    out = list(epi_stage(calibration + imaging, Context(header=epi_header(NY, NX))))
    acs = [a for a in out if a.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)]
    lines = [a for a in out if not a.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)]
    assert sorted(a.idx.kspace_encode_step_1 for a in acs) == ACS
    assert [a.idx.kspace_encode_step_1 for a in lines] == list(range(0, NY, R))

    kernel = grappa_calibrate(_kspace(acs, ACS), (R, 1))
    sampled = torch.zeros(1, NY, dtype=torch.bool)
    sampled[0, ::R] = True
    filled = grappa_apply(kernel, _kspace(lines, list(range(NY))), sampled)
    image = ifftc(filled[:, 0]).abs().pow(2).sum(0).sqrt()[:, NX // 4 : 3 * NX // 4].numpy()
    folded = ifftc(_kspace(lines, list(range(NY)))[:, 0]).abs().pow(2).sum(0).sqrt()[:, NX // 4 : 3 * NX // 4]
    mask = truth > 0.2 * truth.max()
    assert nrmse(image, truth) < 0.03
    assert ghost_ratio(image, mask) < 0.03
    assert nrmse(folded.numpy(), truth) > 0.2  # without GRAPPA: folded
