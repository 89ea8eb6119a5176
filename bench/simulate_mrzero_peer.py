"""Run one bench case in MRzero-Core 1.2 (the peer), as a black box through its public API.

Executed by ``bench/simulate.py`` with the peer's own Python (a separate venv holding
``mrzerocore``), so it imports nothing from this project. Reads the case (sequence tensors and
phantom maps in this project's units) from an ``.npz``, maps them onto MRzero-Core's
``Sequence``/``VoxelGridPhantom`` (box-shaped voxels, as this project's engines model them),
runs ``compute_graph`` + ``execute_graph`` forward or forward+backward (gradient w.r.t. all flip
angles and gradient moments), and prints one JSON line: the median seconds (phantom build,
graph and execution included) and the peak RSS increase (``ru_maxrss``) over the process's
state before the first run.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import torch


def build(case: dict, grad: bool):
    import MRzeroCore as mr0

    flips, moments = [], []
    seq = mr0.Sequence()
    r_count, e_count = case["duration"].shape
    for r in range(r_count):
        rep = seq.new_rep(e_count)
        rep.pulse.usage = mr0.PulseUsage.EXCIT
        flip = torch.tensor(float(case["flip"][r]), requires_grad=grad)
        rep.pulse.angle = flip
        rep.pulse.phase = torch.tensor(float(case["rf_phase"][r]))
        rep.event_time[:] = torch.as_tensor(case["duration"][r], dtype=torch.float32)
        gradm = torch.as_tensor(case["moment"][r], dtype=torch.float32).clone().requires_grad_(grad)
        rep.gradm = gradm
        adc = torch.as_tensor(case["adc"][r])
        rep.adc_usage[adc] = 1
        # MRzero-Core demodulates with e^{+i adc_phase}; pi aligns its signal with ours (checked
        rep.adc_phase[adc] = float(np.pi - case["adc_phase"][r])
        flips.append(flip)
        moments.append(gradm)

    # maps are [ny, nx] here, (x, y, z) there
    def grid(name: str) -> torch.Tensor:
        return torch.as_tensor(case[name].T[:, :, None].copy(), dtype=torch.float32)

    # T2' = 0 means "no T2' dephasing" here; MRzero-Core needs a (long) time
    case = dict(case, t2dash=np.where(case["t2dash"] > 0, case["t2dash"], 1e6))
    ny, nx = case["pd"].shape
    fov = case["fov"]
    affine = torch.eye(4)
    affine[0, 0], affine[1, 1], affine[2, 2] = fov[0] * 1e3 / nx, fov[1] * 1e3 / ny, fov[2] * 1e3
    phantom = mr0.VoxelGridPhantom(
        PD=grid("pd"),
        T1=grid("t1"),
        T2=grid("t2"),
        T2dash=grid("t2dash"),
        D=torch.zeros(nx, ny, 1),
        B0=grid("b0"),
        B1=grid("b1")[None],
        coil_sens=torch.ones(1, nx, ny, 1),
        affine=affine,
    )
    return seq, phantom.build(voxel_shape="box"), flips, moments


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("case", help="input .npz written by bench/simulate.py")
    parser.add_argument("--mode", choices=("fwd", "fwdbwd"), default="fwd")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the median is reported")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--signal-out", help="write the signal ([samples] complex64) here")
    parser.add_argument(
        "--min-signal",
        type=float,
        default=0.01,
        help="execute_graph's min_emitted_signal and min_latent_signal (its default 0.01)",
    )
    parser.add_argument(
        "--max-states", type=int, default=200, help="compute_graph's max_state_count (default 200)"
    )
    args = parser.parse_args()
    case = dict(np.load(args.case))
    import MRzeroCore as mr0

    torch.set_num_threads(args.threads)
    grad = args.mode == "fwdbwd"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        with torch.set_grad_enabled(grad):
            seq, data, flips, moments = build(case, grad)
            graph = mr0.compute_graph(seq, data, max_state_count=args.max_states)
            signal = mr0.execute_graph(
                graph,
                seq,
                data,
                min_emitted_signal=args.min_signal,
                min_latent_signal=args.min_signal,
                print_progress=False,
            )
            if grad:
                (signal.abs() ** 2).sum().backward()
                assert all(f.grad is not None for f in flips) and all(m.grad is not None for m in moments)
        times.append(time.perf_counter() - start)
    seconds = sorted(times)[len(times) // 2]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    if args.signal_out:
        np.save(args.signal_out, signal.detach().reshape(-1).numpy().astype(np.complex64))
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak / 1024.0}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
