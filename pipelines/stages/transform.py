"""k-space to coil images: the centred orthonormal inverse FFT over (kz, ky, kx).

Buffers that are already one combined image (SENSE) pass unchanged."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from mrzero.core.ops.fft import ifftc
from mrzero.pipelines.base import Context
from mrzero.pipelines.stages.buffer import ReconBuffer


def kspace_to_image_stage(items: Iterable[ReconBuffer], ctx: Context) -> Iterator[ReconBuffer]:
    for buf in items:
        yield buf if buf.combined else buf.with_data(ifftc(buf.data, ndim=3))
