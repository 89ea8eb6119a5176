"""EPI stage: ramp-sampled, reflected EPI readouts with navigators -> ordinary Cartesian lines.

For an encoding whose header trajectory is ``epi``, the readout's trapezoid comes from the
encoding's ``trajectoryDescription`` as siemens_to_ismrmrd writes it (identifier
``ConventionalEPI``; ``userParameterLong`` rampUpTime, flatTopTime, rampDownTime, acqDelayTime in
microseconds and numSamples; ``userParameterDouble`` dwellTime in microseconds). Every readout of
that encoding is regridded to the encoded readout matrix (``mrzero.core.ops.epi``: density-
compensated sinc interpolation; reflected lines, ``ACQ_IS_REVERSE``, with the mirrored trajectory,
which also puts them in forward order). Phase-correction navigators (``ACQ_IS_PHASECORR_DATA``)
are consumed here: the navigators that arrive before a shot's first imaging line give the
odd/even phase correction (constant and linear term) that applies to the following lines of the
same encoding and slice, until the next navigators (single-shot: one set per slice and
repetition; multi-shot: one per shot). Output lines are forward, symmetric (``center_sample =
n // 2``, no discards) and keep their counters (``kspace_encode_step_1``...) and every other flag,
so that the Cartesian chain (oversampling removal, GRAPPA, accumulation) treats them like any line.

Acquisitions of other encodings pass through, except reflected lines of a Cartesian readout
(sampled on the grid, e.g. bipolar multi-echo), which are put in forward order about their echo
centre. What cannot be reconstructed correctly is a ``PipelineError`` saying why: an EPI encoding
without the trajectory description or with parameters missing, lines whose sample count
disagrees with it, reflected lines with no navigators before them, navigators of one polarity.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import ismrmrd
import ismrmrd.xsd as xsd
import torch

from mrzero.core.ops.epi import (
    EpiError,
    PhaseCorrection,
    Regridder,
    TrapezoidReadout,
    navigator_correction,
    reverse_readout,
)
from mrzero.pipelines.base import Context, PipelineError
from mrzero.pipelines.mrd_header import HeaderError, geometry
from mrzero.pipelines.stages.acquisitions import NON_IMAGING_FLAGS, check_data, describe, samples, with_data

#: ``userParameterLong`` entries of a ``ConventionalEPI`` trajectory description (times in us).
LONG_PARAMETERS = ("rampUpTime", "flatTopTime", "rampDownTime", "acqDelayTime", "numSamples")
#: ``userParameterDouble`` entries (us).
DOUBLE_PARAMETERS = ("dwellTime",)
IDENTIFIER = "ConventionalEPI"

_PASSING_FLAGS = tuple(f for f in NON_IMAGING_FLAGS if f != ismrmrd.ACQ_IS_PHASECORR_DATA)


def epi_readout(header: xsd.ismrmrdHeader, encoding: int) -> TrapezoidReadout | None:
    """The readout trapezoid of ``encoding`` if its trajectory is EPI, else None."""
    if not header.encoding or encoding >= len(header.encoding):
        raise PipelineError(
            f"an acquisition refers to encoding {encoding}, the header has {len(header.encoding or [])}"
        )
    enc = header.encoding[encoding]
    if enc.trajectory != xsd.trajectoryType.EPI:
        return None
    desc = enc.trajectoryDescription
    if desc is None:
        raise PipelineError(
            f"encoding {encoding} is EPI but the header has no trajectoryDescription "
            f"({IDENTIFIER} with {', '.join(LONG_PARAMETERS + DOUBLE_PARAMETERS)}): "
            "ramp-sampled readouts cannot be regridded without them"
        )
    if desc.identifier != IDENTIFIER:
        raise PipelineError(
            f"encoding {encoding}: EPI trajectory {desc.identifier!r} is not supported (only {IDENTIFIER})"
        )
    longs = {p.name: p.value for p in desc.userParameterLong}
    doubles = {p.name: p.value for p in desc.userParameterDouble}
    missing = [n for n in LONG_PARAMETERS if n not in longs] + [
        n for n in DOUBLE_PARAMETERS if n not in doubles
    ]
    if missing:
        raise PipelineError(
            f"encoding {encoding}: the EPI trajectory description lacks {', '.join(missing)}; "
            "ramp-sampled readouts cannot be regridded without them"
        )
    try:
        return TrapezoidReadout(
            ramp_up_s=longs["rampUpTime"] * 1e-6,
            flat_top_s=longs["flatTopTime"] * 1e-6,
            ramp_down_s=longs["rampDownTime"] * 1e-6,
            adc_delay_s=longs["acqDelayTime"] * 1e-6,
            dwell_s=doubles["dwellTime"] * 1e-6,
            n_samples=int(longs["numSamples"]),
        )
    except EpiError as err:
        raise PipelineError(f"encoding {encoding}: {err}") from err


def _regridder(ctx: Context, encoding: int) -> Regridder | None:
    readout = epi_readout(ctx.header, encoding)
    if readout is None:
        return None
    try:
        n_grid = geometry(ctx.header, encoding).encoded_matrix[0]
        regridder = Regridder(readout, n_grid)
    except (HeaderError, EpiError) as err:
        raise PipelineError(f"encoding {encoding}: {err}") from err
    ctx.logger.info(
        "EPI encoding %d: %d samples (ramps %.0f/%.0f us, flat top %.0f us) regridded to %d",
        encoding,
        readout.n_samples,
        readout.ramp_up_s * 1e6,
        readout.ramp_down_s * 1e6,
        readout.flat_top_s * 1e6,
        n_grid,
    )
    return regridder


def _forward(acq: ismrmrd.Acquisition, data: torch.Tensor, **fields: int | float) -> ismrmrd.Acquisition:
    """A copy of ``acq`` holding forward-ordered ``data``: ``ACQ_IS_REVERSE`` cleared."""
    out = with_data(acq, data, **fields)
    out.clear_flag(ismrmrd.ACQ_IS_REVERSE)
    return out


def epi_stage(items: Iterable[Any], ctx: Context) -> Iterator[Any]:
    regridders: dict[int, Regridder | None] = {}
    pending: dict[tuple[int, int], list] = {}
    corrections: dict[tuple[int, int], PhaseCorrection] = {}
    uncorrected: set[tuple[int, int]] = set()
    for item in items:
        if (
            not isinstance(item, ismrmrd.Acquisition)
            or item.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
            or any(item.is_flag_set(flag) for flag in _PASSING_FLAGS)
        ):
            yield item
            continue
        enc = item.encoding_space_ref
        if enc not in regridders:
            regridders[enc] = _regridder(ctx, enc)
        regrid = regridders[enc]
        reflected = item.is_flag_set(ismrmrd.ACQ_IS_REVERSE)
        if regrid is None:
            if reflected and not item.is_flag_set(ismrmrd.ACQ_IS_PHASECORR_DATA):
                check_data(item)
                item = _forward(item, reverse_readout(samples(item), item.center_sample))
            yield item
            continue
        check_data(item)
        if item.discard_pre or item.discard_post:
            raise PipelineError(
                f"{describe(item)}: EPI readouts with discarded samples "
                f"({item.discard_pre}/{item.discard_post}) are not supported"
            )
        try:
            lines = regrid(samples(item), reflected)
        except EpiError as err:
            raise PipelineError(f"{describe(item)}: {err}") from err
        key = (enc, int(item.idx.slice))
        if item.is_flag_set(ismrmrd.ACQ_IS_PHASECORR_DATA):
            pending.setdefault(key, []).append((lines, reflected))
            continue
        if key in pending:
            navigators = pending.pop(key)
            try:
                corrections[key] = navigator_correction(navigators)
            except EpiError as err:
                raise PipelineError(f"EPI slice {key[1]}: {err}") from err
            ctx.logger.debug(
                "EPI slice %d: odd/even phase %.4f rad + %.5f rad/pixel from %d navigators",
                key[1],
                corrections[key].constant,
                corrections[key].slope,
                len(navigators),
            )
        correction = corrections.get(key)
        if correction is None:
            if reflected:
                raise PipelineError(
                    f"{describe(item)}: reflected EPI line of slice {key[1]} with no "
                    "phase-correction navigators before it; odd/even lines cannot be "
                    "phase-corrected (the image would carry a half-FOV ghost)"
                )
            uncorrected.add(key)
        else:
            if key in uncorrected:
                raise PipelineError(
                    f"{describe(item)}: EPI lines of slice {key[1]} arrived before its "
                    "first phase-correction navigators and cannot be corrected"
                )
            lines = correction(lines, reflected)
        n = regrid.n_grid
        yield _forward(
            item,
            lines,
            center_sample=n // 2,
            discard_pre=0,
            discard_post=0,
            sample_time_us=regrid.readout.grid_dwell_s(n) * 1e6,
        )
