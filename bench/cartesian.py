"""The ``cartesian`` pipeline against Debian's C++ ``ismrmrd_recon_cartesian_2d``, same files, same run.

Data: ``ismrmrd_generate_cartesian_shepp_logan -m M -c C`` (2x readout oversampling, M lines of
2M samples). Both read the MRD HDF5 file and produce the same image (rss of the zero-filled
inverse DFT, cropped in x): ours ``reconstruct_file(path, "cartesian", {"output": "float",
"scale": "dft"})`` in-process, including file reading and every stage (prewhitening has no
noise scans here, oversampling removal line by line, accumulation, FFT, rss, crop, MRD image);
the C++ tool as a subprocess (process start included) on a fresh copy of the file (the copy is
not timed), since it writes its image into the file. Prints medians of ``--repeats`` runs,
the time ratio ours / C++, and the NRMSE between the two images.

Run: ``.venv/bin/python bench/cartesian.py [--cases 128x8 256x8 256x32] [--repeats 5]``.
Torch runs single-threaded (``--threads``) like the C++ tool.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mrzero.pipelines.offline import reconstruct_file  # noqa: E402

AS_CPP = {"output": "float", "scale": "dft"}


def generate(folder: Path, matrix: int, coils: int) -> Path:
    path = folder / f"shepp_{matrix}x{coils}.h5"
    subprocess.run(
        ["ismrmrd_generate_cartesian_shepp_logan", "-o", str(path), "-m", str(matrix), "-c", str(coils)],
        check=True,
        capture_output=True,
    )
    return path


def time_ours(path: Path) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    (image,) = reconstruct_file(path, "cartesian", AS_CPP)
    return time.perf_counter() - start, image.data[0, 0]


def time_cpp(path: Path, folder: Path) -> tuple[float, np.ndarray]:
    copy = folder / "cpp.h5"
    shutil.copy(path, copy)
    start = time.perf_counter()
    subprocess.run(["ismrmrd_recon_cartesian_2d", str(copy), "dataset"], check=True, capture_output=True)
    elapsed = time.perf_counter() - start
    with h5py.File(copy, "r") as f:
        return elapsed, f["dataset/cpp/data"][0, 0, 0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cases",
        nargs="+",
        default=["128x8", "256x8", "256x32"],
        help="MATRIXxCOILS cases (default: %(default)s)",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); medians of {args.repeats} runs")
    print(f"{'case':>8} {'MB raw':>7} {'ours ms':>8} {'C++ ms':>8} {'ours/C++':>9} {'NRMSE':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for case in args.cases:
            matrix, coils = (int(v) for v in case.split("x"))
            path = generate(folder, matrix, coils)
            megabytes = matrix * 2 * matrix * coils * 8 / 1e6
            ours, cpp = [], []
            for _ in tqdm(range(args.repeats), desc=case, leave=False):
                t_ours, image = time_ours(path)
                t_cpp, reference = time_cpp(path, folder)
                ours.append(t_ours)
                cpp.append(t_cpp)
            nrmse = float(np.linalg.norm(image - reference) / np.linalg.norm(reference))
            m_ours, m_cpp = statistics.median(ours), statistics.median(cpp)
            print(
                f"{case:>8} {megabytes:7.1f} {m_ours * 1e3:8.1f} {m_cpp * 1e3:8.1f} "
                f"{m_ours / m_cpp:9.2f} {nrmse:9.1e}"
            )


if __name__ == "__main__":
    main()
