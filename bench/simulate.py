"""Benchmark the simulation engines against MRzero-Core 1.2 at equal accuracy.

Case: the Cartesian RF- and gradient-spoiled GRE (``mrzero.sequences.builders.gre.flash``: TE
5 ms, TR 12 ms, flip 10 deg, 1.5 cycles/pixel spoiler) at each matrix (default 64, 96), on a
phantom the project did not tune on (``bench/untuned_phantom.py``: brain slice 6 with seeded
smooth random B0 -80..80 Hz, B1 0.8..1.2, T2' 20..60 ms; ``--phantom brain`` for the embedded
default slice with its own maps).

Settings ("variants") of both codes are benchmarked: this project's fast engine at several
pruning tolerances, and MRzero-Core (``bench/simulate_mrzero_peer.py``, run by the Python given
with ``--peer-python``) at several pruning thresholds, all with the same box voxels (its
pre-pass Nyquist cut switched off; ``mrzero-core-nyquist-cut`` shows it as shipped). Every
case runs in a fresh subprocess so that its peak memory (peak resident size over the size
before the first run, ``bench/peak_rss.py``) is its own; time is the median of ``--repeats`` runs inside that
process, forward only and forward+backward (gradient of ``sum |s|^2`` w.r.t. all flip angles
and gradient moments). The variants run interleaved (peer, ours, peer, ...), ``--rounds``
times, so load from other jobs falls on both alike; a variant's time is the median over rounds.

Errors are normalised signal RMSEs against the converged reference: the fast engine in float64
without pruning. Its independence: MRzero-Core with tight thresholds
(``mrzero-core-converged``) reaches it to the figure printed as "agreement"; its agreement
with many-spin isochromats is tested in ``tests/sequences/test_engines_agreement.py`` and
shown by ``--convergence``.

Equal accuracy: for every peer variant, the matched row takes the fastest of our variants
whose error is at most the peer's (ours at least as accurate) and gives the time and memory
ratios of that pair.

    .venv/bin/python bench/simulate.py --peer-python /tmp/mrzero-bench-venv/bin/python
    .venv/bin/python bench/simulate.py --convergence 32   # isochromat error vs spin count
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import peak_rss
import torch
from untuned_phantom import untuned_phantom

from mrzero.sequences.builders.gre import flash
from mrzero.sequences.phantom import Phantom
from mrzero.sequences.phantoms.brain import brain_phantom
from mrzero.sequences.sequence import Sequence
from mrzero.sequences.simulate import simulate

PEER_SCRIPT = Path(__file__).with_name("simulate_mrzero_peer.py")
#: This project's variants: name -> (engine, options).
OURS = {
    "fast": ("fast", {}),
    "fast-tol1e-4": ("fast", {"tolerance": 1e-4}),
    "fast-tol1e-3": ("fast", {"tolerance": 1e-3}),
    "fast-tol1e-2": ("fast", {"tolerance": 1e-2}),
    "fast-checkpointing": ("fast", {"checkpointing": True}),
    "isochromat": ("isochromat", {}),
}
#: MRzero-Core's variants: name -> options of ``simulate_mrzero_peer.py``. Its accuracy is set by
#: execute_graph's ``min_emitted_signal``/``min_latent_signal`` (both ``--min-signal``); the
#: pre-pass's state count and magnitude limits hardly matter on this case (at 32x32 with no
#: signal threshold, 200 or 100000 states and min_state_mag 0 or 1e-4 give the same error).
PEER = {
    "mrzero-core": {"min-signal": 1e-2},
    "mrzero-core-1e-4": {"min-signal": 1e-4},
    "mrzero-core-1e-6": {"min-signal": 1e-6},
    "mrzero-core-converged": {"min-signal": 0.0, "max-states": 2000, "min-state-mag": 1e-6},
    "mrzero-core-nyquist-cut": {"min-signal": 1e-2, "prepass-nyquist": "on"},
}
DEFAULT_VARIANTS = [
    "fast",
    "fast-tol1e-4",
    "fast-tol1e-3",
    "fast-tol1e-2",
    "mrzero-core",
    "mrzero-core-1e-4",
]
SETTINGS = {
    **{
        name: ", ".join(f"{k}={v}" for k, v in opts.items()) or "defaults" for name, (_, opts) in OURS.items()
    },
    **{name: ", ".join(f"{k} {v}" for k, v in opts.items()) for name, opts in PEER.items()},
}


def case(n: int, phantom: str, dtype: torch.dtype = torch.float32, device: str = "cpu"):
    """The benchmark's sequence and phantom at matrix ``n``."""
    seq = flash(n, te=5e-3, tr=12e-3, flip=math.radians(10), dtype=dtype, device=device)
    if phantom == "untuned":
        ph = untuned_phantom(n, dtype=dtype)
    else:
        ph = brain_phantom((n, n), dtype=dtype)
    return seq, ph.to(device=device)


def run_once(seq: Sequence, phantom: Phantom, engine: str, mode: str, options: dict) -> torch.Tensor:
    """One simulation (and backward pass); its objects are freed on return, before the next run."""
    if mode == "fwd":
        with torch.no_grad():
            return simulate(seq, phantom, engine, **options)
    flip = seq.flip.clone().requires_grad_(True)
    moment = seq.moment.clone().requires_grad_(True)
    signal = simulate(dataclasses.replace(seq, flip=flip, moment=moment), phantom, engine, **options)
    (signal.abs() ** 2).sum().backward()
    assert flip.grad is not None and moment.grad is not None
    return signal.detach()


def run_ours(seq: Sequence, phantom: Phantom, engine: str, mode: str, repeats: int, options: dict) -> dict:
    """One case of this project's engines, in this (fresh) process."""
    cuda = seq.device.type == "cuda"
    before = peak_rss.reset()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        signal = run_once(seq, phantom, engine, mode, options)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak_mb = torch.cuda.max_memory_allocated() / 2**20 if cuda else peak_rss.increase_mb(before)
    return {
        "seconds": statistics.median(times),
        "peak_mb": peak_mb,
        "signal": signal.cpu()[0].numpy().astype(np.complex64),
    }


def reference(n: int, phantom: str) -> np.ndarray:
    """Converged reference signal: the fast engine in float64 without pruning."""
    seq, ph = case(n, phantom, dtype=torch.float64)
    with torch.no_grad():
        return simulate(seq, ph, "fast", tolerance=1e-9, max_states=100000)[0].numpy()


def nrmse(signal: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(signal - ref) / np.linalg.norm(ref))


def write_peer_case(n: int, phantom: str, path: Path) -> None:
    """The case as plain arrays in this project's units, for the peer's Python."""
    seq, ph = case(n, phantom)
    if seq.rf_offsets is not None or ph.fat is not None or ph.coil_sens is not None:
        raise ValueError("the peer case carries only instantaneous pulses, water and one uniform coil")
    np.savez(
        path,
        flip=seq.flip.numpy(),
        rf_phase=seq.rf_phase.numpy(),
        duration=seq.duration.numpy(),
        moment=seq.moment.numpy(),
        adc=seq.adc.numpy(),
        adc_phase=seq.adc_phase.numpy(),
        fov=np.array(ph.fov),
        **{k: getattr(ph, k).numpy() for k in ("pd", "t1", "t2", "t2dash", "b0", "b1")},
    )


def subprocess_case(args: argparse.Namespace, n: int, variant: str, mode: str, workdir: Path) -> dict | None:
    """Run one case in a fresh process (ours or the peer); None when it failed (reason printed)."""
    out = workdir / f"{variant}_{n}_{mode}.npy"
    common = ["--repeats", str(args.repeats), "--threads", str(args.threads)]
    if variant in PEER:
        npz = workdir / f"case_{n}.npz"
        if not npz.exists():
            write_peer_case(n, args.phantom, npz)
        options = [x for k, v in PEER[variant].items() for x in (f"--{k}", str(v))]
        cmd = [args.peer_python, str(PEER_SCRIPT), str(npz), "--mode", mode, "--signal-out", str(out)]
        cmd += common + options
    else:
        cmd = [sys.executable, __file__, "--worker", variant, str(n), mode, str(out), *common]
        cmd += ["--spins", str(args.spins), "--device", args.device, "--phantom", args.phantom]
    limit = int(args.memory_limit_gb * 2**30)

    def cap_memory() -> None:  # in the child: an allocation beyond the cap fails there, not the machine
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=args.timeout, preexec_fn=cap_memory
        )
    except subprocess.TimeoutExpired:
        print(f"  {variant} {n} {mode}: timed out after {args.timeout:.0f} s", flush=True)
        return None
    if proc.returncode != 0:
        reason = " | ".join(proc.stderr.strip().splitlines()[-3:]) or f"exit status {proc.returncode}"
        print(f"  {variant} {n} {mode} failed: {reason}", flush=True)
        return None
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["signal"] = np.load(out)
    return result


def worker(args: argparse.Namespace) -> int:
    variant, n, mode, out = args.worker
    torch.set_num_threads(args.threads)
    engine, options = OURS[variant]
    options = {**options, "spins": args.spins} if engine == "isochromat" else options
    seq, phantom = case(int(n), args.phantom, device=args.device)
    result = run_ours(seq, phantom, engine, mode, args.repeats, options)
    np.save(out, result.pop("signal"))
    result["peak_rss_mb"] = result.pop("peak_mb")
    print(json.dumps(result))
    return 0


def convergence(n: int, phantom: str, spins: list[int]) -> None:
    """Isochromat engine: error against the reference as the spin count grows."""
    ref = reference(n, phantom)
    seq, ph = case(n, phantom)
    print(f"isochromat convergence, {n}x{n} GRE on the {phantom} phantom, NRMSE vs the converged reference:")
    for s in spins:
        start = time.perf_counter()
        with torch.no_grad():
            sig = simulate(seq, ph, "isochromat", spins=s)[0].numpy()
        seconds = time.perf_counter() - start
        print(f"  spins {s:6d}: {100 * nrmse(sig, ref):6.3f} %  ({seconds:.1f} s)", flush=True)


def interleave(variants: list[str]) -> list[str]:
    """Peer and own variants alternating, so a load change falls on both codes alike."""
    peer = [v for v in variants if v in PEER]
    ours = [v for v in variants if v not in PEER]
    order = []
    for i in range(max(len(peer), len(ours))):
        order += peer[i : i + 1] + ours[i : i + 1]
    return order


def measure(args: argparse.Namespace, n: int, variants: list[str], workdir: Path) -> list[dict]:
    """All variants at matrix ``n``: one row each (time medians over rounds, memory and error)."""
    ref = reference(n, args.phantom)
    runs: dict[tuple[str, str], list[dict]] = {}
    modes = ["fwd"] if args.forward_only else ["fwd", "fwdbwd"]
    for r in range(args.rounds):
        for mode in modes:
            for variant in interleave(variants):
                if variant == "isochromat" and n > args.isochromat_max:
                    continue
                res = subprocess_case(args, n, variant, mode, workdir)
                if res is not None:
                    res["nrmse"] = nrmse(res.pop("signal"), ref)
                    runs.setdefault((variant, mode), []).append(res)
                    print(
                        f"  round {r + 1} {n:3d} {mode:6s} {variant:24s} {res['seconds']:8.3f} s "
                        f"{res['peak_rss_mb']:8.1f} MB  NRMSE {res['nrmse']:.2e}",
                        flush=True,
                    )
    rows = []
    nan = float("nan")
    for variant in variants:
        fwd, bwd = runs.get((variant, "fwd")), runs.get((variant, "fwdbwd"))
        if not fwd:
            continue
        rows.append(
            {
                "n": n,
                "variant": variant,
                "nrmse": statistics.median(x["nrmse"] for x in fwd),
                "fwd_s": statistics.median(x["seconds"] for x in fwd),
                "fwd_mb": statistics.median(x["peak_rss_mb"] for x in fwd),
                "fwdbwd_s": statistics.median(x["seconds"] for x in bwd) if bwd else nan,
                "fwdbwd_mb": statistics.median(x["peak_rss_mb"] for x in bwd) if bwd else nan,
            }
        )
    return rows


def matched(rows: list[dict]) -> list[tuple[dict, dict]]:
    """(peer row, our fastest row at least as accurate) for every peer row (module docstring).

    Fastest by forward+backward time, or by forward time where the peer's forward+backward
    did not run or failed.
    """
    pairs = []
    for peer in (r for r in rows if r["variant"] in PEER):
        key = "fwdbwd_s" if math.isfinite(peer["fwdbwd_s"]) else "fwd_s"
        ours = [
            r
            for r in rows
            if r["variant"] not in PEER
            and r["n"] == peer["n"]
            and r["nrmse"] <= peer["nrmse"]
            and math.isfinite(r[key])
        ]
        if ours:
            pairs.append((peer, min(ours, key=lambda r: r[key])))
    return pairs


def report(rows: list[dict]) -> None:
    """The markdown tables: every variant, then the equal-accuracy pairs."""
    print()
    print("| matrix | code, settings | signal NRMSE | fwd (s) | fwd MB | fwd+bwd (s) | fwd+bwd MB |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['n']} | {r['variant']} ({SETTINGS[r['variant']]}) | {r['nrmse']:.1e} | {r['fwd_s']:.3f} | "
            f"{r['fwd_mb']:.0f} | {r['fwdbwd_s']:.3f} | {r['fwdbwd_mb']:.0f} |"
        )
    for r in rows:
        if r["variant"] == "mrzero-core-converged":
            print(
                f"\nagreement at {r['n']}x{r['n']}: MRzero-Core converged vs our reference {r['nrmse']:.1e}"
            )
    print()
    print(
        "Equal accuracy: each MRzero-Core setting against our fastest setting with an error at most its own"
        " (ratios ours / MRzero-Core; goal <= 0.5 for fwd+bwd time and memory)"
    )
    print("| matrix | MRzero-Core (NRMSE) | ours (NRMSE) | fwd time | fwd+bwd time | fwd+bwd memory |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for peer, ours in matched(rows):
        names = (f"{r['variant']} ({r['nrmse']:.1e})" for r in (peer, ours))
        ratios = (ours[k] / peer[k] for k in ("fwd_s", "fwdbwd_s", "fwdbwd_mb"))
        cells = [*names, *(f"{x:.2f}" if math.isfinite(x) else "-" for x in ratios)]
        print(f"| {peer['n']} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96])
    parser.add_argument(
        "--variants", nargs="+", default=DEFAULT_VARIANTS, choices=[*OURS, *PEER], metavar="VARIANT"
    )
    parser.add_argument("--phantom", choices=("untuned", "brain"), default="untuned")
    parser.add_argument(
        "--isochromat-max",
        type=int,
        default=64,
        help="largest matrix for the (slow) isochromat engine (default 64)",
    )
    parser.add_argument("--spins", type=int, default=256, help="isochromats per voxel (default 256)")
    parser.add_argument(
        "--peer-python", help="Python of a venv with mrzerocore; the peer variants are skipped when absent"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per process (median)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="interleaved rounds of fresh processes (median)"
    )
    parser.add_argument("--forward-only", action="store_true", help="skip the forward+backward cases")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for every case (default 1)")
    parser.add_argument("--device", default="cpu", help="device of this project's engines (cpu, cuda)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per case before giving up")
    parser.add_argument(
        "--memory-limit-gb",
        type=float,
        default=8.0,
        help="address-space cap of every case process; a case needing more fails (default 8)",
    )
    parser.add_argument(
        "--convergence", type=int, metavar="N", help="only show the isochromat convergence at NxN"
    )
    parser.add_argument("--worker", nargs=4, metavar=("VARIANT", "N", "MODE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    torch.set_num_threads(args.threads)
    if args.convergence:
        convergence(args.convergence, args.phantom, [64, 256, 1024, 4096])
        return 0
    variants = list(args.variants)
    if not (args.peer_python and Path(args.peer_python).exists()):
        print(f"peer Python {args.peer_python} not found: MRzero-Core variants skipped")
        variants = [v for v in variants if v not in PEER]
    print("command: " + " ".join([Path(sys.executable).name, *sys.argv]))
    print(
        f"phantom {args.phantom}, torch threads {args.threads}, device {args.device}, median of "
        f"{args.repeats} repeats x {args.rounds} round(s); load average at start "
        + " ".join(f"{x:.1f}" for x in os.getloadavg())
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            rows += measure(args, n, variants, Path(tmp))
    report(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
