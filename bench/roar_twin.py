"""RoAR on digital-twin mGRE scans: the ``roar`` pipeline's R2* against voxel-wise NLLS, both
scored against the brain phantom's R2* = 1/T2 + 1/T2'.

The twin runs a RoAR bundle's (``--bundle``, default the shipped one) mGRE ``.seq`` file (64 x 64,
10 echoes, TE 4..40 ms) on the brain phantom (slice 3, its B0 and T2') with the fast simulation
engine and 4 loop coils, at each ``--snr`` (twin definition: RMS k-space signal over noise std);
the raw data go through the ``roar`` pipeline (offline, the same code the server runs, with the
bundle deployed in a temporary store so that the scan's signature finds its network), and NLLS
(``fit_nlls``, no F) is fitted to the pipeline's own echo images. Relative error
||r - r_true|| / ||r_true|| over the voxels that are at least half tissue; a constant map at the
true median is the floor any map must beat. Writes a figure (echo 1, truth, RoAR, NLLS,
|RoAR - truth|, one row per SNR).

    .venv/bin/python bench/roar_twin.py --snr 100 2 --figure docs/roar_twin.png
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mrzero.pipelines.base import Context
from mrzero.pipelines.registry import get
from mrzero.pipelines.roar.bundle import SHIPPED_BUNDLE
from mrzero.pipelines.roar.fitting import fit_nlls
from mrzero.sequences.bundle import deploy_bundle
from mrzero.sequences.digital_twin import twin_scan
from mrzero.sequences.phantoms.brain import brain_tissue_fractions


def relative_error(estimate: np.ndarray, truth: np.ndarray, where: np.ndarray) -> float:
    return float(np.linalg.norm(estimate[where] - truth[where]) / np.linalg.norm(truth[where]))


def run(snr: float, coils: int, bundle: Path, store: Path) -> dict:
    """One twin scan of ``bundle`` at ``snr`` (its network deployed in ``store``): maps, truth, errors."""
    start = time.perf_counter()
    scan = twin_scan(bundle, "brain", n_coils=coils, snr=snr, seed=3)
    simulated = time.perf_counter() - start
    start = time.perf_counter()
    context = Context(header=scan.header, bundle_store=store, pipeline_name="roar")
    images = list(get("roar").run(iter(scan.acquisitions), context))
    pipeline = time.perf_counter() - start
    echoes = np.stack([im.data[0, 0] for im in images if im.image_series_index == 1])
    r2 = next(im for im in images if im.image_series_index == 3).data[0, 0]
    te = torch.tensor(scan.protocol["head"]["config"]["te_ms"]) * 1e-3
    r2_nlls = fit_nlls(torch.from_numpy(echoes), te)[1].numpy()
    ph = scan.phantom
    truth = (1 / ph.t2 + torch.where(ph.t2dash > 0, 1 / ph.t2dash.clamp_min(1e-9), torch.zeros(()))).numpy()
    brain = (sum(brain_tissue_fractions(tuple(ph.shape)).values()) > 0.5).numpy()
    constant = np.full_like(truth, np.median(truth[brain]))
    return {
        "snr": snr,
        "echo1": echoes[0],
        "truth": truth,
        "brain": brain,
        "roar": r2,
        "nlls": r2_nlls,
        "mask": r2 != 0,
        "re_roar": relative_error(r2, truth, brain),
        "re_nlls": relative_error(r2_nlls, truth, brain),
        "re_constant": relative_error(constant, truth, brain),
        "simulate_s": simulated,
        "pipeline_s": pipeline,
    }


def figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(len(rows), 5, figsize=(13, 2.8 * len(rows)), squeeze=False)
    for ax, row in zip(axes, rows, strict=True):
        panels = [
            (row["echo1"], f"echo 1, twin SNR {row['snr']:g}", "gray", None),
            (np.where(row["brain"], row["truth"], 0), "phantom R2* = 1/T2 + 1/T2'", "magma", (0, 30)),
            (row["roar"], f"RoAR (RE {100 * row['re_roar']:.1f} %)", "magma", (0, 30)),
            (
                np.where(row["mask"], row["nlls"], 0),
                f"NLLS (RE {100 * row['re_nlls']:.1f} %)",
                "magma",
                (0, 30),
            ),
            (np.abs(row["roar"] - row["truth"]) * row["brain"], "|RoAR - phantom|", "viridis", (0, 10)),
        ]
        for a, (image, title, cmap, limits) in zip(ax, panels, strict=True):
            shown = a.imshow(image, cmap=cmap, vmin=limits and limits[0], vmax=limits and limits[1])
            a.set_title(title, fontsize=8)
            a.axis("off")
            if limits:
                fig.colorbar(shown, ax=a, fraction=0.046, label="1/s")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--snr", type=float, nargs="+", default=[100.0, 2.0], help="twin SNRs (default 100 2)")
    p.add_argument("--coils", type=int, default=4, help="receive coils (default 4)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--figure", type=Path, default=None, help="write the figure here")
    p.add_argument(
        "--bundle", type=Path, default=SHIPPED_BUNDLE, help="RoAR bundle to scan and map (default: shipped)"
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    with tempfile.TemporaryDirectory() as store:
        deploy_bundle(args.bundle, Path(store))
        rows = [run(snr, args.coils, args.bundle, Path(store)) for snr in args.snr]
    columns = (
        "twin SNR",
        "RoAR R2* RE",
        "NLLS R2* RE",
        "constant map RE",
        "mask / brain voxels",
        "simulate",
        "pipeline",
    )
    print("| " + " | ".join(columns) + " |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['snr']:g} | {100 * r['re_roar']:.1f} % | {100 * r['re_nlls']:.1f} % | "
            f"{100 * r['re_constant']:.1f} % | {int(r['mask'].sum())} / {int(r['brain'].sum())} | "
            f"{r['simulate_s']:.1f} s | {r['pipeline_s']:.2f} s |"
        )
    if args.figure:
        figure(rows, args.figure)
        print(f"wrote {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
