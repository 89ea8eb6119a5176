"""Benchmark the simulation engines against MRzero-Core 1.2 on spoiled GRE of the brain phantom.

For each matrix (default 32, 64, 128) the Cartesian RF- and gradient-spoiled GRE
(``mrzero.sequences.builders.gre.flash``: TE 5 ms, TR 12 ms, flip 10 deg) is simulated on the embedded
brain phantom by the fast engine, the isochromat engine and, when ``--peer-python`` points to a
Python with ``mrzerocore`` installed, MRzero-Core (``bench/simulate_mrzero_peer.py``). Every
case runs in a fresh subprocess so that its peak memory (``ru_maxrss`` increase over the state
before the first run) is its own; times are medians of ``--repeats`` runs, forward only and
forward+backward (gradient of ``sum |s|^2`` w.r.t. all flip angles and gradient moments).
Variants of the fast engine: its defaults, ``checkpointing=True``, and ``tolerance=1e-3``
(states pruned below 1e-3 of the largest PD: less accuracy for time, still far more accurate
than MRzero-Core's defaults; the error column says how much).
Errors are normalised RMSEs against the converged reference: the fast engine in float64 without
pruning (its agreement with many-spin isochromats is tested in
``tests/sequences/test_engines_agreement.py`` and shown by ``--convergence``).

    .venv/bin/python bench/simulate.py --peer-python /tmp/mrzero-bench-venv/bin/python
    .venv/bin/python bench/simulate.py --convergence 32   # isochromat error vs spin count
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mrzero.sequences.builders.gre import flash  # noqa: E402
from mrzero.sequences.phantoms.brain import brain_phantom  # noqa: E402
from mrzero.sequences.simulate import simulate  # noqa: E402

PEER_SCRIPT = Path(__file__).with_name("simulate_mrzero_peer.py")
#: Benchmarked variants of this project's engines: name -> (engine, options).
VARIANTS = {
    "fast": ("fast", {}),
    "fast-checkpointing": ("fast", {"checkpointing": True}),
    "fast-tol1e-3": ("fast", {"tolerance": 1e-3}),
    "isochromat": ("isochromat", {}),
}


def case(n: int, dtype: torch.dtype = torch.float32, device: str = "cpu"):
    """The benchmark's sequence and phantom at matrix ``n``."""
    seq = flash(n, te=5e-3, tr=12e-3, flip=math.radians(10), dtype=dtype, device=device)
    return seq, brain_phantom((n, n), dtype=dtype, device=device)


def run_ours(n: int, engine: str, mode: str, repeats: int, options: dict, device: str) -> dict:
    """One case of this project's engines, in this (fresh) process."""
    seq, phantom = case(n, device=device)
    cuda = device.startswith("cuda")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times, signal = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        if mode == "fwd":
            with torch.no_grad():
                signal = simulate(seq, phantom, engine, **options)
        else:
            flip = seq.flip.clone().requires_grad_(True)
            moment = seq.moment.clone().requires_grad_(True)
            seq_g = type(seq)(**{**seq.__dict__, "flip": flip, "moment": moment})
            signal = simulate(seq_g, phantom, engine, **options)
            (signal.abs() ** 2).sum().backward()
            assert flip.grad is not None and moment.grad is not None
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak_mb = (
        torch.cuda.max_memory_allocated() / 2**20
        if cuda
        else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024.0
    )
    return {
        "seconds": statistics.median(times),
        "peak_mb": peak_mb,
        "signal": signal.detach().cpu()[0].numpy().astype(np.complex64),
    }


def reference(n: int) -> np.ndarray:
    """Converged reference signal: the fast engine in float64 without pruning."""
    seq, phantom = case(n, dtype=torch.float64)
    with torch.no_grad():
        return simulate(seq, phantom, "fast", tolerance=1e-9, max_states=100000)[0].numpy()


def nrmse(signal: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(signal - ref) / np.linalg.norm(ref))


def subprocess_case(args: argparse.Namespace, n: int, engine: str, mode: str, workdir: Path) -> dict | None:
    """Run one case in a fresh process (ours or the peer); None when it failed (reason printed)."""
    out = workdir / f"{engine}_{n}_{mode}.npy"
    if engine == "mrzero-core":
        seq, phantom = case(n)
        npz = workdir / f"case_{n}.npz"
        np.savez(
            npz,
            flip=seq.flip.numpy(),
            rf_phase=seq.rf_phase.numpy(),
            duration=seq.duration.numpy(),
            moment=seq.moment.numpy(),
            adc=seq.adc.numpy(),
            adc_phase=seq.adc_phase.numpy(),
            fov=np.array(phantom.fov),
            **{k: getattr(phantom, k).numpy() for k in ("pd", "t1", "t2", "t2dash", "b0", "b1")},
        )
        cmd = [
            args.peer_python,
            str(PEER_SCRIPT),
            str(npz),
            "--mode",
            mode,
            "--repeats",
            str(args.repeats),
            "--threads",
            str(args.threads),
            "--signal-out",
            str(out),
        ]
    else:
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            engine,
            str(n),
            mode,
            str(out),
            "--repeats",
            str(args.repeats),
            "--threads",
            str(args.threads),
            "--spins",
            str(args.spins),
            "--device",
            args.device,
        ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        reason = " | ".join(proc.stderr.strip().splitlines()[-3:]) or f"exit status {proc.returncode}"
        print(f"  {engine} {n} {mode} failed: {reason}", flush=True)
        return None
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["signal"] = np.load(out)
    return result


def worker(args: argparse.Namespace) -> int:
    variant, n, mode, out = args.worker
    torch.set_num_threads(args.threads)
    engine, options = VARIANTS[variant]
    options = {**options, "spins": args.spins} if engine == "isochromat" else options
    result = run_ours(int(n), engine, mode, args.repeats, options, args.device)
    np.save(out, result.pop("signal"))
    result["peak_rss_mb"] = result.pop("peak_mb")
    print(json.dumps(result))
    return 0


def convergence(n: int, spins: list[int]) -> None:
    """Isochromat engine: error against the reference as the spin count grows."""
    ref = reference(n)
    seq, phantom = case(n)
    print(f"isochromat convergence, {n}x{n} brain GRE, NRMSE vs the converged reference:")
    for s in spins:
        start = time.perf_counter()
        with torch.no_grad():
            sig = simulate(seq, phantom, "isochromat", spins=s)[0].numpy()
        seconds = time.perf_counter() - start
        print(f"  spins {s:6d}: {100 * nrmse(sig, ref):6.3f} %  ({seconds:.1f} s)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--engines", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument(
        "--isochromat-max",
        type=int,
        default=64,
        help="largest matrix for the (slow) isochromat engine (default 64)",
    )
    parser.add_argument("--spins", type=int, default=256, help="isochromats per voxel (default 256)")
    parser.add_argument(
        "--peer-python", help="Python of a venv with mrzerocore; the peer column is skipped when absent"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for every case (default 1)")
    parser.add_argument("--device", default="cpu", help="device of this project's engines (cpu, cuda)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per case before giving up")
    parser.add_argument(
        "--convergence", type=int, metavar="N", help="only show the isochromat convergence at NxN"
    )
    parser.add_argument("--worker", nargs=4, metavar=("ENGINE", "N", "MODE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    torch.set_num_threads(args.threads)
    if args.convergence:
        convergence(args.convergence, [64, 256, 1024, 4096])
        return 0
    peer = args.peer_python and Path(args.peer_python).exists()
    if args.peer_python and not peer:
        print(f"peer Python {args.peer_python} not found: MRzero-Core column skipped")
    engines = list(args.engines) + (["mrzero-core"] if peer else [])
    print("command: " + " ".join([Path(sys.executable).name, *sys.argv]))
    print(
        f"torch threads {args.threads}, device {args.device}, median of {args.repeats}; shared noisy machine"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            ref = reference(n)
            for engine in engines:
                if engine == "isochromat" and n > args.isochromat_max:
                    continue
                res = {m: subprocess_case(args, n, engine, m, Path(tmp)) for m in ("fwd", "fwdbwd")}
                if res["fwd"] is None:
                    continue
                nan = float("nan")
                bwd = res["fwdbwd"] or {"seconds": nan, "peak_rss_mb": nan}  # failed: shown as nan
                row = {
                    "n": n,
                    "engine": engine,
                    "fwd_s": res["fwd"]["seconds"],
                    "fwdbwd_s": bwd["seconds"],
                    "fwdbwd_mb": bwd["peak_rss_mb"],
                    "nrmse": nrmse(res["fwd"]["signal"], ref),
                }
                rows.append(row)
                print(
                    f"  {n:4d} {engine:18s} fwd {row['fwd_s']:8.3f} s  fwd+bwd {row['fwdbwd_s']:8.3f} s  "
                    f"peak {row['fwdbwd_mb']:8.1f} MB  NRMSE {100 * row['nrmse']:.3g} %",
                    flush=True,
                )
    print()
    print(
        "| matrix | engine | forward (s) | forward+backward (s) | peak memory fwd+bwd (MB) | signal NRMSE |"
        " fwd+bwd time / MRzero-Core | memory / MRzero-Core |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        peer_row = next((r for r in rows if r["n"] == row["n"] and r["engine"] == "mrzero-core"), None)
        peer_ok = peer_row is not None and math.isfinite(peer_row["fwdbwd_s"])  # nan: its fwd+bwd failed
        ratio_t = f"{row['fwdbwd_s'] / peer_row['fwdbwd_s']:.2f}" if peer_ok else "-"
        peer_mb = peer_ok and peer_row["fwdbwd_mb"] > 0
        ratio_m = f"{row['fwdbwd_mb'] / peer_row['fwdbwd_mb']:.2f}" if peer_mb else "-"
        print(
            f"| {row['n']} | {row['engine']} | {row['fwd_s']:.3f} | {row['fwdbwd_s']:.3f} | "
            f"{row['fwdbwd_mb']:.0f} | {100 * row['nrmse']:.3g} % | {ratio_t} | {ratio_m} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
