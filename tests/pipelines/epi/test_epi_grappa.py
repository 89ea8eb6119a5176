"""Accelerated EPI: a separate, two-shot calibration scan flagged ``ACQ_IS_PARALLEL_CALIBRATION``
and an R = 2 imaging shot, each shot with its own navigators and its own odd/even error. The EPI
stage's output lines carry the encode steps and flags parallel imaging needs, and the registered
``cartesian`` pipeline (GRAPPA from ``core/ops/grappa.py`` by default, SENSE as the alternative)
reconstructs the known object from them without a Nyquist ghost."""

import ismrmrd
import ismrmrd.xsd as xsd
import numpy as np
import pytest
from epi_kspace import ellipse_object, epi_acquisitions, epi_header, epi_readouts, ghost_ratio, nrmse

from mrzero.pipelines import registry
from mrzero.pipelines.base import Context
from mrzero.pipelines.stages.epi import epi_stage

NY, NX, COILS, R = 32, 64, 4, 2
ACS = list(range(10, 22))


@pytest.fixture(scope="module")
def images():
    return ellipse_object(NY, NX, COILS)


def _scan(images) -> tuple[xsd.ismrmrdHeader, list[ismrmrd.Acquisition]]:
    header = epi_header(NY, NX)
    header.encoding[0].parallelImaging = xsd.parallelImagingType(
        accelerationFactor=xsd.accelerationFactorType(kspace_encoding_step_1=R, kspace_encoding_step_2=1),
        calibrationMode=xsd.calibrationModeType.SEPARATE,
    )
    calibration = epi_acquisitions(epi_readouts(images, shots=2, constant=-0.4, shift=0.9, lines=ACS))
    for acq in calibration:
        acq.set_flag(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)
    calibration[-1].clear_flag(ismrmrd.ACQ_LAST_IN_SLICE)
    imaging = epi_acquisitions(epi_readouts(images, constant=0.7, shift=-0.6, lines=list(range(0, NY, R))))
    return header, calibration + imaging


def test_the_stage_keeps_encode_steps_and_calibration_flags(images):
    header, acqs = _scan(images)
    out = list(epi_stage(acqs, Context(header=header)))
    acs = [a for a in out if a.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)]
    lines = [a for a in out if not a.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)]
    assert sorted(a.idx.kspace_encode_step_1 for a in acs) == ACS
    assert [a.idx.kspace_encode_step_1 for a in lines] == list(range(0, NY, R))
    assert not any(a.is_flag_set(ismrmrd.ACQ_IS_PHASECORR_DATA) for a in out)


@pytest.mark.parametrize(("method", "limit"), [("grappa", 0.04), ("sense", 0.03)])
def test_the_cartesian_pipeline_unfolds_accelerated_epi(images, method, limit):
    header, acqs = _scan(images)
    truth = np.sqrt((np.abs(images) ** 2).sum(0))[:, NX // 4 : 3 * NX // 4]
    mask = truth > 0.2 * truth.max()
    ctx = Context(
        header=header, parameters={"output": "float", "parallel_imaging": method}, pipeline_name="cartesian"
    )
    (image,) = registry.get("cartesian").run(acqs, ctx)
    image = image.data[0, 0]
    assert nrmse(image, truth) < limit
    assert ghost_ratio(image, mask) < 0.03
