"""The overview figure of one ``mrzero demo`` bundle: what the server returned beside the truth.

For an image bundle the truth is the training target of the bundle's recipe (the target sequence
simulated on the same phantom, through the same receive coils, root-sum-of-squares combined as the
server combines them; the training target itself is single-coil), compared on magnitudes after a
least-squares scale (the server's images are in their own units); for a map bundle (T1) it is the
phantom's map, compared in tissue.
Each figure shows result, truth and difference with colour bars and units, and the error figures
are returned so that the demo prints them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import ismrmrd
import numpy as np
import torch

from mrzero.core.ops.coils import rss
from mrzero.pipelines.image_files import map_label, plane_values, show_plane
from mrzero.sequences.digital_twin import SHIPPED_BUNDLES, TwinScan
from mrzero.sequences.simulate import simulate

RECIPES = SHIPPED_BUNDLES / "recipes"


@dataclass(frozen=True)
class Truth:
    """What a bundle's scan should give: ``values [n, y, x]``, the tissue mask (maps) and its units."""

    values: np.ndarray
    mask: np.ndarray | None
    label: str


@dataclass(frozen=True)
class Comparison:
    """Error figures of one bundle against its truth."""

    relative_error: float  # ||result - truth|| / ||truth|| (in tissue for maps)
    median_abs_error: float  # in the truth's units
    label: str

    def __str__(self) -> str:
        return (
            f"relative error {100 * self.relative_error:.1f} %, median |error| "
            f"{self.median_abs_error:.4g} ({self.label})"
        )


def scan_truth(scan: TwinScan) -> Truth | None:
    """The truth of a shipped bundle's scan from its recipe; None when the bundle has no recipe here."""
    from mrzero.sequences.training.forward import ForwardModel
    from mrzero.sequences.training.recipe import load_recipe
    from mrzero.sequences.training.targets import build_sequence

    path = RECIPES / f"{scan.protocol['name']}.yaml"
    if not path.is_file():
        return None
    recipe = load_recipe(path)
    phantom = scan.phantom
    if recipe.target.kind == "t1":
        tissue = (phantom.pd > 0).cpu().numpy()
        return Truth((phantom.t1.cpu().numpy() * tissue)[None], tissue, "T1 [s]")
    target = build_sequence(
        recipe.target.builder or recipe.sequence.builder,
        recipe.target.options or recipe.sequence.options,
        recipe.matrix,
        "cpu",
    )
    r = recipe.recon
    forward = ForwardModel(
        recipe.matrix,
        recipe.engine.name,
        dict(recipe.engine.options),
        r.method,
        r.iterations,
        r.density,
        r.split,
    )
    with torch.no_grad():  # the target seen through the same coils, root-sum-of-squares combined
        signal = simulate(target, phantom, engine=forward.engine, **forward.engine_options)
        per_coil = torch.stack([forward.reconstruct(target, coil[None]) for coil in signal])
        values = rss(per_coil).cpu().numpy()
    return Truth(values.reshape(-1, *values.shape[-2:]), None, "target magnitude [a.u.]")


def compare(result: np.ndarray, truth: Truth) -> tuple[np.ndarray, Comparison]:
    """(result in the truth's scale, error figures); images get the least-squares scale, maps none."""
    if truth.mask is None:
        result = result * float((result * truth.values).sum() / max((result * result).sum(), 1e-30))
    keep = (
        np.ones(truth.values.shape, dtype=bool)
        if truth.mask is None
        else np.broadcast_to(truth.mask, truth.values.shape)
    )
    difference = (result - truth.values)[keep]
    relative = float(np.linalg.norm(difference) / max(np.linalg.norm(truth.values[keep]), 1e-30))
    return result, Comparison(relative, float(np.median(np.abs(difference))), truth.label)


def overview_figure(name: str, images: list[ismrmrd.Image], truth: Truth, path: Path) -> Comparison:
    """Write the overview PNG (result, truth, difference per returned image) and return the error figures."""
    from matplotlib.figure import Figure

    result = np.stack([plane_values(im)[0, 0] for im in images])
    scaled, comparison = compare(result, truth)
    label = map_label(images[0])  # None for images: grey, no colour bar
    rows = len(images)
    figure = Figure(figsize=(11, 3.4 * rows), layout="constrained")
    axes = figure.subplots(rows, 3, squeeze=False)
    for row in range(rows):
        shown, wanted = scaled[row], truth.values[row]
        mask = truth.mask
        inside = wanted if mask is None else wanted[mask]
        low, high = float(np.percentile(inside, 1)), float(np.percentile(inside, 99.5))
        show_plane(axes[row, 0], shown, low, high, label, f"{name}: returned by the server", mask)
        show_plane(axes[row, 1], wanted, low, high, label, "truth", mask)
        error = shown - wanted if mask is None else np.where(mask, shown - wanted, np.nan)
        bound = float(np.nanmax(np.abs(error))) or 1.0
        picture = axes[row, 2].imshow(error, cmap="RdBu_r", vmin=-bound, vmax=bound, interpolation="nearest")
        axes[row, 2].set_title(f"difference: {comparison}", fontsize=8)
        axes[row, 2].set_axis_off()
        figure.colorbar(picture, ax=axes[row, 2], fraction=0.046, pad=0.04).set_label(
            f"difference {label or truth.label}", fontsize=8
        )
    figure.suptitle(f"{name}: {'map' if label else 'image'} vs truth vs difference", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    return comparison
