"""Pipelines registered for the server tests only (imported through ``Settings.pipeline_modules``).

``test_rss`` is a tiny but real reconstruction (zero-filled k-space, centred FFT,
root-sum-of-squares) so that tests can check pixels; the others misbehave on purpose.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import ismrmrd
import numpy as np

from mrzero.pipelines.base import Context
from mrzero.pipelines.parameters import PipelineParameters, parameter
from mrzero.pipelines.registry import register


def rss_image(acquisitions: list[ismrmrd.Acquisition], header: ismrmrd.xsd.ismrmrdHeader) -> np.ndarray:
    """The reference result: RSS of the centred inverse FFT of the zero-filled k-space."""
    matrix = header.encoding[0].encodedSpace.matrixSize
    kspace = None
    for acq in acquisitions:
        if acq.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
            continue
        if kspace is None:
            kspace = np.zeros((acq.active_channels, matrix.y, acq.number_of_samples), np.complex64)
        kspace[:, acq.idx.kspace_encode_step_1, :] = acq.data
    axes = (-2, -1)
    coils = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=axes), norm="ortho"), axes=axes)
    return np.sqrt((np.abs(coils) ** 2).sum(0)).astype(np.float32)


@dataclass(frozen=True)
class RssParameters(PipelineParameters):
    site: str | None = parameter(None, "tests only: a tag that the journal keeps with the scan")


@register("test_rss", "tests only: zero-filled FFT + root-sum-of-squares, one float image", RssParameters)
def test_rss(items: Iterable[Any], ctx: Context) -> Iterator[ismrmrd.Image]:
    acqs = [item for item in items if isinstance(item, ismrmrd.Acquisition)]
    ctx.notify(f"test_rss: {len(acqs)} acquisitions")
    image = ismrmrd.Image.from_array(rss_image(acqs, ctx.header), transpose=False)
    image.image_series_index = 1
    yield image


@register("test_raises", "tests only: raises after the first acquisition")
def test_raises(items: Iterable[Any], ctx: Context) -> Iterator[ismrmrd.Image]:
    for _ in items:
        raise ValueError("deliberate failure in test_raises")
    yield from ()


@register("test_hangs", "tests only: stops consuming input and sleeps")
def test_hangs(items: Iterable[Any], ctx: Context) -> Iterator[ismrmrd.Image]:
    for _ in items:
        time.sleep(3600)
    yield from ()


@register("test_hog", "tests only: allocates memory until it fails")
def test_hog(items: Iterable[Any], ctx: Context) -> Iterator[ismrmrd.Image]:
    hoard = []
    for _ in items:
        hoard.append(np.ones(1 << 30, np.uint8))  # 1 GiB each, touched
    yield from ()
