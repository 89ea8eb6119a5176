"""Training report figures like the seed's Figure 2 rows, and the final summary (PNG + HTML).

Every snapshot is one row: k-space sampling (ADC positions, coloured by repetition), the
flip-angle train (degrees), the reconstructed image, the target, the loss curve (log scale, with
the relative image error) and the relative SAR curve (percent of the reference sequence's).
Rows are written as ``report/iter_NNNNN.png``; the summary stacks up to five snapshots as
the seed's columns and adds the curves (``summary.png``, ``summary.html``). A quantitative-map
run (T1 target) also gets ``t1_map.png`` (``t1_map_figure``): the learned TI/Trec per block,
true and predicted maps of the held-out phantom, the relative error map and predicted vs true.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from mrzero.sequences.sequence import INVERSION, Sequence  # noqa: E402
from mrzero.sequences.training.hardware import HardwareCheck  # noqa: E402

MAX_SUMMARY_COLUMNS = 5


@dataclass
class Snapshot:
    iteration: int
    kspace: np.ndarray  # [n, 2]
    rep_of_sample: np.ndarray  # [n]
    flips_deg: np.ndarray  # [R]
    image: np.ndarray  # [ny, nx] magnitude
    target: np.ndarray


def band_keys(evaluations: list[dict[str, float]]) -> list[str]:
    """The k-space band error names recorded in ``evaluations`` (``err_k0-4``, ...), in band order."""
    return [k for k in (evaluations[-1] if evaluations else {}) if k.startswith("err_k")]


def _curves(
    ax_loss: plt.Axes, ax_sar: plt.Axes, history: list[dict[str, float]], evaluations: list[dict[str, float]]
) -> None:
    it = [h["iteration"] for h in history]
    ax_loss.semilogy(it, [max(h["loss"], 1e-12) for h in history], lw=0.8, label="loss")
    ax_loss.semilogy(it, [max(h["error"], 1e-12) for h in history], lw=0.8, label="rel. error")
    at = [e["iteration"] for e in evaluations]
    for key in band_keys(evaluations):
        ax_loss.semilogy(
            at,
            [max(e.get(key, 0.0), 1e-12) for e in evaluations],
            "--",
            lw=0.7,
            label=key.replace("err_k", "|k| "),
        )
    ax_loss.set_title("loss / error")
    ax_loss.set_xlabel("iteration")
    ax_loss.legend(
        fontsize=6, title="dashed: band error, |k| in cycles/FOV" if at else None, title_fontsize=6
    )
    ax_sar.plot(it, [100 * h["sar_rel"] for h in history], lw=0.8, color="C3")
    ax_sar.set_title("SAR (% of reference)")
    ax_sar.set_xlabel("iteration")


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _image(ax: plt.Axes, img: np.ndarray, title: str) -> None:
    ax.imshow(img, cmap="gray")
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def _kspace(ax: plt.Axes, snap: Snapshot) -> None:
    ax.scatter(snap.kspace[:, 0], snap.kspace[:, 1], c=snap.rep_of_sample, s=1, cmap="viridis")
    ax.set_aspect("equal")
    ax.set_title(f"k-space, it {snap.iteration} (colour: repetition)", fontsize=8)
    ax.set_xlabel("kx [cycles/FOV]", fontsize=7)
    ax.set_ylabel("ky [cycles/FOV]", fontsize=7)
    ax.tick_params(labelsize=6)


def _summary_figure(
    chosen: list[Snapshot], history: list[dict[str, float]], evaluations: list[dict[str, float]], name: str
) -> plt.Figure:
    """Snapshots as columns (k-space, flip angles, reconstruction), then one row of four full panels:
    target, the last reconstruction's difference from it, loss/error and SAR curves; no empty axes."""
    cols = max(len(chosen), 1)
    fig = plt.figure(figsize=(max(2.6 * cols, 11), 10), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[3, 1.1])
    if chosen:
        axes = top.subplots(3, cols, squeeze=False)
        for c, snap in enumerate(chosen):
            _kspace(axes[0, c], snap)
            _flips(axes[1, c], snap)
            _image(axes[2, c], snap.image, f"recon, it {snap.iteration}")
    row = bottom.subplots(1, 4)
    if chosen:
        _image(row[0], chosen[-1].target, "target")
        difference = chosen[-1].image - chosen[-1].target
        bound = float(np.abs(difference).max()) or 1.0
        shown = row[1].imshow(difference, cmap="RdBu_r", vmin=-bound, vmax=bound)
        row[1].set_title(f"recon - target, it {chosen[-1].iteration}", fontsize=8)
        row[1].axis("off")
        bottom.colorbar(shown, ax=row[1], fraction=0.046, pad=0.04)
    else:
        for ax in row[:2]:
            ax.set_axis_off()
    _curves(row[2], row[3], history, evaluations)
    fig.suptitle(name)
    return fig


def _flips(ax: plt.Axes, snap: Snapshot) -> None:
    ax.plot(snap.flips_deg, ".", ms=2)
    ax.set_title("flip angles (deg)", fontsize=8)
    ax.set_xlabel("repetition", fontsize=7)


class Report:
    """Writes snapshot rows and the summary into ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.snapshots: list[Snapshot] = []

    def snapshot(
        self,
        iteration: int,
        seq: Sequence,
        pred: torch.Tensor,
        target: torch.Tensor,
        history: list[dict[str, float]],
        evaluations: list[dict[str, float]],
    ) -> Path:
        """Draw one row and remember it for the summary; returns the PNG path."""
        reps = torch.arange(seq.n_rep, device=seq.device)[:, None].expand_as(seq.adc)[seq.adc]
        snap = Snapshot(
            iteration,
            seq.trajectory().detach()[:, :2].cpu().numpy(),
            reps.cpu().numpy(),
            np.degrees(seq.flip.detach().cpu().numpy()),
            pred.detach()[0].abs().cpu().numpy(),
            target.detach()[0].abs().cpu().numpy(),
        )
        self.snapshots.append(snap)
        fig, axes = plt.subplots(1, 6, figsize=(15, 2.6))
        _kspace(axes[0], snap)
        _flips(axes[1], snap)
        _image(axes[2], snap.image, "reconstruction")
        _image(axes[3], snap.target, "target")
        _curves(axes[4], axes[5], history, evaluations)
        fig.subplots_adjust(left=0.03, right=0.99, bottom=0.18, top=0.88, wspace=0.35)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"iter_{iteration:05d}.png"
        path.write_bytes(_png(fig))
        return path

    def summary(
        self,
        history: list[dict[str, float]],
        held_out: dict[str, float] | None,
        name: str,
        evaluations: list[dict[str, float]],
        best: dict,
        hardware: HardwareCheck | None = None,
    ) -> bytes:
        """``summary.png`` (snapshots as columns, curves) and ``summary.html`` (with a table of the
        final, best and held-out errors, total and per k-space band); returns the PNG bytes."""
        chosen = self.snapshots
        if len(chosen) > MAX_SUMMARY_COLUMNS:
            idx = np.linspace(0, len(chosen) - 1, MAX_SUMMARY_COLUMNS).round().astype(int)
            chosen = [chosen[i] for i in idx]
        fig = _summary_figure(chosen, history, evaluations, name)
        png = _png(fig)
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "summary.png").write_bytes(png)
        last = history[-1] if history else {}
        chosen_best = best.get("metrics", {})
        rows = [
            ("iterations", len(history)),
            ("final relative error", f"{100 * last.get('error', 0):.2f} %"),
            ("final relative SAR", f"{100 * last.get('sar_rel', 0):.1f} %"),
            (
                "best state (lowest full loss on the evaluation set)",
                f"iteration {best.get('iteration', -1)}, loss {chosen_best.get('loss', float('nan')):.5g}",
            ),
            ("best relative error", f"{100 * chosen_best.get('error', float('nan')):.2f} %"),
        ]
        if hardware is not None:
            rows.append(("hardware check (the exported file)", hardware.summary()))
        for label, errors in (
            ("last evaluation", evaluations[-1] if evaluations else {}),
            ("held-out", held_out or {}),
        ):
            if "error" in errors:
                rows.append((f"{label} relative error", f"{100 * errors['error']:.2f} %"))
            rows += [
                (f"{label} error at {k.replace('err_k', '|k| ')} cycles/FOV", f"{100 * errors[k]:.2f} %")
                for k in band_keys([errors])
            ]
        table = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
        (self.folder / "summary.html").write_text(
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(name)}</title></head>"
            f"<body><h1>{html.escape(name)}</h1><table>{table}</table>"
            f"<img alt='training summary' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
            f"</body></html>"
        )
        return png


def _block_timings(seq: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """TI and Trec (ms) of each inversion block: the inversion repetition's first event and the
    first event of the last repetition before the next inversion (or the end)."""
    starts = (seq.rf_kind == INVERSION).nonzero().flatten().tolist()
    ends = [*(r - 1 for r in starts[1:]), seq.n_rep - 1]
    duration = seq.duration.detach().cpu().numpy() * 1e3
    return duration[starts, 0], duration[ends, 0]


def t1_map_figure(
    path: Path, seq: Sequence, pred: torch.Tensor, target: torch.Tensor, tissue: torch.Tensor, title: str
) -> Path:
    """``path`` (PNG): learned TI/Trec, true and predicted T1 maps inside ``tissue``, the relative
    error map (percent) and predicted vs true T1 per tissue pixel."""
    m = tissue.detach().cpu().numpy() > 0
    true = target.detach().cpu().numpy()
    est = pred.detach().cpu().numpy()
    rel = np.where(m, 100 * (est - true) / np.where(m, true, 1), np.nan)
    ti, trec = _block_timings(seq)
    fig, axes = plt.subplots(1, 5, figsize=(16, 3.3))
    blocks = np.arange(1, len(ti) + 1)
    axes[0].plot(blocks, ti, "o-", label="TI")
    axes[0].plot(blocks, trec, "s--", label="Trec")
    axes[0].set_xlabel("inversion block", fontsize=8)
    axes[0].set_title("learned timings (ms)", fontsize=9)
    axes[0].legend(fontsize=7)
    top = float(np.nanmax(np.where(m, true, np.nan))) if m.any() else 1.0
    for ax, img, name in ((axes[1], true, "true T1 (s)"), (axes[2], est, "predicted T1 (s)")):
        shown = ax.imshow(np.where(m, img, np.nan), cmap="magma", vmin=0, vmax=top)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
        fig.colorbar(shown, ax=ax, fraction=0.046)
    shown = axes[3].imshow(rel, cmap="coolwarm", vmin=-30, vmax=30)
    axes[3].set_title("relative error (%)", fontsize=9)
    axes[3].axis("off")
    fig.colorbar(shown, ax=axes[3], fraction=0.046)
    axes[4].plot(true[m], est[m], ".", ms=3)
    axes[4].plot([0, top], [0, top], "k-", lw=0.6)
    axes[4].set_xlabel("true T1 (s)", fontsize=8)
    axes[4].set_ylabel("predicted T1 (s)", fontsize=8)
    axes[4].set_title("per tissue pixel", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.04, right=0.98, bottom=0.16, top=0.84, wspace=0.4)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_png(fig))
    return path
