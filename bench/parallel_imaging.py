"""GRAPPA and ESPIRiT + SENSE (``core/ops``) against ``bart ecalib`` + ``bart pics``, same k-space, one run.

Cases:

* ``shepp128x8``, ``shepp256x32``: ISMRMRD's generator, ``-m 128 -c 8`` or ``-m 256 -c 32``,
  ``-a 2 -w 32 -n 0.005`` (repetition 0: every other line plus the 32 calibration lines, 2x
  oversampled readout); truth: the rss image of the generator's noiseless fully sampled run
  (``-a 1 -n 0``, same matrix and coils).
* ``sim256x32``: a 256 x 256, 32-coil simulation (``tests/support/coil_phantoms.py``: ellipses,
  smooth Gaussian coil maps on a ring, closed-form FFT, complex noise 0.002 per sample), R = 2 with
  32 calibration lines embedded; truth: the rss of the noiseless fully sampled coil images.

Ours run in-process from tensors in memory: GRAPPA = ``grappa_calibrate`` (5x4 kernel) +
``grappa_apply`` + inverse FFT + rss; SENSE = ``estimate_sensitivities`` (ESPIRiT, BART's
defaults: kernel 6, calibration 24, threshold sqrt(0.001), crop 0.8) + ``sense_reconstruct`` (30 CG
iterations, no regularisation); ``GRAPPA cc`` compresses 32 coils to 12 virtual ones first
(``compression_matrix`` from the calibration lines). BART (Debian's 0.8) as subprocesses, process
starts and ``.cfl`` writing/reading included: ``bart ecalib -m 1`` + ``bart pics -S`` (30 CG
iterations, no regularisation, image re-scaled). Methods are timed interleaved, ``--repeats``
rounds, medians. Error: NRMSE of the magnitude image against the truth over the reconstructed
field of view, ``||abs(x) - truth|| / ||truth||``, no scale fitted.

Run: ``.venv/bin/python bench/parallel_imaging.py [--cases shepp128x8 shepp256x32 sim256x32]
[--repeats 5] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))

from coil_phantoms import multicoil_kspace  # noqa: E402
from shepp_logan_mrd import generate, read_repetitions  # noqa: E402

from mrzero.core.ops.coil_compression import compress, compression_matrix  # noqa: E402
from mrzero.core.ops.coils import rss  # noqa: E402
from mrzero.core.ops.fft import ifftc  # noqa: E402
from mrzero.core.ops.grappa import grappa_apply, grappa_calibrate  # noqa: E402
from mrzero.core.ops.sense import estimate_sensitivities, sense_reconstruct  # noqa: E402
from mrzero.pipelines.bart import read_cfl, run_bart, write_cfl  # noqa: E402


class Case:
    """Undersampled k-space ``[coil, 1, ky, kx]``, its line mask, calibration block and truth."""

    def __init__(
        self,
        name: str,
        kspace: torch.Tensor,
        sampled: torch.Tensor,
        acs_lines: slice,
        truth: torch.Tensor,
        crop_x: int,
    ):
        self.name, self.kspace, self.sampled, self.truth, self.crop_x = name, kspace, sampled, truth, crop_x
        self.acs = kspace[:, :, acs_lines]

    def error(self, image: torch.Tensor) -> float:
        """NRMSE of a magnitude image ``[ny, nx]`` (cropped to the truth's x extent)."""
        nx = image.shape[-1]
        image = image[..., nx // 2 - self.crop_x // 2 : nx // 2 - self.crop_x // 2 + self.crop_x]
        return float((image - self.truth).norm() / self.truth.norm())


def shepp(folder: Path, matrix: int, coils: int) -> Case:
    accelerated = generate(
        folder / f"r2_{matrix}x{coils}.h5", matrix=matrix, coils=coils, accel=2, acs=32, noise=0.005
    )
    full = generate(folder / f"full_{matrix}x{coils}.h5", matrix=matrix, coils=coils, accel=1, noise=0.0)
    rep = read_repetitions(accelerated)[0]
    truth = rss(ifftc(read_repetitions(full)[0].kspace[:, 0], 2))[:, matrix // 2 : matrix // 2 + matrix]
    ys = torch.nonzero(rep.calibration[0]).flatten()
    return Case(
        f"shepp{matrix} ({coils} coils)",
        rep.kspace,
        rep.sampled,
        slice(int(ys[0]), int(ys[-1]) + 1),
        truth,
        matrix,
    )


def sim256x32() -> Case:
    n, coils = 256, 32
    kspace, image, maps = multicoil_kspace(coils, (1, n, n), noise=0.002, seed=1)
    truth = (image.abs() * rss(maps))[0]
    sampled = torch.zeros(1, n, dtype=torch.bool)
    sampled[0, ::2] = True
    sampled[0, n // 2 - 16 : n // 2 + 16] = True
    return Case(
        "sim256 (32 coils)", kspace * sampled[:, :, None], sampled, slice(n // 2 - 16, n // 2 + 16), truth, n
    )


CASES: dict[str, Callable[[Path], Case]] = {
    "shepp128x8": lambda folder: shepp(folder, 128, 8),
    "shepp256x32": lambda folder: shepp(folder, 256, 32),
    "sim256x32": lambda folder: sim256x32(),
}


def ours_grappa(case: Case, virtual: int | None = None) -> torch.Tensor:
    kspace, acs = case.kspace, case.acs
    if virtual:
        matrix = compression_matrix(acs, virtual)
        kspace, acs = compress(kspace, matrix), compress(acs, matrix)
    kernel = grappa_calibrate(acs, (2, 1))
    return rss(ifftc(grappa_apply(kernel, kspace, case.sampled)[:, 0], 2))


def ours_sense(case: Case) -> torch.Tensor:
    maps = estimate_sensitivities(case.acs, tuple(case.kspace.shape[1:]))
    return sense_reconstruct(case.kspace, case.sampled, maps, iterations=30)[0].abs()


def bart_sense(case: Case, folder: Path) -> torch.Tensor:
    write_cfl(folder / "ksp", case.kspace[:, 0].numpy().transpose(2, 1, 0)[:, :, None, :])
    run_bart("ecalib", "-m", "1", "ksp", "sens", cwd=folder)
    run_bart("pics", "-S", "-i", "30", "ksp", "sens", "img", cwd=folder)
    image = read_cfl(folder / "img")
    return torch.from_numpy(np.abs(image.reshape(image.shape[0], image.shape[1])).T.copy())


def timed(method: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    image = method()
    return time.perf_counter() - start, image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads and OMP_NUM_THREADS for BART")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); "
        f"BART {run_bart('version').strip()}; medians of {args.repeats} interleaved runs"
    )
    print(f"{'case':<20} {'method':<26} {'time s':>8} {'/ BART':>7} {'NRMSE':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in args.cases:
            case = CASES[name](folder)
            methods: dict[str, Callable[[], torch.Tensor]] = {
                "GRAPPA 5x4": lambda case=case: ours_grappa(case),
                "ESPIRiT + SENSE (30 CG)": lambda case=case: ours_sense(case),
                "bart ecalib + pics": lambda case=case: bart_sense(case, folder),
            }
            if case.kspace.shape[0] > 16:
                methods["GRAPPA 5x4, 12 virtual"] = lambda case=case: ours_grappa(case, 12)
            times: dict[str, list[float]] = {m: [] for m in methods}
            errors: dict[str, float] = {}
            for _ in range(args.repeats):
                for method, run in methods.items():
                    elapsed, image = timed(run)
                    times[method].append(elapsed)
                    errors[method] = case.error(image)
            peer = statistics.median(times["bart ecalib + pics"])
            for method in methods:
                t = statistics.median(times[method])
                print(f"{case.name:<20} {method:<26} {t:8.3f} {t / peer:7.2f} {errors[method]:8.5f}")


if __name__ == "__main__":
    main()
