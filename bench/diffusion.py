"""Diffusion in the fast engine: the within-readout approximation and the cost, on the brain phantom.

For the Cartesian spoiled GRE (``flash``) and the single-shot RARE (``rare``) at ``--matrix`` on
``brain_phantom(diffusion=True)`` (GM 0.8, WM 0.7, CSF 3.0 um^2/ms), and on the same phantom with
its ADC map scaled by ``--stress`` (to make the readout approximation visible):

* ``effect``: how much diffusion changes the signal, ``max|s_D - s_0| / max|s_0|``;
* ``readout error``: ``max|s_D - s_exact| / max|s_0|``, where ``s_exact`` simulates the same
  sequence with every event in its own repetition (zero-flip pulses between them, which change
  nothing but make every sample the first of its repetition, where the damping is exact);
* ``bound``: ``D_max b_ro`` (``sequences/engines/diffusion.py``, ``readout_bound``);
* forward and forward+backward times (gradient of ``sum |s|^2`` w.r.t. flips and moments),
  float32, medians of ``--repeats``, without and with the ADC map.

    .venv/bin/python bench/diffusion.py --matrix 64 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mrzero.sequences.builders import flash, rare  # noqa: E402
from mrzero.sequences.engines.diffusion import one_event_per_repetition, readout_bound  # noqa: E402
from mrzero.sequences.phantom import Phantom  # noqa: E402
from mrzero.sequences.phantoms import brain_phantom  # noqa: E402
from mrzero.sequences.sequence import Sequence  # noqa: E402
from mrzero.sequences.simulate import simulate  # noqa: E402


def accuracy(seq: Sequence, ph: Phantom, stress: float) -> dict[str, float]:
    """Effect, readout error and bound (module docstring) in float64 without pruning."""
    seq = seq.to(dtype=torch.float64)
    ph = ph.to(dtype=torch.float64)
    plain = simulate(seq, replace(ph, diffusion=None), tolerance=0.0)
    scale = plain.abs().max()
    out = {}
    for label, factor in (("tissue", 1.0), (f"x{stress:g}", stress)):
        diffusing = replace(ph, diffusion=ph.diffusion * factor)
        s = simulate(seq, diffusing, tolerance=0.0)
        exact = simulate(one_event_per_repetition(seq), diffusing, tolerance=0.0)
        out[f"{label} effect"] = float((s - plain).abs().max() / scale)
        out[f"{label} readout error"] = float((s - exact).abs().max() / scale)
        out[f"{label} bound"] = readout_bound(seq) * float(diffusing.diffusion.max())
    return out


def timing(seq: Sequence, ph: Phantom, repeats: int) -> dict[str, float]:
    """Median forward and forward+backward times (s), without and with the ADC map."""
    out = {}
    for label, phantom in (("no D", replace(ph, diffusion=None)), ("D", ph)):
        fwd, both = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            with torch.no_grad():
                simulate(seq, phantom)
            fwd.append(time.perf_counter() - t0)
            flip = seq.flip.clone().requires_grad_(True)
            moment = seq.moment.clone().requires_grad_(True)
            t0 = time.perf_counter()
            simulate(replace(seq, flip=flip, moment=moment), phantom).abs().pow(2).sum().backward()
            both.append(time.perf_counter() - t0)
        out[f"{label} forward s"] = statistics.median(fwd)
        out[f"{label} fwd+bwd s"] = statistics.median(both)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matrix", type=int, default=64)
    parser.add_argument("--accuracy-matrix", type=int, default=32, help="matrix of the accuracy runs")
    parser.add_argument("--stress", type=float, default=30.0, help="ADC scale of the stress case")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    builders = {"flash": lambda n: flash(n, te=5e-3, tr=12e-3, flip=0.17), "rare": lambda n: rare(n)}
    n = args.accuracy_matrix
    for name, build in builders.items():
        res = accuracy(build(n), brain_phantom((n, n), diffusion=True), args.stress)
        print(f"{name} {n}x{n}: " + ", ".join(f"{k} {v:.2e}" for k, v in res.items()), flush=True)
    n = args.matrix
    for name, build in builders.items():
        res = timing(build(n), brain_phantom((n, n), diffusion=True), args.repeats)
        print(f"{name} {n}x{n}: " + ", ".join(f"{k} {v:.3f}" for k, v in res.items()), flush=True)


if __name__ == "__main__":
    main()
