"""MRzero training: Adam on the free sequence tensors and the head, from a recipe, in the core loop.

One iteration simulates the current sequence on a batch of training phantoms, reconstructs,
applies the head and compares with the target (``losses.py``); the loop around it
(``mrzero.core.training.loop``) does the rest: the step-size schedule per restart cycle, gradient
clipping per field, the NaN guard (``last_good.pt``), the best state on the full loss, restarts
from it, checkpoints (``checkpoint.pt``, exportable, and ``resume.pt``), resume, progress and
data parallelism under ``torchrun``. What is MRzero's lives here:

* the bounds are enforced by projection after every step (``learnables.py``), and so is the
  hardware model of the Pulseq export (``hardware.py``, recipe section ``hardware``); at the end
  the final sequence is exported with those limits and checked (``hardware_check.json``): a
  stretched event fails the recipe;
* alternating optimisation (seed 6.2): the head first learns alone for ``head_first``
  iterations on images cached from the current sequence, then ``sequence`` sequence steps
  (head frozen) and ``head`` head steps alternate; the cache is dropped at every sequence step;
* the full loss (image term + SAR + time) on a fixed evaluation set, the first N training
  phantoms (N the larger of ``alternate.batch`` and ``alternate.sequence_batch``), is evaluated
  at the start, at every checkpoint, before every restart and at the end; the lowest is the best
  state (written as ``best.pt``, recorded in every checkpoint), each evaluation also records the
  relative error per k-space band (``losses.band_errors``);
* every random draw is seeded by (seed, iteration), so resume continues exactly;
* report rows every ``output.report_every`` iterations and the summary (``report.py``).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from mrzero.core.device import select_device
from mrzero.core.heads import build_head
from mrzero.core.training import LoopSettings, Ranks, Schedule, Share, StepLoss, TrainingError, TrainingLoop
from mrzero.sequences.adc_layout import derive_layout
from mrzero.sequences.checkpoint import load_checkpoint, save_checkpoint
from mrzero.sequences.pulseq.export import ExportError
from mrzero.sequences.pulseq.system import hardware
from mrzero.sequences.sequence import Sequence
from mrzero.sequences.simulate import simulate
from mrzero.sequences.training.encoding_prior import EncodingPrior
from mrzero.sequences.training.forward import ForwardModel, repetition_groups
from mrzero.sequences.training.hardware import HardwareCheck, HardwareModel
from mrzero.sequences.training.learnables import Bounds, Learnables, free_mask, readout_ties
from mrzero.sequences.training.losses import Loss, band_errors, band_names, relative_error
from mrzero.sequences.training.recipe import Recipe, RecipeError
from mrzero.sequences.training.report import Report, t1_map_figure
from mrzero.sequences.training.targets import Targets, build_sequence, make_phantoms

log = logging.getLogger(__name__)

#: Step-size units of the recipe (degrees, ms, cycles/FOV) to SI.
LR_TO_SI = {
    "flip": math.pi / 180,
    "rf_phase": math.pi / 180,
    "adc_phase": math.pi / 180,
    "duration": 1e-3,
    "moment": 1.0,
}

__all__ = ["Trainer", "TrainingError", "TrainingResult"]


@dataclass
class TrainingResult:
    """What a run produced; ``history`` holds one dict of loss parts per iteration."""

    sequence: Sequence
    head: torch.nn.Module | None
    history: list[dict[str, float]]
    out: Path
    final_checkpoint: Path
    held_out_error: float | None = None
    best: dict[str, Any] | None = None  # the best evaluation: full loss, iteration, its metrics
    hardware: HardwareCheck | None = None  # the exported file measured; None: hardware.check off


def _draw(seed: int, iteration: int, salt: int) -> torch.Generator:
    """A generator for one iteration's random draws, independent of how the run got there."""
    return torch.Generator().manual_seed((seed * 1_000_003 + iteration) * 7 + salt)


class Trainer(TrainingLoop):
    """Runs one recipe; see the module docstring. ``out`` receives checkpoints and reports."""

    def __init__(
        self,
        recipe: Recipe,
        out: str | Path,
        device: str | None = None,
        iterations: int | None = None,
        progress: bool = True,
        ranks: Ranks | None = None,
    ) -> None:
        r, o = recipe, recipe.output
        settings = LoopSettings(
            name=r.name,
            checkpoint_every=o.checkpoint_every,
            report_every=o.report_every,
            evaluate_every=o.checkpoint_every,
            restart_every=r.optimizer.restart.every,
            clip=r.optimizer.clip,
        )
        dev = ranks.device if ranks is not None else select_device(device or r.device)
        super().__init__(out, settings, int(iterations or r.optimizer.iterations), dev, ranks, progress)
        self.recipe = recipe
        torch.manual_seed(r.seed)
        spec = r.sequence
        built = build_sequence(spec.builder, spec.options, r.matrix, self.device)
        if spec.checkpoint:
            built = load_checkpoint(spec.checkpoint, device=self.device).sequence
        masks, ties = {}, {}
        for name, free in spec.learn.items():
            try:
                masks[name] = free_mask(built, name, free.reps, free.events, free.axes)
            except ValueError as exc:
                raise RecipeError(f"sequence.learn.{name}: {exc}") from exc
            if not bool(masks[name].any()):
                raise RecipeError(f"sequence.learn.{name}: selects no entry of the {built.name} sequence")
            if free.tie == "readout":
                ties[name] = readout_ties(built, masks[name])
        start = built.clone()
        for name in spec.zero:
            # only the free entries start at zero (a fixed spoiler stays as built); flips start at a
            # tiny angle: the fast engine prunes states of exactly zero amplitude, which would also
            # remove the gradient that lets the flips grow
            value = math.radians(spec.zero_flip_deg) if name == "flip" else 0.0
            field = getattr(start, name)
            setattr(start, name, torch.where(masks[name], torch.full_like(field, value), field))
        try:
            self.limits = hardware(r.hardware.preset, **r.hardware.overrides())
        except ValueError as exc:
            raise RecipeError(f"hardware: {exc}") from exc
        self.hardware = HardwareModel(self.limits)
        max_gradient = r.bounds.max_gradient_mT_m
        bounds = Bounds(
            self.limits.max_grad if max_gradient is None else max_gradient * 1e-3,
            r.bounds.min_duration_ms * 1e-3,
            math.radians(r.bounds.max_flip_deg),
        )
        try:
            enforced = self.hardware if r.hardware.enforce else None
            self.learn = Learnables(start, masks, bounds, enforced, ties) if masks else None
        except ExportError as exc:
            raise RecipeError(
                f"hardware: the start sequence cannot be brought within the {self.limits.name} limits "
                f"by its free entries: {exc}"
            ) from exc
        self.hardware_check: HardwareCheck | None = None
        if self.learn is not None:
            bad = self.learn.out_of_bounds()
            if bad:
                raise RecipeError(f"bounds: the fixed part of the sequence violates them: {'; '.join(bad)}")
        self.forward = ForwardModel.from_recipe(r)
        self.phantoms = make_phantoms(r.phantom, r.matrix, self.device)
        self.held_out = make_phantoms(r.held_out, r.matrix, self.device) if r.held_out else []
        self.targets = Targets(
            r.target, self.forward, r.matrix, start, spec.builder, spec.options, self.device
        )
        self.held_targets = Targets(
            r.target, self.forward, r.matrix, start, spec.builder, spec.options, self.device
        )
        reference = self.targets.reference or built
        self.reference = reference
        sar_ref = float(reference.sar_proxy()) or 1.0
        self.loss_fn = Loss(
            r.loss.image,
            r.loss.compare,
            r.loss.sar,
            r.loss.time,
            sar_ref,
            float(reference.total_duration()) or 1.0,
            r.loss.high_k,
            r.loss.high_k_from,
        )
        self.encoding_prior = (
            EncodingPrior(r.loss.encoding, r.loss.encoding_until, r.matrix) if r.loss.encoding else None
        )
        self.n_images = len(repetition_groups(start)) if r.recon.split == "repetition" else 1
        self.head = self.head_config = None
        if r.head is not None:
            self.head_config = self._head_config(r)
            self.head = build_head(self.head_config).to(self.device)
        first = self.targets.get(0, self.phantoms[0])
        n_pred = self.n_images if r.head is None else 1
        if first.image.shape[0] != n_pred:
            raise RecipeError(
                f"target: gives {first.image.shape[0]} image(s) per phantom, the "
                f"reconstruction{' head' if r.head else ''} produces {n_pred}"
            )
        self.schedule = Schedule(
            r.optimizer.schedule, r.optimizer.restart.every or self.iterations, r.optimizer.final_factor
        )
        self.seq_opt = self._sequence_optimizer()
        self.head_opt = (
            torch.optim.Adam(
                [{"params": list(self.head.parameters()), "lr": r.head.lr, "base_lr": r.head.lr}]
            )
            if self.head
            else None
        )
        a = r.optimizer.alternate
        self.n_evaluate = min(len(self.phantoms), max(a.batch, a.sequence_batch))
        largest = max(a.sequence_batch, a.batch if self.head is not None else 1)
        if self.ranks.world > min(largest, len(self.phantoms)):
            log.warning(
                "%d ranks share batches of at most %d phantom(s): ranks beyond that idle (raise "
                "optimizer.alternate.sequence_batch to use them)",
                self.ranks.world,
                largest,
            )
        self._cache: dict[int, torch.Tensor] = {}
        self._batch: list[int] = [0]
        self._last_pred: torch.Tensor | None = None
        self.report = Report(self.out / "report")

    # ------------------------------------------------------------------ setup helpers
    def _head_config(self, r: Recipe) -> dict[str, Any]:
        h = r.head
        if h.kind == "mlp":
            return {
                "kind": "mlp",
                "n_in": self.n_images,
                "hidden": list(h.hidden),
                "scale": h.scale,
                "features": h.features,
            }
        return {"kind": "cnn", "n_in": self.n_images, "channels": h.channels, "layers": h.layers}

    def _sequence_optimizer(self) -> torch.optim.Adam | None:
        if self.learn is None:
            return None
        lr = self.recipe.optimizer.lr
        groups = [
            {
                "params": [p],
                "lr": lr[name] * LR_TO_SI[name],
                "base_lr": lr[name] * LR_TO_SI[name],
                "name": name,
            }
            for name, p in self.learn.params.items()
        ]
        return torch.optim.Adam(groups)

    def sequence(self) -> Sequence:
        """The current sequence (the start sequence when nothing of it is learnable)."""
        return self.learn.sequence() if self.learn else self.targets.trained

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return images if self.head is None else self.head(images)

    def phase(self, i: int) -> str:
        """``joint``, ``sequence`` or ``head``: what iteration ``i`` optimises."""
        a = self.recipe.optimizer.alternate
        if self.head is None:
            return "sequence"
        if self.learn is None:
            return "head"
        if i < a.head_first or i >= self.iterations - a.head_last:
            return "head"
        if a.sequence == 0:
            return "joint"
        return "sequence" if (i - a.head_first) % (a.sequence + a.head) < a.sequence else "head"

    # ------------------------------------------------------------------ the loop's hooks
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {
            name: opt
            for name, opt in (("sequence", self.seq_opt), ("head", self.head_opt))
            if opt is not None
        }

    def stepping(self, step: int) -> list[str]:
        phase = self.phase(step)
        return [name for name in self.optimizers() if phase == "joint" or name == phase]

    def parameters(self) -> list[torch.Tensor]:
        tensors = list(self.learn.params.values()) if self.learn else []
        return tensors + (list(self.head.parameters()) if self.head else [])

    def params_state(self) -> dict[str, Any]:
        seq = self.learn.state() if self.learn else {}
        head = {k: v.detach().clone() for k, v in self.head.state_dict().items()} if self.head else {}
        return {"sequence": seq, "head": head}

    def load_params_state(self, state: dict[str, Any]) -> None:
        if self.learn:
            self.learn.load(state["sequence"])
        if self.head:
            self.head.load_state_dict(state["head"])

    def lr_factor(self, step: int) -> float:
        every = self.recipe.optimizer.restart.every
        return self.schedule.factor(step % every if every else step)

    def before_step(self, step: int) -> None:
        if self.phase(step) != "head":
            self._cache = {}  # the sequence moves: images cached for head steps are stale

    def batch(self, step: int) -> list[int]:
        """``alternate.batch`` phantoms for a head step, ``alternate.sequence_batch`` otherwise,
        drawn from (seed, step)."""
        gen = _draw(self.recipe.seed, step, 1)
        n, a = len(self.phantoms), self.recipe.optimizer.alternate
        if self.phase(step) == "head":
            self._batch = torch.randperm(n, generator=gen)[: a.batch].tolist()
        elif a.sequence_batch == 1:
            self._batch = [int(torch.randint(n, (1,), generator=gen))]
        else:
            self._batch = torch.randperm(n, generator=gen)[: a.sequence_batch].tolist()
        return self._batch

    def _images(self, seq: Sequence, idx: int, cached: bool) -> torch.Tensor:
        if not cached:
            return self.forward(seq, self.phantoms[idx])
        if idx not in self._cache:
            with torch.no_grad():
                self._cache[idx] = self.forward(seq, self.phantoms[idx])
        return self._cache[idx]

    def _share_loss(
        self, share: Share, seq: Sequence, images: Callable[[int], torch.Tensor], step: int | None
    ) -> StepLoss:
        """The loss of ``share``: its part of the batch mean of the image term plus its part of the
        SAR and time penalties; metrics are additive over ranks. A training step (``step`` given)
        adds the encoding prior at its weight of the moment and keeps its first prediction for the
        report; an evaluation (``step`` None) scores the recipe's objective without the prior (a
        guide that is gone by its end) and adds the k-space band errors."""
        evaluating = step is None
        sar, time = self.loss_fn.penalties(seq)
        guide = None
        if self.encoding_prior is not None and not evaluating:
            guide = self.encoding_prior(seq.trajectory(), step / self.iterations)
        image = torch.zeros((), device=self.device)
        high_k = torch.zeros((), device=self.device)
        error, bands = 0.0, {}
        for idx in share.indices:
            t = self.targets.get(idx, self.phantoms[idx])
            pred = self.predict(images(idx))
            parts = self.loss_fn(pred, t.image, t.weight, seq)
            image = image + parts.image
            if parts.high_k is not None:
                high_k = high_k + parts.high_k
            error += parts.error
            if not evaluating and idx == share.indices[0]:
                self._last_pred = pred.detach()
            if evaluating:
                for name, value in band_errors(pred, t.image, t.weight, self.loss_fn.compare).items():
                    bands[name] = bands.get(name, 0.0) + value
        image, high_k = share.per_sample(image), share.per_sample(high_k)
        penalty = share.shared(sar + time)
        metrics = {
            "image": float(image.detach()),
            **({"high_k": float(high_k.detach())} if self.loss_fn.high_k else {}),
            "sar": float(share.shared(sar).detach()),
            "time": float(share.shared(time).detach()),
            "error": error / share.batch,
        }
        if guide is not None:
            penalty = penalty + share.shared(guide)
            metrics["encoding"] = float(share.shared(guide).detach())
        if evaluating:
            metrics.update(
                {name: bands.get(name, 0.0) / share.batch for name in band_names(self.recipe.matrix)}
            )
        return StepLoss(image + high_k + penalty, metrics)

    def loss(self, step: int, share: Share) -> StepLoss:
        seq = self.sequence()
        head_step = self.phase(step) == "head"
        try:
            return self._share_loss(share, seq, lambda idx: self._images(seq, idx, head_step), step)
        except ValueError as exc:  # a non-finite sequence is refused by Sequence.validate
            if "not finite" in str(exc):
                self.stop_on_nan(step, "a NaN or inf sequence value")
            raise

    def evaluation_set(self) -> list[int]:
        return list(range(self.n_evaluate))

    def evaluation_loss(self, share: Share) -> StepLoss:
        seq = self.sequence()
        return self._share_loss(share, seq, lambda idx: self.forward(seq, self.phantoms[idx]), None)

    def after_step(self, step: int) -> None:
        if self.learn is not None:
            self._project(step)

    def _project(self, step: int) -> None:
        """The bounds and the hardware model's projection; a refusal of the export stops the run."""
        try:
            self.learn.project()
        except ExportError as exc:
            raise TrainingError(
                f"iteration {step}: the sequence left what the {self.limits.name} hardware can "
                f"play and its free entries cannot bring it back: {exc}"
            ) from exc

    def restart(self, step: int) -> None:
        if self.learn is None:
            return
        noise = self.recipe.optimizer.restart.noise
        gen = _draw(self.recipe.seed, step, 2)
        with torch.no_grad():
            for group in self.seq_opt.param_groups:
                p = group["params"][0]
                kick = torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device)
                p.add_(noise * 10 * group["base_lr"] * kick * self.learn.masks[group["name"]])
        self._project(step)
        self.seq_opt = self._sequence_optimizer()

    def record(self, step: int, metrics: dict[str, float], factor: float) -> dict[str, float]:
        seq = self.sequence()
        return {
            "iteration": step,
            **metrics,
            "phase_head": float(self.phase(step) == "head"),
            "sar_rel": float(seq.sar_proxy().detach()) / self.loss_fn.sar_ref,
            "lr_factor": factor,
            "phantom": self._batch[0],
        }

    def log_step(self, record: dict[str, float]) -> str:
        guide = f", encoding prior {record['encoding']:.5f}" if "encoding" in record else ""
        high_k = f", high |k| {record['high_k']:.5f}" if "high_k" in record else ""
        return (
            f"loss {record['loss']:.5f} (image {record['image']:.5f}{high_k}, SAR {record['sar']:.5f}, time "
            f"{record['time']:.5f}{guide}), error {100 * record['error']:.2f} %, relative SAR "
            f"{100 * record['sar_rel']:.1f} %"
        )

    def on_evaluation(self, metrics: dict[str, float], best: bool) -> None:
        if best and self.ranks.main:
            self.out.mkdir(parents=True, exist_ok=True)
            self._save_checkpoint(self.out / "best.pt", f"best full loss at iteration {self.iteration}")

    def report_step(self, step: int) -> None:
        idx = int(self.history[-1]["phantom"])
        target = self.targets.get(idx, self.phantoms[idx]).image
        self.report.snapshot(step, self.sequence(), self._last_pred, target, self.history, self.evaluations)

    def write_checkpoint(self, note: str) -> None:
        self._save_checkpoint(self.out / "checkpoint.pt", note)

    def write_last_good(self, path: Path, note: str) -> None:
        self._save_checkpoint(path, note)

    # ------------------------------------------------------------------ checkpoints
    def final_sequence(self) -> Sequence:
        """The current sequence, detached, with a readout layout derived from its trajectory when
        the moments were learned (the builder's Cartesian lines no longer hold)."""
        seq = self.sequence().clone()
        if self.learn is not None and "moment" in self.learn.masks:
            seq = replace(
                seq, readouts=derive_layout(seq.n_rep, seq.adc, seq.trajectory(), self.recipe.matrix)
            )
        return replace(seq, name=f"{self.recipe.name} (trained)")

    def _metadata(self, note: str, held: dict[str, float] | None = None) -> dict[str, Any]:
        last = self.history[-1] if self.history else {}
        best = self.best["metrics"]
        meta: dict[str, Any] = {
            "provenance": {
                "recipe": self.recipe.name,
                "seed": self.recipe.seed,
                "iterations": len(self.history),
                "note": note,
                "last": last,
                "best_error": best.get("error"),
                "best_loss": best.get("loss"),
                "best_iteration": self.best["iteration"],
                "best": best,
            }
        }
        if held is not None:  # the held-out phantoms' errors, in the final checkpoint
            meta["provenance"]["held_out"] = {"spec": asdict(self.recipe.held_out), **held}
            meta["provenance"]["held_out_error"] = held["error"]
        if self.head_config is not None:
            meta["head_config"] = self.head_config
        # the reconstruction trained through, in the server's terms (pipelines/learned/recon.py): a
        # bundle's protocol carries it, so that its pipeline reconstructs as training did
        rec = self.recipe.recon
        meta["recon"] = {"method": rec.method, "iterations": rec.iterations, "density": rec.density or "none"}
        return meta

    def _save_checkpoint(
        self, path: Path, note: str, figure: bytes | None = None, held: dict[str, float] | None = None
    ) -> Path:
        meta = self._metadata(note, held)
        return save_checkpoint(path, self.final_sequence(), self.head, meta, figure)

    # ------------------------------------------------------------------ evaluation and run
    @torch.no_grad()
    def errors(self, phantoms: list | None = None) -> dict[str, float]:
        """Mean relative error and k-space band errors of the current sequence (+ head) on
        ``phantoms`` (default: the held-out set)."""
        phantoms = self.held_out if phantoms is None else phantoms
        targets = self.held_targets if phantoms is self.held_out else self.targets
        total: dict[str, float] = {}
        for i, ph in enumerate(phantoms):
            t = targets.get(i, ph)
            pred = self.predict(self.forward(self.sequence(), ph))
            one = {
                "error": float(relative_error(pred, t.image, t.weight, self.loss_fn.compare)),
                **band_errors(pred, t.image, t.weight, self.loss_fn.compare),
            }
            for name, value in one.items():
                total[name] = total.get(name, 0.0) + value / len(phantoms)
        return total

    def evaluate(self, phantoms: list | None = None) -> float:
        """Mean relative error of the current sequence (+ head) on ``phantoms`` (default: held-out)."""
        return self.errors(phantoms).get("error", 0.0)

    def run(self) -> TrainingResult:
        """Train to ``iterations``; write checkpoints, reports and the final summary (rank 0)."""
        log.info(
            "training %s on %s (rank %d of %d) from iteration %d to %d: start %s",
            self.recipe.name,
            self.device,
            self.ranks.rank,
            self.ranks.world,
            self.iteration,
            self.iterations,
            self.targets.trained.summary(),
        )
        self.train()
        held = self.errors() if self.held_out and self.ranks.main else None
        final = self.out / "final.pt"
        if self.ranks.main:
            if held is not None and self.recipe.target.kind == "t1":
                self._t1_map()
            if self.recipe.hardware.check:
                self.hardware_check = self.check_hardware()
            figure = self.report.summary(
                self.history, held, self.recipe.name, self.evaluations, self.best, self.hardware_check
            )
            self._save_checkpoint(final, "final", figure, held)
            (self.out / "history.json").write_text(json.dumps(self.history))
            (self.out / "evaluations.json").write_text(json.dumps(self.evaluations))
            log.info(
                "finished %s: error %.2f %%, best full loss %.5g at %d (error %.2f %%), relative SAR "
                "%.1f %%%s; final sequence in %s",
                self.recipe.name,
                100 * self.history[-1]["error"],
                self.best["loss"],
                self.best["iteration"],
                100 * self.best["metrics"].get("error", math.nan),
                100 * self.history[-1]["sar_rel"],
                "" if held is None else f", held-out error {100 * held['error']:.2f} %",
                final,
            )
        best = {k: v for k, v in self.best.items() if k != "state"}
        return TrainingResult(
            self.final_sequence(),
            self.head,
            self.history,
            self.out,
            final,
            None if held is None else held["error"],
            best,
            self.hardware_check,
        )

    def check_hardware(self) -> HardwareCheck:
        """Export the final sequence with the recipe's hardware limits and measure the file
        (``hardware.py``); written to ``hardware_check.json``. A stretched event, or a file whose
        signal differs by more than 1 %, fails the recipe: the file would not be the sequence that
        was learned. Both signals come from the fast engine at its default accuracy, not the
        training's speed settings (a loose ``tolerance`` prunes the two event structures
        differently: 2.7 % NRMSE at 1e-3 where 1e-5 gives 0.07 % for a T1 sequence)."""
        phantom = self.phantoms[0]
        check = self.hardware.check(self.final_sequence(), lambda seq: simulate(seq, phantom))
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "hardware_check.json").write_text(json.dumps(check.as_dict(), indent=1))
        report = log.info if check.passed else log.error
        report("hardware check of %s: %s", self.recipe.name, check.summary())
        return check

    @torch.no_grad()
    def _t1_map(self) -> Path:
        """``report/t1_map.png``: the learned timings and the T1 map of the first held-out phantom."""
        ph = self.held_out[0]
        target = self.held_targets.get(0, ph)
        pred = self.predict(self.forward(self.sequence(), ph))
        error = float(relative_error(pred, target.image, target.weight, self.loss_fn.compare))
        title = f"{self.recipe.name}: {ph.name}, relative T1 error {100 * error:.1f} %"
        return t1_map_figure(
            self.report.folder / "t1_map.png",
            self.sequence(),
            pred[0],
            target.image[0],
            target.weight > 0,
            title,
        )
