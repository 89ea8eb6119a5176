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
    .venv/bin/python bench/merged_gradients.py --before 001b780 --sizes 96 --checkpointing off

``--checkpointing`` gives both versions the same setting; by default each uses its own default
(the engine's automatic rule changed after 001b780: at 96x96 001b780 recomputes every
repetition, the working tree almost none).

``--errors`` instead prints, for both versions, the largest error of every gradient element of
the merged-state case of ``tests/sequences/test_merged_gradients.py`` against its unmerged
central differences, relative to the gradient's norm (the test requires below 1 %).
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
CHECKPOINTING = {"auto": None, "on": True, "off": False}
TESTS = ROOT / "tests" / "sequences"


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


def forward_backward(
    engine: ModuleType, seq: Sequence, vox: VoxelSet, grads: list[str], checkpointing: bool | None = None
) -> float:
    """CPU seconds of the simulation and the gradient of ``sum |s|^2`` w.r.t. ``grads``."""
    leaves = {name: getattr(seq, name).clone().requires_grad_(True) for name in grads}
    start = time.process_time()
    signal = engine.simulate_configurations(replace(seq, **leaves), vox, checkpointing=checkpointing)
    signal.abs().pow(2).sum().backward()
    return time.process_time() - start


def gradient_errors(old: ModuleType) -> None:
    """Both versions' gradient errors on the test's merged-state case (module docstring)."""
    sys.path.insert(0, str(TESTS))
    import test_merged_gradients as case

    for t2dash in (True, False):
        seq, ph = case.spoiled_gre(), case.phantom(t2dash)
        vox = voxels_of(ph, seq)
        grads = {}
        for label, engine in (("before", old), ("now", configuration)):
            leaves = {name: getattr(seq, name).clone().requires_grad_(True) for name in case.FIELDS}
            case.loss(engine.simulate_configurations(replace(seq, **leaves), vox, tolerance=0.0)).backward()
            grads[label] = {name: leaf.grad for name, leaf in leaves.items()}
        grid, configuration.KEY_GRID = configuration.KEY_GRID, case.FINE_GRID
        try:
            references = {name: case.finite_differences(seq, ph, name) for name in case.FIELDS}
        finally:
            configuration.KEY_GRID = grid
        for label, grad in grads.items():
            errors = ", ".join(
                f"{name} {float((grad[name] - ref).abs().max() / ref.norm()):.1e}"
                for name, ref in references.items()
            )
            print(f"T2' {'on ' if t2dash else 'off'}, {label}: {errors}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", required=True, help="git revision of the engine to compare with")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64])
    parser.add_argument("--grads", default="flip,moment", help="comma-separated sequence fields")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--errors", action="store_true", help="gradient errors instead of times")
    parser.add_argument(
        "--checkpointing",
        choices=CHECKPOINTING,
        default="auto",
        help="both versions' checkpointing: each its own default (auto), or the same for both (on, off)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    grads, checkpointing = args.grads.split(","), CHECKPOINTING[args.checkpointing]
    with tempfile.TemporaryDirectory() as folder:
        old = old_engine(args.before, Path(folder))
        if args.errors:
            gradient_errors(old)
            return
        for n in args.sizes:
            seq = flash(n, te=5e-3, tr=12e-3, flip=math.radians(10))
            vox = voxels_of(brain_phantom((n, n)), seq)
            with torch.no_grad():
                a, b = old.simulate_configurations(seq, vox), configuration.simulate_configurations(seq, vox)
            difference = float((a - b).abs().max() / a.abs().max())
            times: dict[str, list[float]] = {"old": [], "new": []}
            for engine in (old, configuration):  # warm-up
                forward_backward(engine, seq, vox, grads, checkpointing)
            for _ in range(args.rounds):
                times["old"].append(forward_backward(old, seq, vox, grads, checkpointing))
                times["new"].append(forward_backward(configuration, seq, vox, grads, checkpointing))
            ratios = [b / a for a, b in zip(times["old"], times["new"], strict=True)]
            print(
                f"{n}x{n}, grad w.r.t. {args.grads}, checkpointing {args.checkpointing}: "
                f"signal difference {difference:.1e}; "
                f"before {min(times['old']):.3f} s (min), now {min(times['new']):.3f} s; "
                f"ratio of minima {min(times['new']) / min(times['old']):.3f}, "
                f"median ratio {statistics.median(ratios):.3f} over {args.rounds} rounds"
            )


if __name__ == "__main__":
    main()
