"""Table 1 and Figure 4 of the RoAR paper on synthetic test subjects.

For every SNR and seed, the test subjects get fresh noise (N(0, mean S0 / SNR)); each method
maps the normalised noisy echoes to R2*, and the relative error RE = ||r - r_hat|| / ||r||
inside the brain mask is averaged over the test slices, as in the paper. Across seeds the
table gives the mean and a 95 % confidence interval (Student t). A seed changes the noise, and
for network methods given several weight files (one per training seed) also the model.

Methods: the voxel-wise fits (NLLS and ARLO with F estimated by the voxel spread function, and
NLLS without F), the networks (RoAR, supervised), and two constant-map baselines that any method
must beat: the training set's mean R2* per tissue (placed with the test subject's segmentation)
and per slice position.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from scipy import stats
from tqdm import tqdm

from mrzero.pipelines.roar.fitting import fit_arlo, fit_nlls
from mrzero.pipelines.roar.synthetic import Anatomy, Scan, SliceSet, make_slice_set, make_subject
from mrzero.pipelines.roar.train import relative_error
from mrzero.pipelines.roar.unet import RoarUNet

#: The paper's Table 1 (RE in % at SNR 5, 10, 15).
PAPER_TABLE = {
    "NLLS with F": (46.6, 23.8, 15.8),
    "RoAR": (22.0, 17.1, 14.9),
    "Supervised": (22.5, 17.2, 14.9),
}

#: A method maps a slice set (and a seed index) to R2* maps ``[N, H, W]`` in 1/s.
Method = Callable[[SliceSet, int], torch.Tensor]


def nlls_method(te: torch.Tensor, use_f: bool = True) -> Method:
    """Voxel-wise NLLS inside the brain mask, with the data's (VSF) F (the paper's reference) or without F."""

    def run(data: SliceSet, seed: int) -> torch.Tensor:
        m = data.mask
        r2 = torch.zeros(m.shape)
        f = data.f.transpose(0, 1)[:, m] if use_f else None
        _, r2[m] = fit_nlls(data.noisy.transpose(0, 1)[:, m], te, f)
        return r2

    return run


def arlo_method(te: torch.Tensor) -> Method:
    """ARLO with the data's (VSF) F inside the brain mask."""

    def run(data: SliceSet, seed: int) -> torch.Tensor:
        m = data.mask
        r2 = torch.zeros(m.shape)
        _, r2[m] = fit_arlo(data.noisy.transpose(0, 1)[:, m], te, data.f.transpose(0, 1)[:, m])
        return r2.clamp(0.0, 250.0)

    return run


@dataclass
class TrainingMaps:
    """Mean true R2* (1/s) of the training subjects per tissue ``[3]`` and per slice position ``[z]``."""

    per_tissue: torch.Tensor
    per_slice: torch.Tensor


def training_maps(anatomy: Anatomy, subjects: list[int], data_seed: int = 0) -> TrainingMaps:
    """The constant baselines' values, from the truth of the training subjects (inside their masks)."""
    if not subjects:
        raise ValueError("no training subjects")
    tissue_sum, tissue_n = torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    slice_sum = slice_n = None
    for index in subjects:
        s = make_subject(anatomy, index, data_seed)  # the truth, which does not depend on the scan
        r2, m = s.r2s.double(), s.mask
        for k in range(3):
            sel = m & (s.tissue == k)
            tissue_sum[k] += r2[sel].sum()
            tissue_n[k] += sel.sum()
        sums, counts = (r2 * m).sum((1, 2)), m.sum((1, 2)).double()
        slice_sum = sums if slice_sum is None else slice_sum + sums
        slice_n = counts if slice_n is None else slice_n + counts
    if bool((tissue_n == 0).any()) or bool((slice_n == 0).any()):
        raise ValueError("a tissue class or slice position has no training voxels")
    return TrainingMaps((tissue_sum / tissue_n).float(), (slice_sum / slice_n).float())


def constant_tissue_method(maps: TrainingMaps) -> Method:
    """Each voxel gets the training mean R2* of its tissue (the test subject's segmentation)."""

    def run(data: SliceSet, seed: int) -> torch.Tensor:
        return maps.per_tissue[data.tissue.long()] * data.mask

    return run


def constant_slice_method(maps: TrainingMaps) -> Method:
    """Each slice gets the training mean R2* at its slice position (one value per slice)."""

    def run(data: SliceSet, seed: int) -> torch.Tensor:
        if int(data.slice.max()) >= maps.per_slice.numel():
            raise ValueError("test slices beyond the training volume's slice positions")
        return maps.per_slice[data.slice].reshape(-1, 1, 1) * data.mask

    return run


def network_method(models: list[RoarUNet], device: torch.device | str = "cpu", batch: int = 16) -> Method:
    """A U-Net per seed (cycled when fewer models than seeds); the map is masked."""
    if not models:
        raise ValueError("a network method needs at least one model")

    @torch.no_grad()
    def run(data: SliceSet, seed: int) -> torch.Tensor:
        model = models[seed % len(models)].eval().to(device)
        out = [model(data.noisy[i : i + batch].to(device))[:, 1].cpu() for i in range(0, len(data), batch)]
        return torch.cat(out) * data.mask

    return run


@dataclass
class TableResult:
    """RE (fraction) per method, SNR and seed: ``values[method][snr] = [re_seed0, ...]``."""

    values: dict[str, dict[float, list[float]]]

    def summary(self) -> dict[str, dict[float, tuple[float, float]]]:
        """Mean RE and 95 % CI half-width (both %) per method and SNR."""
        out: dict[str, dict[float, tuple[float, float]]] = {}
        for name, per_snr in self.values.items():
            out[name] = {}
            for snr, vals in per_snr.items():
                v = torch.tensor(vals, dtype=torch.float64) * 100
                half = (
                    float(stats.t.ppf(0.975, len(vals) - 1) * v.std() / math.sqrt(len(vals)))
                    if len(vals) > 1
                    else float("nan")
                )
                out[name][snr] = (float(v.mean()), half)
        return out

    def markdown(self) -> str:
        """The table in Markdown, ours beside the paper's figures."""
        summ = self.summary()
        snrs = sorted(next(iter(self.values.values())))
        n = len(next(iter(next(iter(self.values.values())).values())))
        lines = [
            "| method | " + " | ".join(f"SNR={s:g}" for s in snrs) + " |",
            "| --- |" + " --- |" * len(snrs),
        ]
        for name, per in summ.items():
            cells = [
                f"{m:.1f} ± {h:.1f} %" if not math.isnan(h) else f"{m:.1f} %"
                for m, h in (per[s] for s in snrs)
            ]
            paper = PAPER_TABLE.get(name)
            ref = f" (paper {' / '.join(f'{p:.1f}' for p in paper)})" if paper else ""
            lines.append(f"| {name}{ref} | " + " | ".join(cells) + " |")
        lines.append(f"\nmean over test slices; ± is the 95 % CI over {n} seeds")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(
            {k: {str(s): v for s, v in per.items()} for k, per in self.values.items()}, indent=1
        )


Cohort = tuple[Anatomy, list[int]]


def table(
    cohorts: list[Cohort],
    methods: dict[str, Method],
    snrs: tuple[float, ...] = (5, 10, 15),
    seeds: int = 3,
    data_seed: int = 0,
    progress: bool = True,
    scan: Scan = "slice",
) -> TableResult:
    """RE of every method at every SNR for ``seeds`` noise draws of the test subjects.

    ``cohorts`` are (anatomy, subject indices) pairs; the RE is the mean over all their slices;
    ``scan`` is how the subjects are scanned (the networks' training data's)."""
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    if not cohorts:
        raise ValueError("no test cohorts")
    values: dict[str, dict[float, list[float]]] = {name: {float(s): [] for s in snrs} for name in methods}
    jobs = [(seed, float(snr)) for seed in range(seeds) for snr in snrs]
    made: list[dict] = [{} for _ in cohorts]
    for seed, snr in tqdm(jobs, desc="RoAR Table 1", disable=not progress):
        errors: dict[str, list[torch.Tensor]] = {name: [] for name in methods}
        for (anatomy, subjects), cache in zip(cohorts, made, strict=True):
            data = make_slice_set(
                anatomy,
                subjects,
                [snr],
                seed=data_seed,
                noise_seed=1_000 + 97 * seed + int(snr),
                made=cache,
                scan=scan,
            )
            for name, method in methods.items():
                errors[name].append(relative_error(method(data, seed), data.r2s, data.mask))
        for name in methods:
            values[name][snr].append(float(torch.cat(errors[name]).mean()))
    return TableResult(values)


def figure(
    anatomy: Anatomy,
    subject: int,
    methods: dict[str, Method],
    path: Path,
    slices: tuple[int, ...] = (2, 5),
    snrs: tuple[float, ...] = (10, 5),
    data_seed: int = 0,
    r2s_max: float = 50.0,
    scan: Scan = "slice",
) -> None:
    """Like the paper's Fig. 4: echo 1 and true R2*, each method's R2* and |difference| per SNR."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = {
        snr: make_slice_set(anatomy, [subject], [snr], seed=data_seed, noise_seed=7, scan=scan)
        for snr in snrs
    }
    maps = {(snr, name): method(sets[snr], 0) for snr in snrs for name, method in methods.items()}
    cols = 1 + len(snrs) * len(methods)
    fig, axes = plt.subplots(2 * len(slices), cols, figsize=(2.1 * cols, 4.3 * len(slices)), squeeze=False)
    for row, k in enumerate(slices):
        ref = sets[snrs[0]]
        truth, mask = ref.r2s[k], ref.mask[k]
        top, bottom = axes[2 * row], axes[2 * row + 1]
        top[0].imshow(ref.clean[k, 0].numpy(), cmap="gray")
        top[0].set_title("echo 1 (clean)", fontsize=8)
        bottom[0].imshow(truth.numpy(), cmap="inferno", vmin=0, vmax=r2s_max)
        bottom[0].set_title("true R2*", fontsize=8)
        col = 1
        for snr in snrs:
            for name in methods:
                est = maps[(snr, name)][k] * mask
                re = float(relative_error(est[None], truth[None], mask[None])[0]) * 100
                top[col].imshow(est.numpy(), cmap="inferno", vmin=0, vmax=r2s_max)
                top[col].set_title(f"{name}, SNR {snr:g}", fontsize=8)
                top[col].text(2, est.shape[0] - 3, f"RE {re:.1f}%", color="white", fontsize=7)
                bottom[col].imshow(
                    ((est - truth).abs() * mask).numpy(), cmap="inferno", vmin=0, vmax=r2s_max / 2
                )
                bottom[col].set_title("|difference|", fontsize=8)
                col += 1
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        f"R2* (0..{r2s_max:g} 1/s) and |difference| (0..{r2s_max / 2:g} 1/s), test subject {subject}"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
