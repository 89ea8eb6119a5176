"""Selecting the imaging lines: waveforms and non-imaging acquisitions leave the stream here.

Waveforms (physiology) are accepted, counted and ignored: the server journals them, the
reconstruction does not use them. Navigator, phase-correction, feedback, dummy-scan and
similar acquisitions are dropped; imaging lines (parallel-imaging calibration lines included,
as the zero-filled reconstruction uses every measured line) are checked and passed on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import ismrmrd

from mrzero.pipelines.base import Context
from mrzero.pipelines.stages.acquisitions import NON_IMAGING_FLAGS, check_data


def imaging_lines_stage(items: Iterable[Any], ctx: Context) -> Iterator[ismrmrd.Acquisition]:
    waveforms = dropped = 0
    for item in items:
        if isinstance(item, ismrmrd.Waveform):
            waveforms += 1
        elif not isinstance(item, ismrmrd.Acquisition):
            ctx.logger.warning("ignored an item of type %s", type(item).__name__)
        elif item.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT) or any(
                item.is_flag_set(flag) for flag in NON_IMAGING_FLAGS):
            dropped += 1
        else:
            check_data(item)
            yield item
    if waveforms or dropped:
        ctx.logger.info("ignored %d waveforms and %d non-imaging acquisitions", waveforms, dropped)
