"""Reconstruction operators against BART, in the same run: time ratios and image errors.

Radial (one coil, ``n`` spokes of ``2n`` samples, 2x oversampled readouts, Shepp-Logan from
``bart phantom``, complex noise 0.5 % of the k-space peak):
  ours ``reconstruct(method="adjoint")`` vs ``bart nufft -a``;
  ours ``reconstruct(method="iterative", iterations=10, density="pipe")`` (the seed's
  iterative adjoint) and ``method="cg"`` (10 CG iterations) vs ``bart nufft -i``.
Cartesian (8 coils, fully sampled): ours ``ifftc`` + ``rss`` vs ``bart fft -u -i 3`` + ``bart rss 8``.

Both run on ``--threads`` CPU threads (default 1). BART runs as a subprocess, so its times
include process start and ``.cfl`` file I/O; ours are in-process from tensors in memory
(this is how each is used: BART from files, ours inline in a pipeline). Times are medians
of ``--repeats`` runs; errors are relative to the phantom after the best complex scalar fit.
Server latency (``--latency-sizes``, default 64 128): a radial bundle (``n`` spokes of ``n``
samples) is deployed to a temporary store, its scan (Shepp-Logan signal, SNR 20, a noise-adjust
scan, packaged by the digital twin's ``raw_data``) is streamed to an in-process server on
127.0.0.1 (pipeline workers on ``--threads`` threads); the latency runs from the moment the last
acquisition was handed to the socket until the server's close (the last image arrives just
before it), for the ``adjoint`` and ``iterative_adjoint`` pipelines, next to the same pipeline
run in this process on the same acquisitions and ``bart nufft -i`` on the same data.
Run: ``.venv/bin/python bench/recon.py [--sizes 64 128 256] [--latency-sizes 64 128]``.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import ismrmrd.xsd as xsd
import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mrzero.core.ops.coils import rss  # noqa: E402
from mrzero.core.ops.encoding import Encoding  # noqa: E402
from mrzero.core.ops.fft import fftc, ifftc  # noqa: E402
from mrzero.core.ops.reconstruct import reconstruct  # noqa: E402
from mrzero.pipelines.bart import read_cfl, run_bart, write_cfl  # noqa: E402

NOISE = 0.005
COILS = 8


def median_time(run: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median wall time of ``repeats`` calls and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def fitted_error(image: np.ndarray, truth: np.ndarray) -> float:
    x, t = image.ravel(), truth.ravel()
    scale = np.vdot(x, t) / np.vdot(x, x)
    return float(np.linalg.norm(scale * x - t) / np.linalg.norm(t))


def noisy(signal: torch.Tensor, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    noise = torch.complex(
        torch.randn(signal.shape, generator=generator), torch.randn(signal.shape, generator=generator)
    ) / math.sqrt(2)
    return signal + NOISE * float(signal.abs().max()) * noise


def radial_trajectory(n: int, spokes: int) -> torch.Tensor:
    angles = torch.arange(spokes, dtype=torch.float64) * math.pi / spokes
    radius = (torch.arange(2 * n, dtype=torch.float64) - n) / 2
    k = torch.stack(
        [
            radius[None] * torch.cos(angles)[:, None],
            radius[None] * torch.sin(angles)[:, None],
            torch.zeros(spokes, 2 * n, dtype=torch.float64),
        ],
        dim=-1,
    )
    return k.reshape(-1, 3).float()


def bench_radial(n: int, work: Path, repeats: int) -> list[dict]:
    run_bart("phantom", "-x", str(n), "phantom", cwd=work)
    truth = read_cfl(work / "phantom").T.copy()
    trajectory = radial_trajectory(n, n)
    signal = noisy(Encoding(trajectory, n).forward(torch.from_numpy(truth).to(torch.complex64)), seed=n)
    spokes, readout = n, 2 * n

    def bart(*flags: str) -> np.ndarray:
        write_cfl(work / "traj", trajectory.numpy().reshape(spokes, readout, 3).transpose(2, 1, 0))
        write_cfl(work / "ksp", signal.numpy().reshape(spokes, readout).T[None])
        run_bart("nufft", *flags, "-d", f"{n}:{n}:1", "traj", "ksp", "out", cwd=work)
        return read_cfl(work / "out").T

    rows = []
    cases = [
        ("adjoint", ["-a"], dict(method="adjoint")),
        ("iterative adjoint, 10 it.", ["-i"], dict(method="iterative", iterations=10, density="pipe")),
        ("CG, 10 it.", ["-i"], dict(method="cg", iterations=10, density="pipe")),
    ]
    for name, flags, kwargs in cases:
        ours_t, ours = median_time(lambda kw=kwargs: reconstruct(signal, trajectory, n, **kw), repeats)
        bart_t, theirs = median_time(lambda f=flags: bart(*f), repeats)
        rows.append(
            dict(
                case=f"radial {n}x{n} ({spokes * readout} samples)",
                op=name,
                peer=f"bart nufft {' '.join(flags)}",
                ours=ours_t,
                bart=bart_t,
                ours_err=fitted_error(ours[0].numpy(), truth),
                bart_err=fitted_error(theirs, truth),
            )
        )
    return rows


def bench_cartesian(n: int, work: Path, repeats: int) -> list[dict]:
    run_bart("phantom", "-x", str(n), "phantom", cwd=work)
    truth = torch.from_numpy(read_cfl(work / "phantom").T.copy())
    y, x = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    angles = torch.arange(COILS) * 2 * math.pi / COILS
    sens = torch.stack([torch.exp(-((x - math.cos(a)) ** 2 + (y - math.sin(a)) ** 2)) for a in angles])
    kspace = noisy(fftc(sens * truth), seed=n).to(torch.complex64)  # [coils, ky, kx]

    def bart() -> np.ndarray:
        write_cfl(work / "ksp", kspace.numpy().transpose(2, 1, 0)[:, :, None, :])  # [x, y, 1, coil]
        run_bart("fft", "-u", "-i", "3", "ksp", "img", cwd=work)
        run_bart("rss", "8", "img", "out", cwd=work)
        return read_cfl(work / "out").T

    ours_t, ours = median_time(lambda: rss(ifftc(kspace)), repeats)
    bart_t, theirs = median_time(bart, repeats)
    reference = rss(sens * truth).numpy()
    return [
        dict(
            case=f"Cartesian {n}x{n}, {COILS} coils",
            op="ifftc + rss",
            peer="bart fft -u -i 3 + rss 8",
            ours=ours_t,
            bart=bart_t,
            ours_err=fitted_error(ours.numpy(), reference),
            bart_err=fitted_error(np.abs(theirs), reference),
        )
    ]


def _timed_items(items: list, marks: dict) -> Iterator:
    """``items``, noting when the consumer asked past the last one (it was written to the socket)."""
    yield from items
    marks["last_sent"] = time.perf_counter()


def bench_server_latency(n: int, work: Path, repeats: int, threads: int) -> list[dict]:
    from mrzero.client import stream
    from mrzero.pipelines import registry
    from mrzero.pipelines.base import Context
    from mrzero.pipelines.mrd_header import parse_header
    from mrzero.sequences.builder_scan import build_sequence
    from mrzero.sequences.bundle import deploy_bundle, write_bundle
    from mrzero.sequences.checkpoint import Checkpoint
    from mrzero.sequences.digital_twin import raw_data, scanned_file
    from mrzero.server.limits import Settings
    from mrzero.server.listener import Server

    bundle, store = work / f"radial{n}", work / f"store{n}"
    seq = build_sequence("radial", n, 0.2, dwell=10e-6)  # 10 us: the echo of a 256-sample spoke fits TE 3 ms
    write_bundle(Checkpoint(seq), bundle, name=f"bench_radial{n}", pipeline="iterative_adjoint")
    deploy_bundle(bundle, store)
    scanned = scanned_file(bundle)
    run_bart("phantom", "-x", str(n), "phantom", cwd=work)
    truth = torch.from_numpy(read_cfl(work / "phantom").T.copy()).to(torch.complex64)
    trajectory = torch.from_numpy(np.load(bundle / "trajectory.npy"))
    signal = Encoding(trajectory, n).forward(truth)
    header, acquisitions, _ = raw_data(scanned, signal, snr=20.0)
    header_xml = xsd.ToXML(header)
    kspace = np.stack([a.data[0] for a in acquisitions[-n:]], axis=1)  # [readout, spokes]
    write_cfl(work / "traj", trajectory.numpy().reshape(n, n, 3).transpose(2, 1, 0))
    write_cfl(work / "ksp", kspace[None])
    server = Server(Settings(port=0, data_dir=work / "journal", bundle_store=store, pipeline_threads=threads))
    server.start()
    rows = []
    try:
        for pipeline in ("adjoint", "iterative_adjoint"):
            latencies = []
            for _ in range(repeats):
                marks: dict = {}
                reply = stream(
                    _timed_items(acquisitions, marks),
                    header_xml,
                    host=server.address[0],
                    port=server.address[1],
                    config=pipeline,
                )
                if reply.errors or len(reply.images) != 1:
                    raise RuntimeError(f"{pipeline}: {reply.texts}")
                latencies.append(time.perf_counter() - marks["last_sent"])
            ctx = Context(header=parse_header(header_xml), pipeline_name=pipeline, bundle_store=store)
            spec = registry.get(pipeline)
            local_t, _ = median_time(lambda c=ctx, s=spec: list(s.run(iter(acquisitions), c)), repeats)
            bart_t, _ = median_time(
                lambda: run_bart("nufft", "-i", "-d", f"{n}:{n}:1", "traj", "ksp", "out", cwd=work), repeats
            )
            rows.append(
                dict(
                    case=f"radial {n}x{n} twin scan, {len(acquisitions)} acquisitions",
                    pipeline=pipeline,
                    latency=statistics.median(latencies),
                    local=local_t,
                    bart=bart_t,
                )
            )
    finally:
        server.stop()
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="*",
        default=[64, 128, 256],
        help="image matrix sizes of the operator part (none: skip it)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case (median reported)")
    parser.add_argument(
        "--latency-sizes",
        type=int,
        nargs="*",
        default=[64, 128],
        help="radial matrix sizes of the server latency part (none: skip it)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for torch and for BART (OMP_NUM_THREADS); one thread keeps "
        "the comparison fair and stable on a shared machine",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    print("command:", " ".join([Path(sys.argv[0]).as_posix(), *(argv if argv is not None else sys.argv[1:])]))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {run_bart('version').strip()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in tqdm(args.sizes, desc="sizes", file=sys.stderr):
            rows += bench_cartesian(n, Path(tmp), args.repeats)
            rows += bench_radial(n, Path(tmp), args.repeats)
    if rows:
        print("| case | ours | peer | ours (s) | BART (s) | ours/BART | error ours | error BART |")
        print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['case']} | {r['op']} | {r['peer']} | {r['ours']:.4f} | {r['bart']:.4f} | "
            f"{r['ours'] / r['bart']:.2f} | {r['ours_err']:.4f} | {r['bart_err']:.4f} |"
        )
    if not args.latency_sizes:
        return
    with tempfile.TemporaryDirectory() as tmp:
        latency = [
            row
            for n in tqdm(args.latency_sizes, desc="latency", file=sys.stderr)
            for row in bench_server_latency(n, Path(tmp), args.repeats, args.threads)
        ]
    print()
    print(
        "| scan | pipeline | server latency (s) | same pipeline in-process (s) | latency/in-process "
        "| bart nufft -i (s) | latency/BART |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in latency:
        print(
            f"| {r['case']} | {r['pipeline']} | {r['latency']:.4f} | {r['local']:.4f} | "
            f"{r['latency'] / r['local']:.2f} | {r['bart']:.4f} | {r['latency'] / r['bart']:.2f} |"
        )


if __name__ == "__main__":
    main()
