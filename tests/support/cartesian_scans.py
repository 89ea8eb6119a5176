"""Cartesian scans built in memory for the pipeline tests: MRD headers with encoding limits and a
``parallelImaging`` block, and acquisitions cut from a known multi-coil k-space.

k-space arrays are ``[coil, nz, ny, nx]`` with k = 0 at ``n // 2`` (``coil_phantoms.multicoil_kspace``);
line ``(kz, ky)`` becomes an acquisition with ``kspace_encode_step_1 = ky`` and
``kspace_encode_step_2 = kz``, and the header's centres are ``ny // 2`` and ``nz // 2``.
"""

from __future__ import annotations

from collections.abc import Iterable

import ismrmrd
import numpy as np
import torch

from mrzero.core.ops.coils import rss
from mrzero.core.ops.fft import ifftc


def _xyz(tag: str, v) -> str:
    return f"<{tag}><x>{v[0]}</x><y>{v[1]}</y><z>{v[2]}</z></{tag}>"


def _limit(name: str, lo: int, hi: int, centre: int) -> str:
    return f"<{name}><minimum>{lo}</minimum><maximum>{hi}</maximum><center>{centre}</center></{name}>"


def header_xml(
    nx: int,
    ny: int,
    nz: int = 1,
    *,
    coils: int = 8,
    accel: tuple[int, int] = (1, 1),
    calibration: str | None = None,
    interleaving: str | None = None,
    e1: tuple[int, int] | None = None,
    e2: tuple[int, int] | None = None,
    counters: dict[str, int] | None = None,
    trajectory: str = "cartesian",
    identifier: str | None = None,
    multiband: int | None = None,
    fov_mm=(256.0, 256.0, 5.0),
    readout_oversampling: int = 1,
) -> str:
    """A one-encoding header; ``e1``/``e2``: (minimum, maximum) of the encode steps (default the
    matrix); ``counters``: name -> number of values (``{"slice": 4}``)."""
    e1 = e1 if e1 is not None else (0, ny - 1)
    limits = _limit("kspace_encoding_step_1", e1[0], e1[1], ny // 2)
    if nz > 1:
        e2 = e2 if e2 is not None else (0, nz - 1)
        limits += _limit("kspace_encoding_step_2", e2[0], e2[1], nz // 2)
    for name in ("average", "slice", "contrast", "phase", "repetition", "set"):
        if counters and name in counters:
            limits += _limit(name, 0, counters[name] - 1, 0)
    pi = ""
    if accel != (1, 1) or calibration:
        pi = (
            f"<parallelImaging><accelerationFactor><kspace_encoding_step_1>{accel[0]}</kspace_encoding_step_1>"
            f"<kspace_encoding_step_2>{accel[1]}</kspace_encoding_step_2></accelerationFactor>"
            + (f"<calibrationMode>{calibration}</calibrationMode>" if calibration else "")
            + (f"<interleavingDimension>{interleaving}</interleavingDimension>" if interleaving else "")
            + (
                f"<multiband><spacing><dZ>10</dZ></spacing><deltaKz>0</deltaKz>"
                f"<multiband_factor>{multiband}</multiband_factor><calibration>separable2D</calibration>"
                f"<calibration_encoding>0</calibration_encoding></multiband>"
                if multiband
                else ""
            )
            + "</parallelImaging>"
        )
    description = (
        f"<trajectoryDescription><identifier>{identifier}</identifier></trajectoryDescription>"
        if identifier
        else ""
    )
    fx = fov_mm[0] * readout_oversampling
    return (
        f'<?xml version="1.0"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">'
        f"<acquisitionSystemInformation><receiverChannels>{coils}</receiverChannels>"
        f"</acquisitionSystemInformation>"
        f"<experimentalConditions><H1resonanceFrequency_Hz>63500000</H1resonanceFrequency_Hz>"
        f"</experimentalConditions><encoding>"
        f"<encodedSpace>{_xyz('matrixSize', (nx * readout_oversampling, ny, nz))}"
        f"{_xyz('fieldOfView_mm', (fx, fov_mm[1], fov_mm[2]))}</encodedSpace>"
        f"<reconSpace>{_xyz('matrixSize', (nx, ny, nz))}{_xyz('fieldOfView_mm', fov_mm)}</reconSpace>"
        f"<encodingLimits>{limits}</encodingLimits><trajectory>{trajectory}</trajectory>{description}"
        f"{pi}</encoding></ismrmrdHeader>"
    )


def line(
    kspace: torch.Tensor | np.ndarray,
    kz: int,
    ky: int,
    *,
    flags: Iterable[int] = (),
    position=(0.0, 0.0, 0.0),
    scan_counter: int = 0,
    **counters: int,
) -> ismrmrd.Acquisition:
    """Line ``(kz, ky)`` of ``kspace`` ``[coil, nz, ny, nx]`` as an acquisition (echo centre ``nx // 2``)."""
    data = np.ascontiguousarray(np.asarray(kspace[:, kz, ky]), dtype=np.complex64)
    acq = ismrmrd.Acquisition.from_array(data, center_sample=data.shape[1] // 2, sample_time_us=5.0)
    acq.idx.kspace_encode_step_1, acq.idx.kspace_encode_step_2 = ky, kz
    acq.scan_counter = scan_counter
    acq.position[:] = position
    acq.read_dir[:] = (1, 0, 0)
    acq.phase_dir[:] = (0, 1, 0)
    acq.slice_dir[:] = (0, 0, 1)
    for name, value in counters.items():
        setattr(acq.idx, name, value)
    for flag in flags:
        acq.set_flag(flag)
    return acq


def truth(kspace: torch.Tensor) -> np.ndarray:
    """The fully sampled reconstruction ``[nz, ny, nx]``: rss of the coils' centred inverse FFT."""
    ndim = 3 if kspace.shape[1] > 1 else 2
    return rss(ifftc(torch.as_tensor(kspace), ndim)).numpy()


def image_data(image: ismrmrd.Image) -> np.ndarray:
    """An MRD image's data ``[z, y, x]`` (first channel)."""
    return np.asarray(image.data[0], dtype=np.float64)


def nrmse(image: np.ndarray, reference: np.ndarray) -> float:
    """``||image - reference||_2 / ||reference||_2`` over the whole image, no scale fitted."""
    image, reference = np.asarray(image, np.float64), np.asarray(reference, np.float64)
    return float(np.linalg.norm(image - reference) / np.linalg.norm(reference))
