"""Partial Fourier stage: fill the unmeasured side of asymmetrically sampled k-space.

For every image the measured box (``pipelines/stages/sampling.py``: measured lines in ky and
kz, measured readout samples in kx, after parallel imaging filled the lattice) is compared with
the k-space centre; an axis measured further on one side than the other is partial Fourier
(phase partial Fourier in ky/kz, asymmetric echo in kx). JSON parameter ``partial_fourier``:
``"pocs"`` (default; ``pocs_iterations``, 10), ``"homodyne"``, or ``"zero_fill"`` (only when
asked for). Operators: ``mrzero.core.ops.partial_fourier``. A SENSE image (already coil-
combined) is filled as one coil through its k-space.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from mrzero.core.ops.fft import fftc, ifftc
from mrzero.core.ops.partial_fourier import homodyne, pocs
from mrzero.pipelines.base import Context, PipelineError
from mrzero.pipelines.cartesian_parameters import reconstruction_parameters
from mrzero.pipelines.scan_plan import scan_plan
from mrzero.pipelines.stages.buffer import ReconBuffer
from mrzero.pipelines.stages.parallel_imaging import image_name
from mrzero.pipelines.stages.sampling import SampledBox, sampled_box


def describe_partial(box: SampledBox, axes: list[str]) -> str:
    extents = {"kz": box.z, "ky": box.y, "kx": box.x}
    return ", ".join(
        f"{a} {extents[a].hi - extents[a].lo + 1}/{extents[a].n} ({extents[a].fraction * 8:.1f}/8)"
        for a in axes
    )


def partial_fourier_stage(items: Iterable[ReconBuffer], ctx: Context) -> Iterator[ReconBuffer]:
    params = reconstruction_parameters(ctx)
    plan = scan_plan(ctx.header)
    logged = False
    for buf in items:
        if not isinstance(buf, ReconBuffer) or buf.sampled is None:
            yield buf
            continue
        shape = buf.data.shape[-3:]
        box = sampled_box(buf, plan.encoding(buf.encoding))
        axes = box.partial_axes()
        if not axes:
            yield buf
            continue
        if not logged:
            ctx.logger.info("partial Fourier %s: %s", describe_partial(box, axes), params.partial_fourier)
            logged = True
        if params.partial_fourier == "zero_fill":
            yield buf
            continue
        mask = box.mask()
        kspace = fftc(buf.data[None], 3 if shape[0] > 1 else 2) if buf.combined else buf.data
        kspace = kspace * mask[None].to(kspace.dtype)
        try:
            if params.partial_fourier == "pocs":
                filled = pocs(kspace, mask, params.pocs_iterations)
            else:
                filled = homodyne(kspace, mask)
        except ValueError as err:
            raise PipelineError(
                f"partial Fourier ({params.partial_fourier}) of {image_name(buf)}: {err}"
            ) from err
        if buf.combined:
            filled = ifftc(filled, 3 if shape[0] > 1 else 2)[0]
        yield buf.with_data(
            filled.to(torch.complex64), history=(*buf.history, params.partial_fourier.upper())
        )
