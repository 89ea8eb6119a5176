"""The overview figure of one ``mrzero demo`` bundle: what the server returned beside the truth.

For an image bundle the truth is the training target of the bundle's recipe (the target sequence
simulated on the same phantom, through the same receive coils, root-sum-of-squares combined as the
server combines them; the training target itself is single-coil), compared on magnitudes after a
least-squares scale (the server's images are in their own units), in total and per ring of
k-space (the total hides blur: most of a brain image's energy is at low |k|). For a map bundle
(T1) the truth is the phantom's map, compared inside the recipe's tissue mask (``pd >
target.threshold``, what training scored) by the RMS of the per-pixel relative errors, in all
and per dominant tissue of the brain slice.
Each figure shows result, truth and error at the bundle's matrix with colour bars and units, and
the error figures are returned so that the demo prints them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import ismrmrd
import numpy as np
import torch

from mrzero.core.brain_atlas import DEFAULT_SLICE, TISSUE_NAMES
from mrzero.core.ops.coils import rss
from mrzero.pipelines.image_files import map_label, plane_values, show_plane
from mrzero.sequences.digital_twin import SHIPPED_BUNDLES, TwinScan
from mrzero.sequences.phantoms import brain_tissue_fractions
from mrzero.sequences.simulate import simulate
from mrzero.sequences.training.losses import band_errors

RECIPES = SHIPPED_BUNDLES / "recipes"
IMAGE_LABEL = "magnitude [a.u.]"


@dataclass(frozen=True)
class Truth:
    """What a bundle's scan should give: ``values [n, y, x]``, where a map is compared (``mask``;
    None for images), its units and, for maps of the brain, each dominant tissue's pixels."""

    values: np.ndarray
    mask: np.ndarray | None
    label: str
    tissues: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = "the recipe's target"  # what the image truth is, for the figure's title


@dataclass(frozen=True)
class Comparison:
    """Error figures of one bundle against its truth."""

    relative_error: float  # ||result - truth|| / ||truth|| (in the mask for maps)
    median_abs_error: float  # in the truth's units
    label: str
    rms_relative: float | None = None  # maps: RMS of (result - truth) / truth in the mask
    per_tissue: dict[str, float] = field(default_factory=dict)  # maps: the same per tissue
    bands: dict[str, float] = field(default_factory=dict)  # images: relative error per k-space band
    pixels: int = 0  # pixels compared

    def __str__(self) -> str:
        if self.rms_relative is None:
            bands = ", ".join(f"|k| {name[5:]} {100 * v:.1f} %" for name, v in self.bands.items())
            return (
                f"relative error {100 * self.relative_error:.1f} % (by k-space band: {bands}), "
                f"median |error| {self.median_abs_error:.4g} ({self.label}, {self.pixels} pixels)"
            )
        tissues = ", ".join(f"{name} {100 * v:.1f} %" for name, v in self.per_tissue.items())
        return (
            f"RMS relative error {100 * self.rms_relative:.1f} % ({tissues}), norm-relative "
            f"{100 * self.relative_error:.1f} %, median |error| {self.median_abs_error:.4g} "
            f"({self.label}, {self.pixels} pixels in the mask)"
        )


def dominant_tissues(
    shape: tuple[int, int], slice_: int, mask: np.ndarray, pd: np.ndarray
) -> dict[str, np.ndarray]:
    """Pixels of ``mask`` by their largest tissue fraction in brain slice ``slice_``; refuses a
    phantom whose tissue is not that slice's."""
    fractions = brain_tissue_fractions(shape, slice_)
    stacked = torch.stack([fractions[n] for n in TISSUE_NAMES]).cpu().numpy()
    if not np.array_equal(stacked.sum(0) > 0, pd > 0):
        raise ValueError(f"the scanned phantom is not brain slice {slice_}: its tissue differs")
    dominant = stacked.argmax(0)
    return {name: mask & (dominant == i) for i, name in enumerate(TISSUE_NAMES)}


def scan_truth(scan: TwinScan, brain_slice: int | None = DEFAULT_SLICE) -> Truth | None:
    """The truth of a shipped bundle's scan from its recipe; None when the bundle has no recipe here.
    ``brain_slice``: the brain slice the twin scanned (per-tissue errors of maps), None for no brain."""
    from mrzero.sequences.training.forward import ForwardModel
    from mrzero.sequences.training.recipe import load_recipe
    from mrzero.sequences.training.targets import target_forward, target_sequence

    path = RECIPES / f"{scan.protocol['name']}.yaml"
    if not path.is_file():
        return None
    recipe = load_recipe(path)
    phantom = scan.phantom
    if recipe.target.kind == "t1":
        pd = phantom.pd.cpu().numpy()
        mask = pd > recipe.target.threshold
        tissues = {} if brain_slice is None else dominant_tissues(pd.shape, brain_slice, mask, pd)
        return Truth((phantom.t1.cpu().numpy() * mask)[None], mask, "T1 [s]", tissues)
    target = target_sequence(
        recipe.target, recipe.sequence.builder, recipe.sequence.options, recipe.matrix, "cpu"
    )
    forward = target_forward(recipe.target, ForwardModel.from_recipe(recipe))
    with torch.no_grad():  # the target seen through the same coils, root-sum-of-squares combined
        signal = simulate(target, phantom, engine=forward.engine, **forward.engine_options)
        per_coil = torch.stack([forward.reconstruct(target, coil[None]) for coil in signal])
        values = rss(per_coil).cpu().numpy()
    source = "the recipe's target" + (", ideal spoiling" if recipe.target.spoiling == "ideal" else "")
    return Truth(values.reshape(-1, *values.shape[-2:]), None, IMAGE_LABEL, source=source)


def rms_relative(result: np.ndarray, truth: np.ndarray, keep: np.ndarray) -> float:
    """RMS of the per-pixel relative errors where ``keep`` (NaN for no pixel)."""
    if not keep.any():
        return float("nan")
    return float(np.sqrt(np.mean(((result[keep] - truth[keep]) / truth[keep]) ** 2)))


def compare(result: np.ndarray, truth: Truth) -> tuple[np.ndarray, Comparison]:
    """(result in the truth's scale, error figures); images get the least-squares scale, maps none."""
    if truth.mask is None:
        result = result * float((result * truth.values).sum() / max((result * result).sum(), 1e-30))
        difference = result - truth.values
        relative = float(np.linalg.norm(difference) / max(np.linalg.norm(truth.values), 1e-30))
        bands = band_errors(torch.from_numpy(result), torch.from_numpy(truth.values))
        return result, Comparison(
            relative, float(np.median(np.abs(difference))), truth.label, bands=bands, pixels=result[0].size
        )
    keep = np.broadcast_to(truth.mask, truth.values.shape)
    difference = (result - truth.values)[keep]
    relative = float(np.linalg.norm(difference) / max(np.linalg.norm(truth.values[keep]), 1e-30))
    per_tissue = {
        name: rms_relative(result, truth.values, np.broadcast_to(pixels, truth.values.shape))
        for name, pixels in truth.tissues.items()
        if pixels.any()
    }
    return result, Comparison(
        relative,
        float(np.median(np.abs(difference))),
        truth.label,
        rms_relative=rms_relative(result, truth.values, keep),
        per_tissue=per_tissue,
        pixels=int(truth.mask.sum()),
    )


def overview_figure(name: str, images: list[ismrmrd.Image], truth: Truth, path: Path) -> Comparison:
    """Write the overview PNG (result, truth, error per returned image) and return the error figures."""
    from matplotlib.figure import Figure

    result = np.stack([plane_values(im)[0, 0] for im in images])
    scaled, comparison = compare(result, truth)
    label = map_label(images[0]) or IMAGE_LABEL
    rows = len(images)
    figure = Figure(figsize=(12, 3.6 * rows), layout="constrained")
    axes = figure.subplots(rows, 3, squeeze=False)
    matrix = "x".join(str(n) for n in truth.values.shape[-2:])
    for row in range(rows):
        shown, wanted, mask = scaled[row], truth.values[row], truth.mask
        inside = wanted if mask is None else wanted[mask]
        low, high = float(np.percentile(inside, 1)), float(np.percentile(inside, 99.5))
        for ax, plane, title in (
            (axes[row, 0], shown, f"{name} ({matrix}): returned by the server"),
            (
                axes[row, 1],
                wanted,
                f"truth: {truth.source}" if mask is None else "truth (mask: the recipe's tissue)",
            ),
        ):
            picture = show_plane(ax, plane, low, high, None if mask is None else label, title, mask)
            if mask is None:  # show_plane gives grey images no colour bar
                figure.colorbar(picture, ax=ax, fraction=0.046, pad=0.04).set_label(label, fontsize=8)
        if mask is None:
            error, error_label = shown - wanted, f"difference {label}"
        else:
            error = np.where(mask, 100 * (shown - wanted) / np.where(mask, wanted, 1.0), np.nan)
            error_label = "relative error [%]"
        bound = float(np.nanmax(np.abs(error))) or 1.0
        picture = axes[row, 2].imshow(error, cmap="RdBu_r", vmin=-bound, vmax=bound, interpolation="nearest")
        axes[row, 2].set_title("error", fontsize=8)
        axes[row, 2].set_axis_off()
        figure.colorbar(picture, ax=axes[row, 2], fraction=0.046, pad=0.04).set_label(error_label, fontsize=8)
    figure.suptitle(f"{name}: {comparison}", fontsize=8, wrap=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    return comparison
