"""RoAR benchmark: full-brain U-Net inference time, and our batched NLLS against SciPy voxel-wise.

1. Inference: the published-size U-Net (width 64, depth 4, ~47 M parameters; random weights,
   the time does not depend on them) on a full brain of ``--slices`` slices of 256 x 192 with
   10 echoes, slice batches of ``--batch``, median of ``--repeats``; the target is < 30 s on
   this CPU. Our torch NLLS on the same volume's brain voxels is timed beside it.
2. NLLS: our batched Levenberg-Marquardt (torch, one thread) against ``scipy.optimize.least_squares``
   (method ``lm``, one call per voxel, the usual voxel-wise analysis) on the same noisy voxels
   of synthetic subjects at SNR 10 with F. SciPy runs on a subset and is extrapolated per voxel
   (said in the output); both report their R2* relative error on that subset, so the speed-up
   is at the same error. The target is >= 50x.

3. F: the distribution over the brain of the F(40 ms) that makes the synthetic data (the
   realistic B0 near the air cavities) and of the F the voxel spread function estimates from
   each subject's complex scan, on the training slab's 35 subjects and the held-out slabs.

Run:  .venv/bin/python bench/roar.py [--parts f nlls inference] [--slices 40] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch
from scipy.optimize import least_squares

from mrzero.pipelines.roar.fitting import fit_nlls
from mrzero.pipelines.roar.signal_model import echo_times
from mrzero.pipelines.roar.synthetic import (
    HELDOUT_SLABS,
    SCANS,
    Scan,
    brain_anatomy,
    heldout_anatomy,
    make_slice_set,
    make_subject,
)
from mrzero.pipelines.roar.unet import RoarUNet, UNetConfig, parameter_count


def _median_time(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def bench_inference(slices: int, batch: int, repeats: int) -> dict[str, float]:
    volume = torch.rand(slices, 10, 256, 192)
    result = {}
    for name, cfg in (("published", UNetConfig()), ("shipped small", UNetConfig(width=16, depth=3))):
        model = RoarUNet(cfg).eval()

        @torch.no_grad()
        def run(model: RoarUNet = model) -> None:
            for i in range(0, slices, batch):
                model(volume[i : i + batch])

        with torch.no_grad():
            model(volume[:1])  # warm-up
        median, times = _median_time(run, repeats)
        print(
            f"U-Net {name} ({parameter_count(model) / 1e6:.1f} M parameters), "
            f"{slices} x 256 x 192 x 10 echoes, "
            f"batch {batch}: median {median:.1f} s over {repeats} runs {[round(t, 1) for t in times]} "
            f"(target < 30 s)"
        )
        result[name] = median
    return result


def _scipy_fit(y: np.ndarray, te: np.ndarray, f: np.ndarray, start: tuple[float, float]) -> float:
    def residual(p: np.ndarray) -> np.ndarray:
        return p[0] * np.exp(-p[1] * te) * f - y

    def jacobian(p: np.ndarray) -> np.ndarray:
        e = np.exp(-p[1] * te) * f
        return np.stack([e, -te * p[0] * e], axis=1)

    return float(least_squares(residual, np.array(start), jac=jacobian, method="lm").x[1])


def bench_nlls(scipy_voxels: int, size: int) -> dict[str, float]:
    te = echo_times()
    data = make_slice_set(brain_anatomy(size), list(range(6)), [10.0], seed=0, noise_seed=3)
    m = data.mask
    y = data.noisy.transpose(0, 1)[:, m]
    f = data.f.transpose(0, 1)[:, m]
    truth = data.r2s[m]
    n = y.shape[1]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # SciPy fits on one core: compare per core
    ours_s, times = _median_time(lambda: fit_nlls(y, te, f), 3)
    _, ours = fit_nlls(y, te, f)
    torch.set_num_threads(threads)
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:scipy_voxels]
    yn, fn, ten = y[:, idx].double().numpy(), f[:, idx].double().numpy(), te.double().numpy()
    start = time.perf_counter()
    theirs = np.array(
        [_scipy_fit(yn[:, k], ten, fn[:, k], (float(yn[0, k]) * 1.1, 20.0)) for k in range(len(idx))]
    )
    scipy_per_voxel = (time.perf_counter() - start) / len(idx)
    scipy_s = scipy_per_voxel * n
    sub = truth[idx].double().numpy()
    re_ours = float(np.linalg.norm(ours[idx].double().numpy() - sub) / np.linalg.norm(sub))
    re_theirs = float(np.linalg.norm(np.clip(theirs, 0, 250) - sub) / np.linalg.norm(sub))
    agree = float(np.median(np.abs(ours[idx].double().numpy() - np.clip(theirs, 0, 250))))
    print(
        f"NLLS on {n} brain voxels (SNR 10, with F): ours (torch LM, batched, 1 thread) "
        f"median {ours_s:.2f} s "
        f"{[round(t, 2) for t in times]}; SciPy least_squares voxel-wise "
        f"{scipy_per_voxel * 1e3:.2f} ms/voxel on {len(idx)} voxels, extrapolated {scipy_s:.1f} s; "
        f"speed-up {scipy_s / ours_s:.0f}x (target >= 50x)"
    )
    print(
        f"  same error: R2* RE on the SciPy subset ours {100 * re_ours:.2f} %, "
        f"SciPy {100 * re_theirs:.2f} %; median |ours - SciPy| {agree:.3g} 1/s"
    )
    return {"nlls_ours_s": ours_s, "nlls_scipy_s": scipy_s, "speedup": scipy_s / ours_s}


def bench_f(subjects: int, size: int, scan: Scan = "slice") -> None:
    """Quantiles of F(40 ms) in the brain (the data's and the VSF estimate) and their difference,
    for subjects scanned as ``scan`` (``synthetic.make_subject``)."""
    levels = torch.tensor([0.01, 0.05, 0.1, 0.25, 0.5])
    anatomies = {"training slab": brain_anatomy(size)}
    anatomies.update({f"held-out {s}": heldout_anatomy(size, s) for s in HELDOUT_SLABS})
    for name, anatomy in anatomies.items():
        true, est, diff = [], [], []
        for index in range(subjects):
            s = make_subject(anatomy, index, scan=scan)
            true.append(s.f[-1][s.mask])
            est.append(s.f_vsf[-1][s.mask])
            diff.append((s.f_vsf - s.f)[:, s.mask].abs().flatten())
        t, e, d = torch.cat(true), torch.cat(est), torch.cat(diff)
        print(
            f"{name}, {scan} scan, {subjects} subjects, {t.numel()} brain voxels: F(40 ms) quantiles "
            f"{[round(v, 3) for v in t.quantile(levels).tolist()]} at {levels.tolist()}; "
            + ", ".join(f"F < {c} in {100 * float((t < c).float().mean()):.1f} %" for c in (0.9, 0.5, 0.2))
        )
        print(
            f"  VSF estimate: F(40 ms) quantiles {[round(v, 3) for v in e.quantile(levels).tolist()]}; "
            f"|F_vsf - F| over all echoes: mean {float(d.mean()):.4f}, 99th percentile "
            f"{float(d.quantile(0.99)):.3f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=40, help="slices of the full-brain volume")
    parser.add_argument("--batch", type=int, default=4, help="slices per U-Net call")
    parser.add_argument("--repeats", type=int, default=3, help="inference repeats (median)")
    parser.add_argument("--scipy-voxels", type=int, default=400, help="voxels SciPy fits (extrapolated)")
    parser.add_argument("--size", type=int, default=128, help="matrix of the synthetic NLLS subjects")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads of the U-Net runs")
    parser.add_argument(
        "--parts", nargs="+", choices=("f", "nlls", "inference"), default=["f", "nlls", "inference"]
    )
    parser.add_argument("--f-subjects", type=int, default=35, help="subjects per anatomy for the F part")
    parser.add_argument(
        "--scan", choices=SCANS, default="slice", help="how the F part's subjects are scanned (docs/roar.md)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print("command:", " ".join(["python", "bench/roar.py", *(argv if argv is not None else sys.argv[1:])]))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; shared, noisy machine: "
        "compare ratios, not absolute times"
    )
    if "f" in args.parts:
        bench_f(args.f_subjects, 64, args.scan)
    if "nlls" in args.parts:
        bench_nlls(args.scipy_voxels, args.size)
    if "inference" in args.parts:
        bench_inference(args.slices, args.batch, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
