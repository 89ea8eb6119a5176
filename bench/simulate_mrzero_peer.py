"""Run one bench case in MRzero-Core 1.2 (the peer), as a black box through its public API.

Executed by ``bench/simulate.py`` with the peer's own Python (a separate venv holding
``mrzerocore``), so it imports nothing from this project. Reads the case (sequence tensors and
phantom maps in this project's units) from an ``.npz``, maps them onto MRzero-Core's
``Sequence``/``VoxelGridPhantom`` (box-shaped voxels, as this project's engines model them),
runs its pre-pass (``compute_graph_ext``) and ``execute_graph`` forward or forward+backward
(gradient w.r.t. all flip angles and gradient moments), and prints one JSON line: the median
seconds (phantom build, graph and execution included) and the peak resident size over the
size before the first run (``bench/peak_rss.py``).

Same voxel model: ``compute_graph`` passes the phantom's Nyquist frequency to the pre-pass,
which then drops every state dephased beyond it. That is right for its default sinc-shaped
voxels (whose spectrum ends there) but not for box voxels, whose ``sinc(k w)`` dephasing still
lets such states (a 1.5 cycles/pixel spoiler, say) refocus and emit. With ``--prepass-nyquist
off`` (the default) the pre-pass gets an infinite Nyquist frequency, as ``compute_graph_ext``
documents; everything else (mean T1/T2/T2'/D, size, B1 table) is what ``compute_graph`` passes.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import peak_rss
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


def prepass(mr0, seq, data, args: argparse.Namespace):
    """MRzero-Core's phase distribution graph, with or without its Nyquist cut (module docstring)."""
    if args.prepass_nyquist == "on":
        return mr0.compute_graph(seq, data, args.max_states, args.min_state_mag)
    means = [float(torch.mean(t)) for t in (data.T1, data.T2, data.T2dash, data.D)]
    return mr0.compute_graph_ext(
        seq,
        *means,
        args.max_states,
        args.min_state_mag,
        nyquist=(float("inf"),) * 3,
        size=data.size.tolist(),
        avg_b1_trig=data.avg_B1_trig,
    )


def run_once(mr0, case: dict, args: argparse.Namespace) -> torch.Tensor:
    """One simulation (and backward pass); its objects are freed on return, before the next run."""
    grad = args.mode == "fwdbwd"
    with torch.set_grad_enabled(grad):
        seq, data, flips, moments = build(case, grad)
        graph = prepass(mr0, seq, data, args)
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
    return signal.detach()


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
        "--max-states", type=int, default=200, help="pre-pass max_state_count (its default 200)"
    )
    parser.add_argument(
        "--min-state-mag", type=float, default=1e-4, help="pre-pass min_state_mag (its default 1e-4)"
    )
    parser.add_argument(
        "--prepass-nyquist",
        choices=("off", "on"),
        default="off",
        help="off: no Nyquist cut in the pre-pass (box voxels, as ours; default); on: compute_graph's cut",
    )
    args = parser.parse_args()
    case = dict(np.load(args.case))
    import MRzeroCore as mr0

    torch.set_num_threads(args.threads)
    before = peak_rss.reset()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        signal = run_once(mr0, case, args)
        times.append(time.perf_counter() - start)
    seconds = sorted(times)[len(times) // 2]
    peak_mb = peak_rss.increase_mb(before)
    if args.signal_out:
        np.save(args.signal_out, signal.reshape(-1).numpy().astype(np.complex64))
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_mb}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
