"""Selecting the imaging lines: waveforms and non-imaging acquisitions leave the stream here.

Waveforms (physiology) are accepted, counted and ignored: the server journals them, the
reconstruction does not use them. Navigator, phase-correction, feedback, dummy-scan and
similar acquisitions are dropped (in the ``cartesian`` chain the EPI stage before this one has
consumed the navigators of EPI encodings; phase-correction scans of other encodings, e.g. TSE,
are not used, as in Gadgetron's generic chains); imaging lines (parallel-imaging calibration
lines included) are checked and passed on. A line still flagged ``ACQ_IS_REVERSE`` here was not
put in forward order by any stage: its image would carry a ghost, so it is an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import ismrmrd

from mrzero.pipelines.base import Context, PipelineError
from mrzero.pipelines.stages.acquisitions import NON_IMAGING_FLAGS, check_data, describe


def imaging_lines_stage(items: Iterable[Any], ctx: Context) -> Iterator[ismrmrd.Acquisition]:
    waveforms = dropped = 0
    for item in items:
        if isinstance(item, ismrmrd.Waveform):
            waveforms += 1
        elif not isinstance(item, ismrmrd.Acquisition):
            ctx.logger.warning("ignored an item of type %s", type(item).__name__)
        elif item.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT) or any(
            item.is_flag_set(flag) for flag in NON_IMAGING_FLAGS
        ):
            dropped += 1
        elif item.is_flag_set(ismrmrd.ACQ_IS_REVERSE):
            raise PipelineError(
                f"{describe(item)} is a reflected readout (ACQ_IS_REVERSE) that no stage of "
                "this pipeline put in forward order (EPI needs the EPI stage)"
            )
        else:
            check_data(item)
            yield item
    if waveforms or dropped:
        ctx.logger.info("ignored %d waveforms and %d non-imaging acquisitions", waveforms, dropped)
