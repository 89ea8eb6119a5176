"""Training the RoAR U-Net on synthetic subjects, in the paper's three modes.

* ``self``: self-supervised through the model (paper Eq. 5): noisy input, the same noisy echoes
  as the target of S0 exp(-R2* t) F(t).
* ``denoise``: self-supervised denoising (Eq. 6): noisy input, clean echoes as the target.
* ``supervised``: noisy input, the true S0 and R2* maps as the target (Eq. 4).

Losses are mean squared errors inside the brain mask. Adam with the published learning-rate
schedule (8e-4, divided by 1.5, 3, 2, 2 at epochs 6, 20, 35, 55 of 80), with the milestones
scaled to the configured number of epochs. Writes the best (validation loss) weights as
safetensors, a resumable checkpoint, ``history.json`` and a loss-curve PNG into ``output``.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from mrzero.pipelines.roar.signal_model import echo_times, mgre_magnitude
from mrzero.pipelines.roar.synthetic import SliceSet, brain_anatomy, make_slice_set, split_indices
from mrzero.pipelines.roar.unet import RoarUNet, UNetConfig
from mrzero.pipelines.roar.weights_file import save_weights

log = logging.getLogger(__name__)

MODES = ("self", "denoise", "supervised")
#: Published schedule: (epoch, divisor) pairs for an 80-epoch run.
PUBLISHED_LR_STEPS = ((6, 1.5), (20, 3.0), (35, 2.0), (55, 2.0))
PUBLISHED_EPOCHS = 80


@dataclass
class DataConfig:
    """Synthetic data: matrix size, subject counts of the split, noise copies and SNR range."""

    size: int = 64
    subjects: int = 35
    val: int = 4
    test: int = 8
    seed: int = 0
    copies: int = 4
    snr: tuple[float, float] = (5.0, 20.0)


@dataclass
class TrainConfig:
    """Everything ``mrzero roar train CONFIG`` reads from its YAML file."""

    mode: str = "denoise"
    output: str = "runs/roar"
    epochs: int = 80
    batch: int = 4
    lr: float = 8e-4
    seed: int = 0
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    model: UNetConfig = field(default_factory=UNetConfig)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.epochs < 1 or self.batch < 1 or self.lr <= 0:
            raise ValueError(
                f"epochs and batch must be >= 1 and lr > 0, got {self.epochs}, {self.batch}, {self.lr}"
            )


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(
            f"unknown key(s) in {where}: {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}"
        )
    return cls(**values)


def load_config(path: Path | str) -> TrainConfig:
    """A ``TrainConfig`` from YAML; unknown keys are an error that names them."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    data = raw.pop("data", {}) or {}
    if "snr" in data:
        data["snr"] = tuple(float(v) for v in data["snr"])
    model = raw.pop("model", {}) or {}
    return _build(
        TrainConfig,
        {**raw, "data": _build(DataConfig, data, "data"), "model": _build(UNetConfig, model, "model")},
        str(path),
    )


def lr_milestones(epochs: int) -> list[tuple[int, float]]:
    """The published schedule's (epoch, divisor) steps scaled to ``epochs``."""
    return [(max(1, round(e * epochs / PUBLISHED_EPOCHS)), d) for e, d in PUBLISHED_LR_STEPS]


def learning_rate(base: float, epoch: int, epochs: int) -> float:
    """Learning rate of ``epoch`` (0-based) under the scaled published schedule."""
    return base / math.prod(d for e, d in lr_milestones(epochs) if epoch >= e)


def pick_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def model_echoes(pred: torch.Tensor, te: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Magnitudes ``[B, E, H, W]`` of predicted maps ``[B, 2, H, W]`` through S0 exp(-R2* t) F(t)."""
    return mgre_magnitude(pred[:, 0], pred[:, 1], te, f.transpose(0, 1)).transpose(0, 1)


def loss_of(
    mode: str, pred: torch.Tensor, batch: SliceSet, te: torch.Tensor, r2s_scale: float
) -> torch.Tensor:
    """Masked MSE of the mode: in the echo domain (self, denoise) or on the maps (supervised)."""
    m = batch.mask.unsqueeze(1).to(pred.dtype)
    n = m.sum().clamp_min(1.0)
    if mode == "supervised":
        truth = torch.stack([batch.s0, batch.r2s / r2s_scale], dim=1)
        est = torch.stack([pred[:, 0], pred[:, 1] / r2s_scale], dim=1)
        return (((est - truth) ** 2) * m).sum() / (2 * n)
    target = batch.noisy if mode == "self" else batch.clean
    return (((model_echoes(pred, te, batch.f) - target) ** 2) * m).sum() / (n * te.numel())


def relative_error(est: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sample RE = ||r - r_hat|| / ||r|| inside the mask, for ``[N, H, W]`` maps."""
    m = mask.to(est.dtype)
    return ((est - truth) * m).flatten(1).norm(dim=1) / (truth * m).flatten(1).norm(dim=1).clamp_min(1e-12)


def _plot(history: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.semilogy(history["train_loss"], label="train")
    a.semilogy(history["val_loss"], label="validation")
    a.set_xlabel("epoch")
    a.set_ylabel("loss")
    a.legend()
    b.plot([100 * v for v in history["val_re"]])
    b.set_xlabel("epoch")
    b.set_ylabel("validation R2* RE (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train(cfg: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Train one model; returns the summary that is also written to ``history.json``."""
    device = pick_device(cfg.device)
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    te = echo_times(device=device)
    anatomy = brain_anatomy(cfg.data.size)
    split = split_indices(cfg.data.subjects, cfg.data.val, cfg.data.test, cfg.data.seed)
    train_set = make_slice_set(
        anatomy, split["train"], cfg.data.snr, cfg.data.copies, seed=cfg.data.seed, noise_seed=cfg.seed
    )
    val_set = make_slice_set(
        anatomy, split["val"], cfg.data.snr, 1, seed=cfg.data.seed, noise_seed=10_000 + cfg.seed
    )
    log.info(
        "roar %s training on %s: %d train / %d validation slices (%d x %d), %d epochs",
        cfg.mode,
        device,
        len(train_set),
        len(val_set),
        cfg.data.size,
        cfg.data.size,
        cfg.epochs,
    )
    model = RoarUNet(cfg.model).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    history: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "val_re": [], "lr": []}
    best = math.inf
    ckpt = out / "checkpoint.pt"
    start = 0
    if ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        history, start, best = json.loads(state["history"]), int(state["epoch"]) + 1, float(state["best"])
        log.info("resuming from %s at epoch %d", ckpt, start)
    g = torch.Generator().manual_seed(cfg.seed)
    for epoch in range(start, cfg.epochs):
        lr = learning_rate(cfg.lr, epoch, cfg.epochs)
        for group in opt.param_groups:
            group["lr"] = lr
        model.train()
        order = torch.randperm(len(train_set), generator=g)
        total = 0.0
        bar = tqdm(
            range(0, len(order), cfg.batch),
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=not progress,
            leave=False,
        )
        for i in bar:
            batch = train_set.batch(order[i : i + cfg.batch], device)
            loss = loss_of(cfg.mode, model(batch.noisy), batch, te, cfg.model.r2s_scale)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(batch)
            bar.set_postfix(loss=f"{loss.item():.3g}")
        val_loss, val_re = evaluate_loss(model, val_set, cfg, te, device)
        history["train_loss"].append(total / len(train_set))
        history["val_loss"].append(val_loss)
        history["val_re"].append(val_re)
        history["lr"].append(lr)
        log.info(
            "epoch %d/%d: train loss %.4g, validation loss %.4g, validation R2* RE %.1f %%, lr %.2g",
            epoch + 1,
            cfg.epochs,
            history["train_loss"][-1],
            val_loss,
            100 * val_re,
            lr,
        )
        if val_loss < best:
            best = val_loss
            save_weights(
                model,
                out / "model.safetensors",
                te.cpu(),
                {
                    "mode": cfg.mode,
                    "epoch": epoch + 1,
                    "val_loss": val_loss,
                    "val_re": val_re,
                    "config": _jsonable(cfg),
                },
            )
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "epoch": epoch,
                "best": best,
                "history": json.dumps(history),
            },
            ckpt,
        )
        _plot(history, out / "loss.png")
    summary = {
        "config": _jsonable(cfg),
        "history": history,
        "best_val_loss": best,
        "weights": str(out / "model.safetensors"),
    }
    (out / "history.json").write_text(json.dumps(summary, indent=1))
    return summary


@torch.no_grad()
def evaluate_loss(
    model: RoarUNet, data: SliceSet, cfg: TrainConfig, te: torch.Tensor, device: torch.device
) -> tuple[float, float]:
    """Mean loss and mean per-slice R2* RE of ``model`` on ``data`` (eval mode, no dropout)."""
    model.eval()
    losses, res = [], []
    for i in range(0, len(data), 16):
        batch = data.batch(torch.arange(i, min(i + 16, len(data))), device)
        pred = model(batch.noisy)
        losses.append(loss_of(cfg.mode, pred, batch, te, cfg.model.r2s_scale).item() * len(batch))
        res.append(relative_error(pred[:, 1], batch.r2s, batch.mask).cpu())
    return sum(losses) / len(data), float(torch.cat(res).mean())


def _jsonable(cfg: TrainConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d["data"]["snr"] = list(cfg.data.snr)
    return d
