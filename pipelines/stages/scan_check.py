"""First stage of the Cartesian chain: know what arrived, refuse what the chain cannot do.

Before any data are processed the scan plan (``pipelines/scan_plan.py``) is read from the header
and logged, the reconstruction parameters are validated, and the header's refusals (non-Cartesian
trajectory, EPI without the EPI stage, simultaneous multi-slice, ``parallel_imaging: "none"`` for
an accelerated scan...) end the scan with a ``PipelineError``. Then every acquisition's flags are
checked as it passes (unknown flag bits, compressed samples, EPI flags without the EPI stage),
and its encoding must exist. Items pass unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import ismrmrd

from mrzero.pipelines.base import Context, PipelineError, Stage
from mrzero.pipelines.cartesian_parameters import reconstruction_parameters
from mrzero.pipelines.scan_plan import flag_refusal, header_refusals, scan_plan
from mrzero.pipelines.stages.acquisitions import describe


def scan_check(epi_stage: bool) -> Stage:
    """The checking stage of a chain that has (``epi_stage``) or lacks the EPI stage."""

    def scan_check_stage(items: Iterable[Any], ctx: Context) -> Iterator[Any]:
        plan = scan_plan(ctx.header)
        params = reconstruction_parameters(ctx)
        reasons = header_refusals(plan, epi_stage)
        for enc in plan.encodings:
            if enc.accelerated and params.parallel_imaging == "none":
                reasons.append(
                    f"encoding {enc.index} is accelerated (R = {enc.accel[0]} x {enc.accel[1]}) "
                    "and the parameter parallel_imaging is 'none'"
                )
        if reasons:
            raise PipelineError("cannot reconstruct this scan: " + "; ".join(reasons))
        for enc in plan.encodings:
            ctx.logger.info("scan plan: %s", enc.describe())
        for item in items:
            if isinstance(item, ismrmrd.Acquisition):
                reason = flag_refusal(item, epi_stage)
                if reason is not None:
                    raise PipelineError(f"{describe(item)}: {reason}")
                if not item.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
                    plan.encoding(item.encoding_space_ref)
            yield item

    scan_check_stage.__name__ = f"scan_check_stage{'_with_epi' if epi_stage else ''}"
    return scan_check_stage
