"""Twix reprocessing throughput against twixtools' own path, in the same run, on the same file.

Input: ``tests/data/twix/gre.dat`` (real Skyra data, 160 lines x 2 coils x 320 samples), and,
with ``--slices N``, a larger file made from it by repeating its readouts as N slices (written
with twixtools' writer into a temporary folder), so that per-file overheads stop dominating.

Ours, in-process:
  * ``convert``: twix -> MRD HDF5 file (``convert_twix``, what ``mrzero convert`` does);
  * ``convert + recon``: that, then the ``cartesian`` pipeline over the .h5 file;
  * ``recon from .dat``: the ``cartesian`` pipeline straight from the twix file (``mrzero recon``).
Peer: twixtools ``read_twix`` + ``map_twix`` (oversampling removed by twixtools) + numpy
centred 2D inverse FFT + root-sum-of-squares, images in memory.

Throughput is MB of raw samples (complex64, all channels) per second; times are medians of
``--repeats`` rounds in which the four runs take turns; the ratio is peer time / our time
(above 1: ours is faster). torch runs on ``--threads`` threads (default 1).
Run: ``.venv/bin/python bench/twix.py [--slices 1 16] [--repeats 7]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import twixtools

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mrzero.pipelines.offline import reconstruct_file  # noqa: E402
from mrzero.pipelines.reprocess import reconstruct_images  # noqa: E402
from mrzero.pipelines.twix import convert_twix, load_twix  # noqa: E402

GRE = Path(__file__).resolve().parents[1] / "tests" / "data" / "twix" / "gre.dat"
FLOAT = {"output": "float", "scale": 1.0}


def median_times(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each run; the runs take turns, so that load drifts hit all alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def multislice_copy(source: Path, slices: int, folder: Path) -> Path:
    """``source``'s readouts repeated as ``slices`` slices, written with twixtools' writer."""
    if slices == 1:
        return source
    with contextlib.redirect_stdout(io.StringIO()):
        scan = twixtools.read_twix(str(source), verbose=False)[-1]
    readouts = [m for m in scan["mdb"] if not m.is_flag_set("ACQEND")]
    mdbs = []
    for s in range(slices):
        for mdb in readouts:
            local = mdb.convert_to_local()
            local.mdh.Counter.Sli = s
            mdbs.append(local)
    path = folder / f"{source.stem}_{slices}slices.dat"
    with contextlib.redirect_stdout(io.StringIO()):  # the writer adds the end-of-acquisition block
        twixtools.write_twix({**scan, "mdb": mdbs}, str(path))
    return path


def twixtools_recon(path: Path) -> np.ndarray:
    """The peer: read_twix + map_twix (oversampling removed) + numpy FFT + rss, per slice."""
    with contextlib.redirect_stdout(io.StringIO()):
        image = twixtools.map_twix(twixtools.read_twix(str(path), verbose=False), verbose=False)[-1]["image"]
    image.flags["remove_os"] = True
    kspace = image[:]  # [..., Sli, Ave, Lin, Cha, Col]: squeeze everything but Sli, Lin, Cha, Col
    sli, lin = image.dims.index("Sli"), image.dims.index("Lin")
    kspace = np.moveaxis(kspace, (sli, lin), (0, 1)).reshape(
        kspace.shape[sli], kspace.shape[lin], -1, kspace.shape[-1]
    )
    coil = np.fft.fftshift(
        np.fft.ifft2(np.fft.ifftshift(kspace, axes=(1, 3)), axes=(1, 3), norm="ortho"), axes=(1, 3)
    )
    return np.sqrt((np.abs(coil) ** 2).sum(axis=2))


def bench(path: Path, repeats: int, scratch: Path) -> dict[str, float]:
    raw_mb = load_twix(path).raw_bytes / 1e6

    def convert() -> Path:
        return convert_twix(path, scratch / f"{path.stem}.h5", overwrite=True).output

    def convert_and_recon() -> object:
        return reconstruct_file(convert(), "cartesian", FLOAT)

    times = median_times(
        {
            "convert": convert,
            "convert + recon": convert_and_recon,
            "recon from .dat": lambda: reconstruct_images(path, "cartesian", FLOAT),
            "twixtools + numpy": lambda: twixtools_recon(path),
        },
        repeats,
    )
    ours = reconstruct_images(path, "cartesian", FLOAT)[0]
    peer = twixtools_recon(path)
    ours_stack = np.stack([im.data[0, 0] for im in sorted(ours, key=lambda im: im.slice)]) / np.sqrt(2)
    times["nrmse"] = float(np.linalg.norm(ours_stack - peer) / np.linalg.norm(peer))
    times["raw_mb"] = raw_mb
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--slices", type=int, nargs="+", default=[1, 16], help="slice copies of gre.dat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"command: .venv/bin/python bench/twix.py --slices {' '.join(map(str, args.slices))} "
        f"--repeats {args.repeats} --threads {args.threads}"
    )
    print(
        "| input | raw MB | convert MB/s | convert + recon MB/s | recon from .dat MB/s "
        "| twixtools + numpy MB/s | peer time / convert + recon | peer time / recon from .dat "
        "| NRMSE vs peer |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for slices in args.slices:
            path = multislice_copy(GRE, slices, Path(tmp))
            t = bench(path, args.repeats, Path(tmp))
            mb = t["raw_mb"]
            print(
                f"| gre.dat x {slices} slice(s) | {mb:.1f} | {mb / t['convert']:.1f} "
                f"| {mb / t['convert + recon']:.1f} | {mb / t['recon from .dat']:.1f} "
                f"| {mb / t['twixtools + numpy']:.1f} "
                f"| {t['twixtools + numpy'] / t['convert + recon']:.2f} "
                f"| {t['twixtools + numpy'] / t['recon from .dat']:.2f} | {t['nrmse']:.1e} |"
            )


if __name__ == "__main__":
    main()
