"""Training the RoAR U-Net on synthetic subjects, in the paper's three modes.

* ``self``: self-supervised through the model (paper Eq. 5): noisy input, the same noisy echoes
  as the target of S0 exp(-R2* t) F(t).
* ``denoise``: self-supervised denoising (Eq. 6): noisy input, clean echoes as the target.
* ``supervised``: noisy input, the true S0 and R2* maps as the target (Eq. 4).

Losses are mean squared errors inside the brain mask. Adam with the published learning-rate
schedule (8e-4, divided by 1.5, 3, 2, 2 at epochs 6, 20, 35, 55 of 80), with the milestones
scaled to the configured number of epochs. The loop is the project's one training loop
(``mrzero.core.training``): one loop step is one minibatch, an epoch ends with the validation
loss (the "best" weights, written as safetensors), the loss-curve PNG and the resumable state
``checkpoint.pt``; a run resumes from it automatically, exactly where it stopped (the epoch's
sample order is the ``epoch``-th permutation of the seeded generator, dropout's RNG state is
saved). Under ``torchrun`` each minibatch is split across ranks (``mrzero.core.training.distributed``).
Writes ``model.safetensors``, ``checkpoint.pt``, ``history.json`` and ``loss.png`` into ``output``.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import yaml

from mrzero.core.config import ConfigError, load, setting
from mrzero.core.device import select_device
from mrzero.core.training import LoopSettings, Ranks, Share, StepLoss, TrainingLoop
from mrzero.pipelines.roar.signal_model import echo_times, mgre_magnitude
from mrzero.pipelines.roar.synthetic import Scan, SliceSet, brain_anatomy, make_slice_set, split_indices
from mrzero.pipelines.roar.unet import RoarUNet, UNetConfig
from mrzero.pipelines.roar.weights_file import save_weights

log = logging.getLogger(__name__)

#: Published schedule: (epoch, divisor) pairs for an 80-epoch run.
PUBLISHED_LR_STEPS = ((6, 1.5), (20, 3.0), (35, 2.0), (55, 2.0))
PUBLISHED_EPOCHS = 80
#: Validation slices per forward pass.
EVAL_CHUNK = 16


@dataclass
class DataConfig:
    """Synthetic data: matrix size, subject counts of the split, noise copies and SNR range."""

    size: int = setting(64, "image matrix", ge=8)
    subjects: int = setting(35, "synthetic subjects in all", ge=1)
    val: int = setting(4, "subjects held out for validation", ge=0)
    test: int = setting(8, "subjects held out for testing", ge=0)
    seed: int = 0
    copies: int = setting(4, "noisy copies of each slice", ge=1)
    snr: tuple[float, float] = setting(
        (5.0, 20.0), "range of the first-echo SNR", rule=("0 < low <= high", lambda v: 0 < v[0] <= v[1])
    )
    #: F in the echo-domain losses: the VSF estimate (the paper's), or "generating", the F that made
    #: the data: an oracle no scan has, for the diagnostic in docs/roar.md only
    f: Literal["vsf", "generating"] = "vsf"
    #: how the synthetic subjects are scanned (``synthetic.make_subject``): through the slice only,
    #: or 2D Fourier-encoded (in-plane field gradients move the echoes in k-space)
    scan: Scan = "slice"


@dataclass
class TrainConfig:
    """Everything ``mrzero roar train CONFIG`` reads from its YAML file."""

    mode: Literal["self", "denoise", "supervised"] = "denoise"
    output: str = "runs/roar"
    epochs: int = setting(80, "passes over the training set", ge=1)
    batch: int = setting(4, "slices per step", ge=1)
    lr: float = setting(8e-4, "Adam step size at the start of the schedule", gt=0)
    seed: int = 0
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    model: UNetConfig = field(default_factory=UNetConfig)


def load_config(path: Path | str) -> TrainConfig:
    """A ``TrainConfig`` from YAML (``core/config.py``): unknown keys, wrong types and values out of
    range are an error naming the file and the dotted key."""
    try:
        return load(TrainConfig, yaml.safe_load(Path(path).read_text()) or {})
    except ConfigError as exc:
        raise ConfigError(exc.path, exc.reason, f"{path}: {exc}") from None


def lr_milestones(epochs: int) -> list[tuple[int, float]]:
    """The published schedule's (epoch, divisor) steps scaled to ``epochs``."""
    return [(max(1, round(e * epochs / PUBLISHED_EPOCHS)), d) for e, d in PUBLISHED_LR_STEPS]


def learning_rate(base: float, epoch: int, epochs: int) -> float:
    """Learning rate of ``epoch`` (0-based) under the scaled published schedule."""
    return base / math.prod(d for e, d in lr_milestones(epochs) if epoch >= e)


def model_echoes(pred: torch.Tensor, te: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Magnitudes ``[B, E, H, W]`` of predicted maps ``[B, 2, H, W]`` through S0 exp(-R2* t) F(t)."""
    return mgre_magnitude(pred[:, 0], pred[:, 1], te, f.transpose(0, 1)).transpose(0, 1)


def loss_of(
    mode: str,
    pred: torch.Tensor,
    batch: SliceSet,
    te: torch.Tensor,
    r2s_scale: float,
    mask_pixels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Masked MSE of the mode: in the echo domain (self, denoise) or on the maps (supervised).

    The mean is over ``mask_pixels`` (default: the mask pixels of ``batch``); a rank's part of a
    minibatch passes the whole minibatch's count, so that the parts of all ranks sum to its loss."""
    m = batch.mask.unsqueeze(1).to(pred.dtype)
    n = (m.sum() if mask_pixels is None else mask_pixels).clamp_min(1.0)
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


class RoarTraining(TrainingLoop):
    """The RoAR U-Net in the core loop: one step per minibatch, evaluation and checkpoint per epoch."""

    def __init__(self, cfg: TrainConfig, progress: bool = True, ranks: Ranks | None = None) -> None:
        device = ranks.device if ranks is not None else select_device(cfg.device)
        torch.manual_seed(cfg.seed)
        self.cfg, self.te = cfg, echo_times(device=device)
        anatomy = brain_anatomy(cfg.data.size)
        split = split_indices(cfg.data.subjects, cfg.data.val, cfg.data.test, cfg.data.seed)
        self.train_set = make_slice_set(
            anatomy,
            split["train"],
            cfg.data.snr,
            cfg.data.copies,
            seed=cfg.data.seed,
            noise_seed=cfg.seed,
            f=cfg.data.f,
            scan=cfg.data.scan,
        )
        self.val_set = make_slice_set(
            anatomy,
            split["val"],
            cfg.data.snr,
            1,
            seed=cfg.data.seed,
            noise_seed=10_000 + cfg.seed,
            f=cfg.data.f,
            scan=cfg.data.scan,
        )
        self.per_epoch = math.ceil(len(self.train_set) / cfg.batch)
        every = self.per_epoch
        settings = LoopSettings(
            name=f"roar {cfg.mode}",
            checkpoint_every=every,
            report_every=every,
            evaluate_every=every,
            evaluate_start=False,
            resume_file="checkpoint.pt",
        )
        super().__init__(cfg.output, settings, cfg.epochs * every, device, ranks, progress)
        self.model = RoarUNet(cfg.model).to(device)
        self.opt = torch.optim.Adam(
            [{"params": list(self.model.parameters()), "lr": cfg.lr, "base_lr": cfg.lr}]
        )
        self.epochs: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "val_re": [], "lr": []}
        self._epoch_sum = 0.0
        self._order: tuple[int, torch.Tensor] = (-1, torch.empty(0))
        self._batch: list[int] = []

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": self.opt}

    def parameters(self) -> list[torch.Tensor]:
        return list(self.model.parameters())

    def params_state(self) -> dict[str, Any]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def load_params_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state)

    def lr_factor(self, step: int) -> float:
        return learning_rate(self.cfg.lr, step // self.per_epoch, self.cfg.epochs) / self.cfg.lr

    def before_step(self, step: int) -> None:
        if step % self.per_epoch == 0:
            self._epoch_sum = 0.0

    def batch(self, step: int) -> list[int]:
        """Minibatch ``step % per_epoch`` of the epoch's permutation: the ``epoch``-th draw of a
        generator seeded by the training seed (as one generator drawn once per epoch would give)."""
        epoch, j = divmod(step, self.per_epoch)
        if self._order[0] != epoch:
            g = torch.Generator().manual_seed(self.cfg.seed)
            for _ in range(epoch + 1):
                order = torch.randperm(len(self.train_set), generator=g)
            self._order = (epoch, order)
        self._batch = self._order[1][j * self.cfg.batch : (j + 1) * self.cfg.batch].tolist()
        return self._batch

    def loss(self, step: int, share: Share) -> StepLoss:
        self.model.train()
        if not share.indices:
            return StepLoss(torch.zeros((), device=self.device), {"train_sum": 0.0})
        pixels = self.train_set.mask[self._batch].sum().to(self.device, torch.float32)
        batch = self.train_set.batch(torch.tensor(share.indices), self.device)
        loss = loss_of(
            self.cfg.mode, self.model(batch.noisy), batch, self.te, self.cfg.model.r2s_scale, pixels
        )
        return StepLoss(loss, {"train_sum": loss.item() * len(self._batch)})

    def record(self, step: int, metrics: dict[str, float], factor: float) -> dict[str, float]:
        self._epoch_sum += metrics["train_sum"]
        return {"iteration": step, "loss": metrics["loss"], "lr": self.cfg.lr * factor}

    def evaluation_set(self) -> list[int]:
        """Chunks of ``EVAL_CHUNK`` validation slices (the loss is a masked mean per chunk, so ranks
        share whole chunks to sum to the one-process value)."""
        return list(range(math.ceil(len(self.val_set) / EVAL_CHUNK)))

    def evaluation_loss(self, share: Share) -> StepLoss:
        n = len(self.val_set)
        indices = [i for c in share.indices for i in range(c * EVAL_CHUNK, min((c + 1) * EVAL_CHUNK, n))]
        loss_sum, re_sum = _sums(self.model, self.val_set, indices, self.cfg, self.te, self.device)
        return StepLoss(torch.tensor(loss_sum / n), {"val_re": re_sum / n})

    def on_evaluation(self, metrics: dict[str, float], best: bool) -> None:
        epoch = self.iteration // self.per_epoch
        lr = learning_rate(self.cfg.lr, epoch - 1, self.cfg.epochs)
        e = self.epochs
        e["train_loss"].append(self._epoch_sum / len(self.train_set))
        e["val_loss"].append(metrics["loss"])
        e["val_re"].append(metrics["val_re"])
        e["lr"].append(lr)
        log.info(
            "epoch %d/%d: train loss %.4g, validation loss %.4g, validation R2* RE %.1f %%, lr %.2g",
            epoch,
            self.cfg.epochs,
            e["train_loss"][-1],
            metrics["loss"],
            100 * metrics["val_re"],
            lr,
        )
        if best and self.ranks.main:
            info = {
                "mode": self.cfg.mode,
                "epoch": epoch,
                "val_loss": metrics["loss"],
                "val_re": metrics["val_re"],
            }
            save_weights(
                self.model,
                self.out / "model.safetensors",
                self.te.cpu(),
                {**info, "config": _jsonable(self.cfg)},
            )

    def report_step(self, step: int) -> None:
        _plot(self.epochs, self.out / "loss.png")

    def log_step(self, record: dict[str, float]) -> str:
        return f"loss {record['loss']:.3g}"

    def extra_state(self) -> dict[str, Any]:
        return {"epochs": json.dumps(self.epochs)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.epochs = json.loads(state["epochs"])


def train(cfg: TrainConfig, progress: bool = True, ranks: Ranks | None = None) -> dict[str, Any]:
    """Train one model (resuming from ``checkpoint.pt`` in ``cfg.output`` when there is one);
    returns the summary that is also written to ``history.json``."""
    loop = RoarTraining(cfg, progress, ranks)
    loop.resume(required=False)
    log.info(
        "roar %s training on %s: %d train / %d validation slices (%d x %d), %d epochs from epoch %d",
        cfg.mode,
        loop.device,
        len(loop.train_set),
        len(loop.val_set),
        cfg.data.size,
        cfg.data.size,
        cfg.epochs,
        loop.iteration // loop.per_epoch,
    )
    loop.train()
    summary = {
        "config": _jsonable(cfg),
        "history": loop.epochs,
        "best_val_loss": loop.best["loss"],
        "best_epoch": loop.best["iteration"] // loop.per_epoch,
        "weights": str(loop.out / "model.safetensors"),
    }
    if loop.ranks.main:
        (loop.out / "history.json").write_text(json.dumps(summary, indent=1))
    return summary


@torch.no_grad()
def _sums(
    model: RoarUNet,
    data: SliceSet,
    indices: list[int],
    cfg: TrainConfig,
    te: torch.Tensor,
    device: torch.device,
) -> tuple[float, float]:
    """Sums over ``indices`` of the loss (per chunk of ``EVAL_CHUNK``, times its size) and the R2* RE
    (eval mode)."""
    model.eval()
    loss_sum, re_sum = 0.0, 0.0
    for i in range(0, len(indices), EVAL_CHUNK):
        batch = data.batch(torch.tensor(indices[i : i + EVAL_CHUNK]), device)
        pred = model(batch.noisy)
        loss_sum += loss_of(cfg.mode, pred, batch, te, cfg.model.r2s_scale).item() * len(batch)
        re_sum += float(relative_error(pred[:, 1], batch.r2s, batch.mask).sum())
    return loss_sum, re_sum


def evaluate_loss(
    model: RoarUNet, data: SliceSet, cfg: TrainConfig, te: torch.Tensor, device: torch.device
) -> tuple[float, float]:
    """Mean loss and mean per-slice R2* RE of ``model`` on ``data`` (eval mode, no dropout)."""
    loss_sum, re_sum = _sums(model, data, list(range(len(data))), cfg, te, device)
    return loss_sum / len(data), re_sum / len(data)


def _jsonable(cfg: TrainConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d["data"]["snr"] = list(cfg.data.snr)
    return d
