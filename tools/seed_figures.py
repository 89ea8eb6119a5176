"""The seed's (MRzero, Loktyushin et al. 2021) Fig. 3-6 experiments: SAR-weight sweeps and brain scores.

``sweep RECIPE --weights W ... --out DIR``: trains RECIPE once per SAR weight ``loss.sar = W``
(``mrzero train``, one thread, into ``DIR/sar_W``), the seed's Fig. 3 trade-off. ``sar-plot DIR
--png OUT``: from those runs, the figure: relative SAR against image error at the last iteration
(every run), and per run the error and relative SAR curves and the final flip train against the
target's. ``brain RECIPE=RUN_DIR ... [--slices ...] [--json OUT]``: scores each run's ``final.pt``
on brain slices (default all 8) against the recipe's target sequence on the same slice, with the
recipe's own forward model (engine, matrix, reconstruction): relative error and error by k-space
band per slice and their mean over the slices the run was not trained on.

Run from the repository root, e.g. ``.venv/bin/python tools/seed_figures.py sweep gre_sar --weights
0.002 0.005 0.02 0.05 --out /tmp/sweep``; see docs/training.md ("Seed experiments").
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from mrzero.core.brain_atlas import N_BRAIN_SLICES  # noqa: E402
from mrzero.sequences.checkpoint import load_checkpoint  # noqa: E402
from mrzero.sequences.phantoms import brain_phantom  # noqa: E402
from mrzero.sequences.training.forward import ForwardModel  # noqa: E402
from mrzero.sequences.training.losses import band_errors, relative_error  # noqa: E402
from mrzero.sequences.training.recipe import load_recipe, recipe_path  # noqa: E402
from mrzero.sequences.training.targets import build_sequence, target_forward, target_sequence  # noqa: E402


def sweep(recipe: str, weights: list[float], out: Path, iterations: int | None) -> list[Path]:
    """Train ``recipe`` once per SAR weight into ``out/sar_W``; returns the run folders."""
    data = yaml.safe_load(recipe_path(recipe).read_text())
    runs, name = [], data["name"]
    for w in weights:
        run = out / f"sar_{w:g}"
        run.mkdir(parents=True, exist_ok=True)
        data["loss"]["sar"] = w
        data["name"] = f"{name}_sar_{w:g}"
        (run / "recipe.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        cmd = [str(Path(sys.executable).parent / "mrzero"), "train", str(run / "recipe.yaml"), "-o", str(run)]
        cmd += ["--threads", "1", "--no-progress"] + (["--iterations", str(iterations)] if iterations else [])
        subprocess.run(cmd, check=True)
        runs.append(run)
    return runs


def split_run(item: str | Path) -> tuple[Path, Path]:
    """``RECIPE=RUN_DIR`` or ``RUN_DIR`` (whose ``recipe.yaml`` sweep wrote) -> (recipe, run)."""
    recipe, _, run = str(item).rpartition("=")
    return (Path(recipe) if recipe else Path(run) / "recipe.yaml"), Path(run)


def run_summary(item: str | Path) -> dict[str, float]:
    """Weight, last iteration's error and relative SAR, and the last evaluation's band errors of a run."""
    recipe, run = split_run(item)
    history = json.loads((run / "history.json").read_text())
    evaluations = json.loads((run / "evaluations.json").read_text())
    weight = yaml.safe_load(recipe.read_text())["loss"]["sar"]
    bands = {k: v for k, v in evaluations[-1].items() if k.startswith("err_k")}
    return {"sar_weight": weight, "error": history[-1]["error"], "sar_rel": history[-1]["sar_rel"], **bands}


def sar_plot(items: list[str | Path], png: Path) -> list[dict[str, float]]:
    """Fig. 3-like figure of runs at several SAR weights: the trade-off curve, the error and SAR
    curves, the final flip trains against the target's and the final k-space sampling."""
    items = sorted(items, key=lambda r: run_summary(r)["sar_weight"])
    rows = [run_summary(r) for r in items]
    fig, ax = plt.subplots(1, 5, figsize=(20, 3.6))
    ax[0].plot([100 * r["error"] for r in rows], [100 * r["sar_rel"] for r in rows], "o-")
    for r in rows:
        ax[0].annotate(f"{r['sar_weight']:g}", (100 * r["error"], 100 * r["sar_rel"]), fontsize=8)
    ax[0].set(xlabel="image error (%)", ylabel="relative SAR (%)", title="trade-off (label: SAR weight)")
    target = None
    for item, r in zip(items, rows, strict=True):
        recipe_file, run = split_run(item)
        history = json.loads((run / "history.json").read_text())
        label = f"w={r['sar_weight']:g}"
        ax[1].plot([100 * h["error"] for h in history], label=label)
        ax[2].plot([100 * h["sar_rel"] for h in history], label=label)
        seq = load_checkpoint(run / "final.pt").sequence
        excitation = seq.adc.any(dim=-1)
        ax[3].plot(torch.rad2deg(seq.flip[excitation]).abs().numpy(), ".", ms=3, label=label)
        k = seq.trajectory().detach()
        ax[4].plot(k[:, 0].numpy(), k[:, 1].numpy(), ".", ms=2, label=label)
        if target is None:
            recipe = load_recipe(recipe_file)
            ref = build_sequence(recipe.sequence.builder, recipe.sequence.options, recipe.matrix, "cpu")
            target = torch.rad2deg(ref.flip[ref.adc.any(dim=-1)]).abs().numpy()
    if target is not None:
        ax[3].plot(target, color="grey", lw=2, label="target")
    ax[1].set(xlabel="iteration", ylabel="image error (%)", title="error")
    ax[2].set(xlabel="iteration", ylabel="relative SAR (%)", title="SAR")
    ax[3].set(xlabel="readout repetition", ylabel="|flip| (deg)", title="final flip train")
    ax[3].legend(fontsize=7)
    ax[4].set(xlabel="kx (cycles/FOV)", ylabel="ky (cycles/FOV)", title="final k-space sampling")
    ax[4].set_aspect("equal")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=80)
    plt.close(fig)
    return rows


@torch.no_grad()
def brain_scores(recipe_file: str, run: Path, slices: list[int]) -> dict[str, object]:
    """Per-slice relative and band errors of ``run/final.pt`` on brain slices against the target."""
    recipe = load_recipe(recipe_file)
    if recipe.head is not None or recipe.target.kind != "sequence":
        raise ValueError(f"{recipe_file}: brain scores need a sequence target and no head")
    trained_on = recipe.phantom.slices if recipe.phantom.kind == "brain" else []
    forward = ForwardModel.from_recipe(recipe)
    target_model = target_forward(recipe.target, forward)
    ref = target_sequence(
        recipe.target, recipe.sequence.builder, recipe.sequence.options, recipe.matrix, "cpu"
    )
    seq = load_checkpoint(run / "final.pt").sequence
    shown = next(s for s in slices if s not in trained_on)
    per_slice, images = {}, {}
    for s in slices:
        phantom = brain_phantom((recipe.matrix, recipe.matrix), slice=s)
        target, pred = target_model(ref, phantom), forward(seq, phantom)
        per_slice[s] = {
            "error": float(relative_error(pred, target, None, recipe.loss.compare)),
            **band_errors(pred, target, None, recipe.loss.compare),
        }
        if s == shown:
            images = {"target": target[0].abs(), "learned": pred[0].abs()}
    unseen = [per_slice[s] for s in slices if s not in trained_on]
    mean = {k: sum(p[k] for p in unseen) / len(unseen) for k in unseen[0]} if unseen else {}
    return {
        "recipe": recipe.name,
        "trained_on_slices": trained_on,
        "slices": per_slice,
        "unseen_mean": mean,
        "shown_slice": shown,
        "ideal_spoiling": recipe.target.spoiling == "ideal",
        "images": images,
        "flips": (torch.rad2deg(seq.flip).abs(), torch.rad2deg(ref.flip).abs()),
    }


def brain_plot(results: list[dict[str, object]], png: Path) -> None:
    """One row per run: its flip train against the target's, its image and the target's on the
    first unseen slice, and the difference, with that slice's error."""
    fig, ax = plt.subplots(len(results), 4, figsize=(13, 3.2 * len(results)), squeeze=False)
    for row, res in zip(ax, results, strict=True):
        learned, target = res["flips"]
        row[0].plot(target.numpy(), color="grey", lw=2, label="target")
        row[0].plot(learned.numpy(), ".-", ms=3, label="learned")
        row[0].set(xlabel="repetition", ylabel="|flip| (deg)", title=res["recipe"])
        row[0].legend(fontsize=7)
        im = res["images"]
        scale = float(im["target"].max())
        s = res["shown_slice"]
        err = 100 * res["slices"][s]["error"]
        target_title = "target" + (" (ideal spoiling)" if res["ideal_spoiling"] else "")
        for a, img, title, gain in (
            (row[1], im["learned"], f"learned, brain slice {s}: {err:.1f} %", 1),
            (row[2], im["target"], target_title, 1),
            (row[3], (im["learned"] - im["target"]).abs(), "|learned - target| x 10", 10),
        ):
            a.imshow(img.numpy(), cmap="gray", vmin=0, vmax=scale / gain)
            a.set_title(title, fontsize=9)
            a.axis("off")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sweep", help="train a recipe once per SAR weight")
    p.add_argument("recipe")
    p.add_argument("--weights", type=float, nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--iterations", type=int)
    p.add_argument("--png", type=Path, help="also draw the sweep figure")
    p = sub.add_parser("sar-plot", help="figure of a SAR sweep")
    p.add_argument("runs", nargs="+", help="RECIPE=RUN_DIR, or a sweep's OUT/sar_W")
    p.add_argument("--png", type=Path, required=True)
    p = sub.add_parser("brain", help="score runs on brain slices")
    p.add_argument("runs", nargs="+", help="RECIPE=RUN_DIR")
    p.add_argument("--slices", type=int, nargs="+", default=list(range(N_BRAIN_SLICES)))
    p.add_argument("--json", type=Path)
    p.add_argument("--png", type=Path, help="flip trains, images and differences on an unseen slice")
    args = parser.parse_args(argv)
    if args.command in ("sweep", "sar-plot"):
        runs = (
            sweep(args.recipe, args.weights, args.out, args.iterations)
            if args.command == "sweep"
            else args.runs
        )
        if args.png:
            for row in sar_plot(runs, args.png):
                print(
                    " ".join(
                        f"{k} {100 * v:.1f} %" if k != "sar_weight" else f"{k} {v:g}" for k, v in row.items()
                    )
                )
        return 0
    results = []
    for item in args.runs:
        recipe_file, run = split_run(item)
        res = brain_scores(str(recipe_file), run, args.slices)
        results.append(res)
        m = res["unseen_mean"]
        print(
            f"{res['recipe']}: trained on slices {res['trained_on_slices']}; unseen slices mean "
            + ", ".join(f"{k} {100 * v:.1f} %" for k, v in m.items())
        )
        for s, e in res["slices"].items():
            print(f"  slice {s}: " + ", ".join(f"{k} {100 * v:.1f} %" for k, v in e.items()))
    if args.json:
        keep = ("recipe", "trained_on_slices", "slices", "unseen_mean")
        args.json.write_text(json.dumps([{k: r[k] for k in keep} for r in results], indent=1))
    if args.png:
        brain_plot(results, args.png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
