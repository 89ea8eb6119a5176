"""Know what arrived, refuse what cannot be reconstructed: the scan plan read from the header,
and every refusal of the ``cartesian`` pipeline with its error text (and no image)."""

import ismrmrd
import numpy as np
import pytest
import torch
from cartesian_scans import header_xml, line
from coil_phantoms import multicoil_kspace

from mrzero.pipelines.base import Context, PipelineError, chain
from mrzero.pipelines.cartesian import CARTESIAN_STAGES, cartesian
from mrzero.pipelines.mrd_header import parse_header
from mrzero.pipelines.parameters import ParameterError
from mrzero.pipelines.scan_plan import flag_refusal, header_refusals, scan_plan
from mrzero.pipelines.stages.noise import prewhiten_stage
from mrzero.pipelines.stages.scan_check import scan_check

KSPACE, _, _ = multicoil_kspace(4, (1, 32, 32))


def _ctx(xml: str, **parameters) -> Context:
    return Context(header=parse_header(xml), parameters=parameters, pipeline_name="cartesian")


def _run(xml: str, lines, pipeline=cartesian, **parameters) -> list:
    return list(pipeline(iter(lines), _ctx(xml, **parameters)))


def _full(**counters):
    return [line(KSPACE, 0, ky, scan_counter=ky, **counters) for ky in range(32)]


def test_scan_plan_reads_limits_acceleration_and_calibration_mode():
    xml = header_xml(
        64,
        64,
        8,
        accel=(2, 2),
        calibration="embedded",
        e1=(16, 63),
        counters={"slice": 3, "contrast": 2, "average": 2},
    )
    (enc,) = scan_plan(parse_header(xml)).encodings
    assert (enc.trajectory, enc.accel, enc.calibration_mode, enc.interleaving) == (
        "cartesian",
        (2, 2),
        "embedded",
        "repetition",
    )
    assert enc.accelerated and enc.is_3d
    assert (
        enc.limits["kspace_encoding_step_1"].minimum == 16
        and enc.limits["kspace_encoding_step_1"].center == 32
    )
    assert (enc.size("slice"), enc.size("contrast"), enc.size("average"), enc.size("set")) == (3, 2, 2, 1)
    assert enc.describe() == (
        "encoding 0: cartesian 3D 64 x 64 x 8, R = 2 x 2 (embedded calibration), "
        "3 slices, 2 contrasts, 2 averages"
    )
    plain = scan_plan(parse_header(header_xml(32, 32))).encodings[0]
    assert plain.accel == (1, 1) and plain.calibration_mode is None and not plain.accelerated


@pytest.mark.parametrize(
    ("xml", "text"),
    [
        (
            header_xml(32, 32, trajectory="radial"),
            "encoding 0 has a 'radial' trajectory; the Cartesian pipeline reconstructs Cartesian "
            "(and EPI) k-space only",
        ),
        (header_xml(32, 32, trajectory="spiral"), "'spiral' trajectory"),
        (
            header_xml(32, 32, accel=(2, 1), calibration="separate", multiband=3),
            "simultaneous multi-slice scan (multiband factor 3); separating the collapsed slices "
            "(slice-GRAPPA) is not implemented",
        ),
        (
            header_xml(32, 32, accel=(1, 2), calibration="embedded"),
            "encoding 0 is 2D (one kz line) but the header's acceleration in kz is 2",
        ),
    ],
)
def test_header_refusals_end_the_scan_before_any_image(xml, text):
    with pytest.raises(PipelineError, match="cannot reconstruct this scan") as err:
        _run(xml, _full())
    assert text in str(err.value)


def test_epi_is_refused_by_a_chain_without_the_epi_stage():
    plan = scan_plan(parse_header(header_xml(32, 32, trajectory="epi")))
    assert "this chain has no EPI stage" in header_refusals(plan, epi_stage=False)[0]
    assert header_refusals(plan, epi_stage=True) == []
    described = scan_plan(parse_header(header_xml(32, 32, identifier="ConventionalEPI")))
    assert "'ConventionalEPI'" in header_refusals(described, epi_stage=False)[0]
    # flags: reflected lines and navigators of EPI, refused by the chain without the EPI stage
    no_epi = chain(scan_check(epi_stage=False), prewhiten_stage, *CARTESIAN_STAGES)
    for flag in (ismrmrd.ACQ_IS_REVERSE, ismrmrd.ACQ_IS_PHASECORR_DATA):
        lines = _full()
        lines[5].set_flag(flag)
        with pytest.raises(PipelineError, match="EPI data .* but this chain has no EPI stage"):
            _run(header_xml(32, 32), lines, pipeline=no_epi)
    assert flag_refusal(lines[5], epi_stage=True) is None


def test_reflected_line_that_no_stage_corrected_is_refused():
    # A reflected line of a Cartesian encoding is put in forward order by the EPI stage; without
    # that stage the line selection refuses it (the ACQ_IS_REVERSE flag survived).
    lines = _full()
    lines[3].set_flag(ismrmrd.ACQ_IS_REVERSE)
    no_epi_stage = chain(prewhiten_stage, *CARTESIAN_STAGES)
    with pytest.raises(
        PipelineError, match="reflected readout .* that no stage of this pipeline put in forward"
    ):
        _run(header_xml(32, 32), lines, pipeline=no_epi_stage)


@pytest.mark.parametrize(
    ("bit", "text"),
    [
        (40, "flag bit(s) 40 set, which MRD v1 does not define; their meaning"),
        (ismrmrd.ACQ_COMPRESSION2, "samples stored compressed (ACQ_COMPRESSION2)"),
    ],
)
def test_unknown_and_meaning_changing_flags_are_refused(bit, text):
    lines = _full()
    lines[7].flags |= 1 << (bit - 1)
    with pytest.raises(PipelineError) as err:
        _run(header_xml(32, 32), lines)
    assert "scan_counter=7" in str(err.value) and text in str(err.value)
    # user flags and the non-imaging kinds Gadgetron's chains skip are not refusals
    ok = _full()
    ok[2].set_flag(ismrmrd.ACQ_USER3)
    ok.append(line(KSPACE, 0, 4, flags=[ismrmrd.ACQ_IS_NAVIGATION_DATA]))
    ok.append(line(KSPACE, 0, 4, flags=[ismrmrd.ACQ_IS_RTFEEDBACK_DATA]))
    assert len(_run(header_xml(32, 32), ok)) == 1


def test_accelerated_scan_without_usable_calibration_is_refused():
    xml = header_xml(32, 32, accel=(2, 1), calibration="embedded")
    lattice = [line(KSPACE, 0, ky) for ky in range(0, 32, 2)]
    with pytest.raises(
        PipelineError,
        match=r"is undersampled \(R = 2 x 1\) and has no usable calibration data "
        r"\(calibration mode embedded: no lines flagged",
    ):
        _run(xml, lattice)
    # too few calibration lines for the GRAPPA kernel: named, with what was there
    cal = ismrmrd.ACQ_IS_PARALLEL_CALIBRATION
    few = lattice + [line(KSPACE, 0, 17, flags=[cal])]
    few[8].set_flag(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)
    with pytest.raises(
        PipelineError,
        match=r"GRAPPA calibration for slice 0 of encoding 0 from 1 x 2 \(kz x ky\) "
        r"ACS lines failed: .*too few",
    ):
        _run(xml, few)
    # interleaved calibration that never fills the centre: refused at the end of the scan
    inter = header_xml(32, 32, accel=(2, 1), calibration="interleaved", counters={"repetition": 2})
    with pytest.raises(PipelineError, match="the interleaved images never filled the centre of k-space"):
        _run(inter, [line(KSPACE, 0, ky, repetition=r) for r in (0, 1) for ky in range(0, 32, 2)])


def test_undersampled_data_without_acceleration_in_the_header_are_refused():
    every_other = [line(KSPACE, 0, ky) for ky in range(0, 32, 2)]
    with pytest.raises(
        PipelineError,
        match=r"undersampled \(15 of 31 lines missing inside the measured k-space\) "
        r"but the header declares no acceleration",
    ):
        _run(header_xml(32, 32), every_other)
    one_missing = [acq for acq in _full() if acq.idx.kspace_encode_step_1 != 20]
    assert len(_run(header_xml(32, 32), one_missing)) == 1  # a lost line: zero-filled, logged


def test_parallel_imaging_none_refuses_accelerated_scans_and_bad_parameters_are_named():
    xml = header_xml(32, 32, accel=(2, 1), calibration="embedded")
    with pytest.raises(
        PipelineError, match=r"accelerated \(R = 2 x 1\) and the parameter parallel_imaging is 'none'"
    ):
        _run(xml, _full(), parallel_imaging="none")
    assert len(_run(header_xml(32, 32), _full(), parallel_imaging="none")) == 1
    for name, value in (
        ("parallel_imaging", "cg"),
        ("partial_fourier", "zero"),
        ("coil_compression", -1),
        ("grappa_kernel", [5, 0]),
    ):
        with pytest.raises(ParameterError, match=name):
            list(cartesian(iter(_full()), _ctx(header_xml(32, 32), **{name: value})))


def test_a_chain_without_parallel_imaging_refuses_accelerated_scans():
    from mrzero.pipelines.stages.accumulate import accumulate_stage

    xml = header_xml(32, 32, accel=(2, 1), calibration="embedded")
    with pytest.raises(
        PipelineError,
        match=r"encoding 0 is accelerated \(R = 2 x 1\) and the pipeline 'roar' has no "
        "parallel-imaging stage; its images would be folded",
    ):
        list(accumulate_stage(iter(_full()), Context(header=parse_header(xml), pipeline_name="roar")))


def test_noise_and_a_fully_sampled_scan_still_pass():
    xml = header_xml(32, 32)
    noise = ismrmrd.Acquisition.from_array(np.zeros((4, 64), np.complex64))
    noise.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
    (image,) = _run(xml, [noise, *_full()], output="float", prewhiten=False)
    assert image.data.shape == (1, 1, 32, 32) and torch.isfinite(torch.from_numpy(image.data)).all()
