"""Cost of the exact gradients through merged states: the fast engine now vs at a git revision.

Both versions run in one process, alternately (``--rounds`` pairs), on the spoiled GRE of
``bench/simulate.py`` (``flash``: TE 5 ms, TR 12 ms, 10 deg) on the brain phantom (its T2', B0,
B1): the engine files of ``--before`` (``configuration.py``, ``mixing.py``, ``readout.py``,
read with ``git show``) are loaded as separate modules beside the working tree's. Alternating
in one process puts both under the same machine load, which a shared machine needs: the
reported figures are CPU times (``time.process_time``, one thread), their minima and the
median of the per-round ratios new/old. The signals of both are compared first (they must agree
to float32 rounding: the change is in the gradient only).

    .venv/bin/python bench/merged_gradients.py --before 001b780 --sizes 64 --rounds 8
    .venv/bin/python bench/merged_gradients.py --before 001b780 --grads flip,moment,duration
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import torch

from mrzero.sequences.builders.gre import flash
from mrzero.sequences.engines import configuration
from mrzero.sequences.engines.voxels import VoxelSet, voxels_of
from mrzero.sequences.phantoms.brain import brain_phantom
from mrzero.sequences.sequence import Sequence

ROOT = Path(__file__).resolve().parents[1]

ENGINE_FILES = ("mixing", "readout", "configuration")


def old_engine(revision: str, folder: Path) -> ModuleType:
    """The fast engine of ``revision`` as a module (its mixing and readout wired in)."""
    modules = {}
    for name in ENGINE_FILES:
        source = subprocess.run(
            ["git", "show", f"{revision}:sequences/engines/{name}.py"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        path = folder / f"{name}.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(f"before_{name}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        modules[name] = module
    conf = modules["configuration"]
    for attr in ("rf_mix", "readout", "Group", "voxel_phase"):  # the old ones, not the tree's
        source = modules["mixing"] if attr == "rf_mix" else modules["readout"]
        setattr(conf, attr, getattr(source, attr))
    return conf


def forward_backward(engine: ModuleType, seq: Sequence, vox: VoxelSet, grads: list[str]) -> float:
    """CPU seconds of the simulation and the gradient of ``sum |s|^2`` w.r.t. ``grads``."""
    leaves = {name: getattr(seq, name).clone().requires_grad_(True) for name in grads}
    start = time.process_time()
    signal = engine.simulate_configurations(replace(seq, **leaves), vox)
    signal.abs().pow(2).sum().backward()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", required=True, help="git revision of the engine to compare with")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64])
    parser.add_argument("--grads", default="flip,moment", help="comma-separated sequence fields")
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    grads = args.grads.split(",")
    with tempfile.TemporaryDirectory() as folder:
        old = old_engine(args.before, Path(folder))
        for n in args.sizes:
            seq = flash(n, te=5e-3, tr=12e-3, flip=math.radians(10))
            vox = voxels_of(brain_phantom((n, n)), seq)
            with torch.no_grad():
                a, b = old.simulate_configurations(seq, vox), configuration.simulate_configurations(seq, vox)
            difference = float((a - b).abs().max() / a.abs().max())
            times: dict[str, list[float]] = {"old": [], "new": []}
            (
                forward_backward(old, seq, vox, grads),
                forward_backward(configuration, seq, vox, grads),
            )  # warm-up
            for _ in range(args.rounds):
                times["old"].append(forward_backward(old, seq, vox, grads))
                times["new"].append(forward_backward(configuration, seq, vox, grads))
            ratios = [b / a for a, b in zip(times["old"], times["new"], strict=True)]
            print(
                f"{n}x{n}, grad w.r.t. {args.grads}: signal difference {difference:.1e}; "
                f"before {min(times['old']):.3f} s (min), now {min(times['new']):.3f} s; "
                f"ratio of minima {min(times['new']) / min(times['old']):.3f}, "
                f"median ratio {statistics.median(ratios):.3f} over {args.rounds} rounds"
            )


if __name__ == "__main__":
    main()
