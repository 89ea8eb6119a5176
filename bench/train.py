"""MRzero training on CPU: wall time per iteration and to convergence of ``gre_from_zero``.

For each ``--matrices`` size N the shipped ``gre_from_zero`` recipe (N x N brain phantom, all
moments and flips "zero" at the start) is trained:

* per-iteration time: the median over ``--repeats`` forward + backward + Adam steps with our
  fast (configuration-state) engine, next to the same iteration with the seed's isochromat
  algorithm (``engine="isochromat"``, ``--spins`` spins per voxel) as the peer, in the same
  run; reported as medians and their ratio;
* convergence: iterations and wall time until the relative image error falls below
  ``--target-error`` (default 10 %, the seed's end point), at most ``--max-iterations``;
  the error curve goes to ``--out``/curve_N.json and the final image row to ``--out``.

With ``--t1`` it also trains ``t1_mapping`` twice, with TI/Trec learned and with the sequence
frozen at its all-zero TI/Trec start (the same MLP trained for the same iterations, head only),
and prints both held-out brain T1 errors: the recipe's (RMS of per-pixel relative errors over
PD > 0.1) and, for comparison, the norm-relative ``||p - t|| / ||t||`` over all tissue (PD > 0)
and over PD > 0.1, the mean absolute relative error, and the RMS relative error where CSF is
not the majority; ``--t1-only`` skips the gre_from_zero part.

Run: ``.venv/bin/python bench/train.py [--matrices 32 48] [--threads 1] [--t1] [--out bench-train]``.
This machine is shared and noisy: compare ratios, not absolute seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mrzero.sequences.phantoms import brain_tissue_fractions  # noqa: E402
from mrzero.sequences.training import Trainer, load_recipe  # noqa: E402


def recipe_for(matrix: int, engine: str, spins: int):
    r = load_recipe("gre_from_zero")
    options = dict(r.engine.options) if engine == "fast" else {"spins": spins}
    return replace(
        r,
        matrix=matrix,
        engine=replace(r.engine, name=engine, options=options),
        output=replace(r.output, report_every=10**9, checkpoint_every=10**9),
    )


def time_iterations(matrix: int, engine: str, spins: int, repeats: int, out: Path) -> list[float]:
    trainer = Trainer(recipe_for(matrix, engine, spins), out / f"timing_{engine}_{matrix}", progress=False)
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        trainer.step(i)
        times.append(time.perf_counter() - start)
    return times


def converge(matrix: int, target: float, max_iterations: int, out: Path) -> dict:
    trainer = Trainer(
        recipe_for(matrix, "fast", 0), out / f"converge_{matrix}", iterations=max_iterations, progress=True
    )
    start = time.perf_counter()
    reached = None
    curve = []
    for i in range(max_iterations):
        rec = trainer.step(i)
        curve.append({"iteration": i, "error": rec["error"], "seconds": time.perf_counter() - start})
        if rec["error"] < target and reached is None:
            reached = curve[-1]
            break
    trainer.iteration = len(curve)
    trainer.report_step(len(curve) - 1)
    (out / f"curve_{matrix}.json").write_text(json.dumps(curve))
    return {
        "matrix": matrix,
        "reached": reached,
        "iterations": len(curve),
        "last_error": curve[-1]["error"],
        "seconds": curve[-1]["seconds"],
        "row": str(trainer.report.folder),
    }


@torch.no_grad()
def t1_errors(trainer: Trainer) -> dict[str, float]:
    """T1 errors (percent) on the first held-out phantom (the brain slice) under several masks."""
    ph, spec = trainer.held_out[0], trainer.recipe.held_out
    pred = trainer.predict(trainer.forward(trainer.sequence(), ph))[0]
    rel = (pred - ph.t1) / ph.t1
    tissue, inside = ph.pd > 0, ph.pd > 0.1
    csf = brain_tissue_fractions(ph.shape, spec.slice, device=ph.pd.device)["csf"]
    not_csf = inside & (csf < 0.5)
    return {
        "rms_rel_pd>0.1": 100 * float(rel[inside].pow(2).mean().sqrt()),
        "norm_pd>0": 100 * float((pred - ph.t1)[tissue].norm() / ph.t1[tissue].norm()),
        "norm_pd>0.1": 100 * float((pred - ph.t1)[inside].norm() / ph.t1[inside].norm()),
        "mean_abs_rel_pd>0.1": 100 * float(rel[inside].abs().mean()),
        "rms_rel_not_csf": 100 * float(rel[not_csf].pow(2).mean().sqrt()),
        "pixels_pd>0": int(tissue.sum()),
        "pixels_pd>0.1": int(inside.sum()),
        "pixels_not_csf": int(not_csf.sum()),
    }


def t1_comparison(out: Path) -> None:
    learned = load_recipe("t1_mapping")
    frozen = replace(learned, name="t1_mapping_untrained", sequence=replace(learned.sequence, learn={}))
    for r in (learned, frozen):
        start = time.perf_counter()
        trainer = Trainer(r, out / r.name, progress=True)
        result = trainer.run()
        errors = ", ".join(
            f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in t1_errors(trainer).items()
        )
        print(
            f"{r.name}: held-out brain T1 relative error {100 * result.held_out_error:.2f} % "
            f"after {len(result.history)} iterations, {(time.perf_counter() - start) / 60:.1f} min; "
            f"errors in %: {errors}; map: {trainer.report.folder / 't1_map.png'}"
        )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--matrices", type=int, nargs="+", default=[32, 48])
    p.add_argument("--repeats", type=int, default=5, help="timed iterations per engine (median)")
    p.add_argument("--spins", type=int, default=25, help="isochromats per voxel of the peer")
    p.add_argument("--target-error", type=float, default=0.10)
    p.add_argument("--max-iterations", type=int, default=600)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-convergence", action="store_true")
    p.add_argument("--t1", action="store_true", help="also compare t1_mapping with its untrained sequence")
    p.add_argument("--t1-only", action="store_true", help="only the t1_mapping comparison")
    p.add_argument("--out", default="bench-train")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print("command:", " ".join(sys.argv), f"(torch threads {args.threads})")
    if args.t1_only:
        t1_comparison(out)
        return 0
    for n in args.matrices:
        fast = statistics.median(time_iterations(n, "fast", args.spins, args.repeats, out))
        iso = statistics.median(time_iterations(n, "isochromat", args.spins, args.repeats, out))
        print(
            f"{n}x{n}: s/iteration (forward+backward+step) median of {args.repeats}: "
            f"fast engine {fast:.2f}, "
            f"isochromat ({args.spins} spins) {iso:.2f}, ratio isochromat/fast {iso / fast:.1f}"
        )
    if not args.skip_convergence:
        for n in args.matrices:
            res = converge(n, args.target_error, args.max_iterations, out)
            if res["reached"]:
                r = res["reached"]
                print(
                    f"{n}x{n}: relative error {100 * r['error']:.2f} % "
                    f"< {100 * args.target_error:.0f} % after "
                    f"{r['iteration'] + 1} iterations, {r['seconds'] / 60:.1f} min wall time"
                )
            else:
                print(
                    f"{n}x{n}: not below {100 * args.target_error:.0f} % in {res['iterations']} iterations "
                    f"({res['seconds'] / 60:.1f} min); last error {100 * res['last_error']:.2f} %"
                )
            print(f"   curve: {out / f'curve_{n}.json'}, final row: {res['row']}")
    if args.t1:
        t1_comparison(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
