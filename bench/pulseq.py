"""Pulseq export and import of a Cartesian GRE against pypulseq's own build of the same sequence.

Ours: ``mrzero.sequences.pulseq.export.export`` of the ``flash`` builder's Sequence (model to hardware
events, timing and limit checks, ``write`` with signature, test report) and
``mrzero.sequences.pulseq.import_.import_seq`` of that file (pypulseq's reader plus the exact waveform
integration into the Sequence model). Peer: a hand-written pypulseq GRE with the same matrix,
FOV, TE, TR, flip, dwell, RF block pulse, RF spoiling and LIN labels, as a pypulseq user writes
it (build, ``write`` with its timing check, test report); for import, pypulseq's ``read`` plus
``calculate_kspace`` (the peer's way from a file to its trajectory). Prints medians of
``--repeats`` runs and the ratios ours / pypulseq.

Run: ``.venv/bin/python bench/pulseq.py [--matrices 64 256] [--repeats 5] [--threads 1]``; torch
runs single-threaded by default, like pypulseq.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pypulseq as pp
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mrzero.sequences.builders import flash  # noqa: E402
from mrzero.sequences.pulseq.export import export  # noqa: E402
from mrzero.sequences.pulseq.import_ import import_seq  # noqa: E402
from mrzero.sequences.pulseq.system import hardware  # noqa: E402

#: (TE, TR, dwell) per matrix, so that the readout fits: seconds.
PROTOCOLS = {64: (5e-3, 15e-3, 50e-6), 128: (5e-3, 15e-3, 30e-6), 256: (6e-3, 20e-3, 20e-6)}
FOV, FLIP = 0.2, math.radians(15)


def pypulseq_gre(n: int, te: float, tr: float, dwell: float, path: Path) -> None:
    """The peer: a textbook pypulseq GRE with the same protocol, written with its test report."""
    system = hardware().to_opts()
    seq = pp.Sequence(system)
    rf = pp.make_block_pulse(FLIP, duration=1e-3, delay=system.rf_dead_time, system=system, use="excitation")
    dk = 1 / FOV
    gx = pp.make_trapezoid("x", flat_area=n * dk, flat_time=n * dwell, system=system)
    adc = pp.make_adc(n, dwell=dwell, delay=gx.rise_time, system=system)
    gx_pre = pp.make_trapezoid("x", area=-gx.area / 2, duration=1e-3, system=system)
    gx_spoil = pp.make_trapezoid("x", area=2 * n * dk, system=system)
    pe_areas = [(i - n // 2) * dk for i in range(n)]
    rf_centre = rf.delay + rf.shape_dur / 2
    before_echo = pp.calc_duration(rf) - rf_centre + pp.calc_duration(gx_pre) + gx.rise_time + n * dwell / 2
    te_fill = te - before_echo
    tr_fill = tr - sum(pp.calc_duration(e) for e in (rf, gx_pre, gx, gx_spoil)) - te_fill
    raster = system.block_duration_raster
    te_fill, tr_fill = round(te_fill / raster) * raster, round(tr_fill / raster) * raster
    phase = 0.0
    for i, area in enumerate(pe_areas):
        phase = (phase + math.radians(117) * i) % (2 * math.pi)
        rf.phase_offset = adc.phase_offset = phase
        seq.add_block(rf)
        gy_pre = pp.make_trapezoid("y", area=area, duration=1e-3, system=system)
        seq.add_block(gx_pre, gy_pre, pp.make_label(type="SET", label="LIN", value=i))
        seq.add_block(pp.make_delay(te_fill))
        seq.add_block(gx, adc)
        gy_rew = pp.make_trapezoid("y", area=-area, duration=pp.calc_duration(gx_spoil), system=system)
        seq.add_block(gx_spoil, gy_rew)
        seq.add_block(pp.make_delay(tr_fill))
    seq.set_definition("FOV", [FOV, FOV, 5e-3])
    seq.set_definition("Name", "gre")
    seq.write(str(path))
    path.with_suffix(".testreport.txt").write_text(seq.test_report())


def pypulseq_read(path: Path) -> None:
    seq = pp.Sequence()
    seq.read(str(path))
    seq.calculate_kspace()


def median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--matrices", type=int, nargs="+", default=[64, 256], choices=sorted(PROTOCOLS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (pypulseq is single-threaded)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    print(
        f"command: .venv/bin/python bench/pulseq.py --matrices {' '.join(map(str, args.matrices))} "
        f"--repeats {args.repeats} --threads {args.threads}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for n in tqdm(args.matrices, desc="matrices"):
            te, tr, dwell = PROTOCOLS[n]
            seq = flash(matrix=n, te=te, tr=tr, flip=FLIP, dwell=dwell, fov=FOV)
            ours, peer = folder / f"ours_{n}.seq", folder / f"peer_{n}.seq"
            t_export = median_time(lambda: export(seq, ours), args.repeats)  # noqa: B023
            t_build = median_time(lambda: pypulseq_gre(n, te, tr, dwell, peer), args.repeats)  # noqa: B023
            t_import = median_time(lambda: import_seq(ours), args.repeats)  # noqa: B023
            t_read = median_time(lambda: pypulseq_read(peer), args.repeats)  # noqa: B023
            rows.append((n, t_export, t_build, t_import, t_read))
    print(
        "| matrix | export ours (s) | pypulseq build+write (s) | ours / pypulseq | import ours (s) "
        "| pypulseq read+kspace (s) | ours / pypulseq |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n, t_export, t_build, t_import, t_read in rows:
        print(
            f"| {n}x{n} | {t_export:.3f} | {t_build:.3f} | {t_export / t_build:.2f} | {t_import:.3f} "
            f"| {t_read:.3f} | {t_import / t_read:.2f} |"
        )


if __name__ == "__main__":
    main()
