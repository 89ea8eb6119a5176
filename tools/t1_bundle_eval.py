"""Score T1-mapping checkpoints on every slice of the brain phantom, per tissue, beside the best constant map.

The ``t1_mapping`` bundle (``sequences/bundles/recipes/t1_mapping.yaml``) is trained on sparse
synthetic samples only, so every brain slice is unseen. For each checkpoint (a trained sequence
with its MLP head, e.g. ``final.pt`` of the joint run and of the textbook-IR run) this simulates
the recipe's forward model on brain slices ``--slices`` at the recipe's matrix, maps T1 with the
head and reports, over the recipe's tissue mask (``pd > target.threshold``), the RMS of the
per-pixel relative errors ``(T1_pred - T1) / T1`` (the training loss's measure): pooled, per
slice and per dominant tissue (grey matter, white matter, CSF by the largest tissue fraction).
The last row is the best constant T1 map, an oracle that knows the truth: the one constant
``c = sum(1/T1) / sum(1/T1^2)`` that minimises the same pooled measure. Scan time per checkpoint
is the sequence's total duration.

With ``--record LABEL OUT.pt`` it writes a copy of checkpoint LABEL whose provenance carries these
held-out figures (``held_out``: the row; ``held_out_error``: the recipe's ``held_out`` slice), so
that the exported bundle's ``protocol.json`` states its error on the brain it never saw.

Run: ``.venv/bin/python tools/t1_bundle_eval.py RECIPE LABEL=CHECKPOINT ... [--json OUT]
[--record LABEL OUT.pt]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from mrzero.core.brain_atlas import N_BRAIN_SLICES, TISSUE_NAMES
from mrzero.core.heads import build_head
from mrzero.sequences.checkpoint import load_checkpoint, save_checkpoint
from mrzero.sequences.phantoms import brain_phantom, brain_tissue_fractions
from mrzero.sequences.training.forward import ForwardModel
from mrzero.sequences.training.recipe import Recipe, load_recipe


def rms(values: torch.Tensor) -> float:
    """Root mean square in percent (NaN for no pixels)."""
    return 100 * float(values.pow(2).mean().sqrt()) if values.numel() else float("nan")


def slice_truth(recipe: Recipe, slice_: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(T1 in s, the recipe's mask, the dominant tissue index) of one brain slice at the recipe's matrix."""
    size = (recipe.matrix, recipe.matrix)
    phantom = brain_phantom(size, slice=slice_)
    fractions = brain_tissue_fractions(size, slice_)
    dominant = torch.stack([fractions[n] for n in TISSUE_NAMES]).argmax(0)
    return phantom.t1, phantom.pd > recipe.target.threshold, dominant


class T1Mapper:
    """A checkpoint's sequence and head with the recipe's forward model: brain slice -> T1 map (s)."""

    def __init__(self, recipe: Recipe, checkpoint: Path) -> None:
        ckpt = load_checkpoint(checkpoint)
        if ckpt.head is None or "head_config" not in ckpt.metadata:
            raise SystemExit(f"{checkpoint}: no head in this checkpoint, nothing maps T1")
        self.recipe, self.sequence = recipe, ckpt.sequence
        self.head = build_head(ckpt.metadata["head_config"])
        self.head.load_state_dict(ckpt.head)
        self.head.eval()
        self.forward = ForwardModel.from_recipe(recipe)

    @torch.no_grad()
    def __call__(self, slice_: int) -> torch.Tensor:
        phantom = brain_phantom((self.recipe.matrix, self.recipe.matrix), slice=slice_)
        return self.head(self.forward(self.sequence, phantom))[0]


def scores(tissue: torch.Tensor, per_slice: dict[int, torch.Tensor]) -> dict[str, float]:
    """Pooled, per-tissue and per-slice RMS (%) of the relative errors ``per_slice`` (slice -> pixels)."""
    rel = torch.cat(list(per_slice.values()))
    out = {"all": rms(rel), **{name: rms(rel[tissue == i]) for i, name in enumerate(TISSUE_NAMES)}}
    out.update({f"slice {s}": rms(v) for s, v in per_slice.items()})
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("recipe")
    p.add_argument("checkpoints", nargs="+", help="LABEL=PATH of a checkpoint with a T1 head")
    p.add_argument("--slices", type=int, nargs="+", default=list(range(N_BRAIN_SLICES)))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="write the table as JSON here")
    p.add_argument("--record", nargs=2, metavar=("LABEL", "OUT"), help="checkpoint copy with the figures")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe)
    truths = {s: slice_truth(recipe, s) for s in args.slices}
    t1_all = torch.cat([t1[mask] for t1, mask, _ in truths.values()])
    tissue_all = torch.cat([dom[mask] for _, mask, dom in truths.values()])
    table: dict[str, dict[str, float]] = {}
    for item in args.checkpoints:
        label, _, path = item.partition("=")
        if not path:
            raise SystemExit(f"{item}: expected LABEL=PATH")
        mapper = T1Mapper(recipe, Path(path))
        per_slice = {s: ((mapper(s) - t1) / t1)[mask] for s, (t1, mask, _) in truths.items()}
        table[label] = scores(tissue_all, per_slice)
        table[label]["scan time s"] = float(mapper.sequence.total_duration())
    constant = float((1 / t1_all).sum() / (1 / t1_all).pow(2).sum())
    per_slice = {s: ((constant - t1) / t1)[mask] for s, (t1, mask, _) in truths.items()}
    table[f"best constant T1 = {constant:.3f} s"] = scores(tissue_all, per_slice)
    counts = {name: int((tissue_all == i).sum()) for i, name in enumerate(TISSUE_NAMES)}
    print(
        f"RMS relative T1 error (%) on brain slices {args.slices} at {recipe.matrix}x{recipe.matrix}, "
        f"mask pd > {recipe.target.threshold}: {int(t1_all.numel())} pixels, dominant tissue {counts}"
    )
    columns = list(next(iter(table.values())).keys())
    print(" | ".join(["method", *columns]))
    for label, row in table.items():
        print(" | ".join([label, *(f"{row.get(c, float('nan')):.2f}" for c in columns)]))
    if args.json:
        Path(args.json).write_text(json.dumps({"pixels": counts, "table": table}, indent=1))
    if args.record:
        record(recipe, dict(item.partition("=")[::2] for item in args.checkpoints), table, *args.record)
    return 0


def record(
    recipe: Recipe, paths: dict[str, str], table: dict[str, dict[str, float]], label: str, out: str
) -> None:
    """Write checkpoint ``label`` again to ``out`` with its held-out figures (fractions) in the provenance."""
    if label not in paths:
        raise SystemExit(f"--record {label}: not one of the checkpoints {sorted(paths)}")
    if recipe.held_out is None or recipe.held_out.kind != "brain":
        raise SystemExit("--record: the recipe names no held-out brain slice")
    key = f"slice {recipe.held_out.slice}"
    if key not in table[label]:
        raise SystemExit(f"--record: {key} (the recipe's held_out) was not among --slices")
    ckpt = load_checkpoint(Path(paths[label]))
    row = {k: v / 100 if k != "scan time s" else v for k, v in table[label].items()}
    provenance = dict(ckpt.metadata.get("provenance", {}))
    provenance["held_out"] = {
        "what": f"RMS relative T1 error over pd > {recipe.target.threshold} on brain slices "
        f"never seen in training (tools/t1_bundle_eval.py), pooled, per dominant tissue and per slice",
        **row,
    }
    provenance["held_out_error"] = row[key]
    metadata = {**ckpt.metadata, "provenance": provenance}
    save_checkpoint(out, ckpt.sequence, ckpt.head, metadata, ckpt.figure_png)
    print(f"{out}: {label} with held-out error {100 * row[key]:.2f} % on brain {key}")


if __name__ == "__main__":
    sys.exit(main())
