"""Readout oversampling removal stage (encoded vs recon field of view in x from the header).

Each line's valid samples (``discard_pre``/``discard_post`` removed) are placed in a readout
of the encoded matrix size with the echo centre ``center_sample`` at the middle (zero-filling
an asymmetric echo), and ``mrzero.core.ops.oversampling`` keeps the central field of view. The
output line is centred: ``center_sample = n // 2``; its dwell time is scaled by the oversampling
factor. Samples outside the measured part of k-space (the zero-filled side of an asymmetric
echo, now holding only the crop's ripple) are marked as ``discard_pre``/``discard_post``, so that
accumulation knows the measured readout extent (partial Fourier in kx). Without oversampling in
the header lines pass unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import ismrmrd
import torch

from mrzero.core.ops.oversampling import remove_readout_oversampling
from mrzero.pipelines.base import Context, PipelineError
from mrzero.pipelines.mrd_header import HeaderError, geometry
from mrzero.pipelines.stages.acquisitions import describe, samples, with_data


def centred_readout(acq: ismrmrd.Acquisition, n: int) -> torch.Tensor:
    """The valid samples of ``acq`` in a readout of ``n`` samples, echo centre at ``n // 2``."""
    data = samples(acq)
    end = acq.number_of_samples - acq.discard_post
    if acq.discard_pre >= end:
        raise PipelineError(f"{describe(acq)}: discards leave no samples")
    start = n // 2 - (acq.center_sample - acq.discard_pre)
    if start < 0 or start + end - acq.discard_pre > n:
        raise PipelineError(
            f"{describe(acq)}: {acq.number_of_samples} samples with centre "
            f"{acq.center_sample} do not fit the header's readout of {n}"
        )
    out = torch.zeros(data.shape[0], n, dtype=data.dtype)
    out[:, start : start + end - acq.discard_pre] = data[:, acq.discard_pre : end]
    return out


def oversampling_stage(items: Iterable[ismrmrd.Acquisition], ctx: Context) -> Iterator[ismrmrd.Acquisition]:
    logged = False
    for acq in items:
        try:
            geo = geometry(ctx.header, acq.encoding_space_ref)
        except HeaderError as err:
            raise PipelineError(str(err)) from err
        if not geo.has_readout_oversampling:
            yield acq
            continue
        n_in, n_out = geo.encoded_matrix[0], geo.readout_without_oversampling
        if not logged:
            ctx.logger.info("removing readout oversampling: %d -> %d samples", n_in, n_out)
            logged = True
        lines = remove_readout_oversampling(centred_readout(acq, n_in), n_out)
        pre, post = measured_extent(acq, n_in, n_out)
        yield with_data(
            acq,
            lines,
            center_sample=n_out // 2,
            discard_pre=pre,
            discard_post=post,
            sample_time_us=acq.sample_time_us * n_in / n_out,
        )


def measured_extent(acq: ismrmrd.Acquisition, n_in: int, n_out: int) -> tuple[int, int]:
    """Samples before and after the measured part of ``acq`` once resampled from ``n_in`` to ``n_out``
    (the same k-space extent on ``n_out / n_in`` as many points, centre ``n // 2`` to ``n // 2``)."""
    start = n_in // 2 - (acq.center_sample - acq.discard_pre)
    stop = start + acq.number_of_samples - acq.discard_pre - acq.discard_post
    first = n_out // 2 + math.ceil((start - n_in // 2) * n_out / n_in - 1e-9)
    last = n_out // 2 + math.floor((stop - n_in // 2) * n_out / n_in + 1e-9)
    return max(0, first), max(0, n_out - last)
