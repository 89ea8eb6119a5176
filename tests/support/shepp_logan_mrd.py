"""ISMRMRD's generator (``ismrmrd_generate_cartesian_shepp_logan``) as test and benchmark data.

The generator writes 2x readout-oversampled multi-coil Cartesian data; with ``-a R -w W`` it
writes R repetitions, repetition ``r`` acquiring the lines ``ky = r, r + R, ...`` plus the full
block of W calibration lines around the centre, flagged ``ACQ_IS_PARALLEL_CALIBRATION`` (extra
lines) or ``ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING`` (lattice lines). Noise scans are flagged
``ACQ_IS_NOISE_MEASUREMENT``. Lines are placed by ``idx.kspace_encode_step_1`` only.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import ismrmrd
import numpy as np
import torch

from mrzero.core.ops.coils import rss
from mrzero.core.ops.fft import ifftc

CALIBRATION = ismrmrd.ACQ_IS_PARALLEL_CALIBRATION
CALIBRATION_AND_IMAGING = ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING


def generate(
    path: str | Path,
    matrix: int = 128,
    coils: int = 8,
    accel: int = 1,
    acs: int = 0,
    noise: float = 0.005,
    noise_scan: bool = False,
    repetitions: int = 1,
) -> Path:
    """Run the generator; returns ``path`` (replaced if it exists: the generator aborts on it)."""
    Path(path).unlink(missing_ok=True)
    args = [
        "ismrmrd_generate_cartesian_shepp_logan",
        "-o",
        str(path),
        "-m",
        str(matrix),
        "-c",
        str(coils),
        "-a",
        str(accel),
        "-w",
        str(acs),
        "-n",
        str(noise),
        "-r",
        str(repetitions),
    ]
    subprocess.run(args + (["-C"] if noise_scan else []), check=True, capture_output=True)
    return Path(path)


@dataclass
class Repetition:
    kspace: torch.Tensor  # [coil, 1, ky, kx] complex64, zeros where not acquired (all lines)
    sampled: torch.Tensor  # [1, ky] bool: every acquired line (imaging and calibration)
    imaging: torch.Tensor  # [1, ky] bool: imaging lines (no flag or CALIBRATION_AND_IMAGING)
    calibration: torch.Tensor  # [1, ky] bool: lines flagged CALIBRATION or CALIBRATION_AND_IMAGING


def read_repetitions(path: str | Path) -> dict[int, Repetition]:
    """Every repetition's k-space ``[coil, 1, ny, nx_oversampled]`` with its line masks."""
    dataset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
    header = ismrmrd.xsd.CreateFromDocument(dataset.read_xml_header())
    encoding = header.encoding[0]
    ny = encoding.encodedSpace.matrixSize.y
    nx = encoding.encodedSpace.matrixSize.x
    reps: dict[int, Repetition] = {}
    for i in range(dataset.number_of_acquisitions()):
        acq = dataset.read_acquisition(i)
        if acq.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
            continue
        r = acq.idx.repetition
        if r not in reps:
            reps[r] = Repetition(
                torch.zeros(acq.data.shape[0], 1, ny, nx, dtype=torch.complex64),
                *(torch.zeros(1, ny, dtype=torch.bool) for _ in range(3)),
            )
        rep, y = reps[r], acq.idx.kspace_encode_step_1
        rep.kspace[:, 0, y] = torch.from_numpy(np.ascontiguousarray(acq.data))
        rep.sampled[0, y] = True
        calibration = acq.is_flag_set(CALIBRATION) or acq.is_flag_set(CALIBRATION_AND_IMAGING)
        rep.calibration[0, y] = calibration
        rep.imaging[0, y] = not acq.is_flag_set(CALIBRATION)
    dataset.close()
    return dict(sorted(reps.items()))


def calibration_block(rep: Repetition) -> torch.Tensor:
    """The contiguous block of calibration lines ``[coil, 1, n_acs, nx]``; refuses gaps."""
    lines = torch.nonzero(rep.calibration[0]).flatten()
    first, last = int(lines[0]), int(lines[-1])
    if len(lines) != last - first + 1:
        raise ValueError(f"calibration lines {lines.tolist()} are not contiguous")
    return rep.kspace[:, :, first : last + 1]


def rss_image(kspace: torch.Tensor) -> torch.Tensor:
    """Magnitude image ``[ny, nx / 2]``: rss of the coils' inverse FFT, readout oversampling cropped."""
    image = rss(ifftc(kspace[:, 0], 2))
    nx = image.shape[-1]
    return image[:, nx // 4 : nx // 4 + nx // 2]


def nrmse(image: torch.Tensor, truth: torch.Tensor) -> float:
    """``||image - truth||_2 / ||truth||_2`` over the whole image (magnitudes, no scale fitted)."""
    return float((image - truth).norm() / truth.norm())
