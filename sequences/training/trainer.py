"""The MRzero training loop: Adam on the free sequence tensors and the head, from a recipe.

One iteration simulates the current sequence on a training phantom, reconstructs, applies the
head, compares with the target and steps the optimisers (``losses.py``). Around that:

* step sizes fall from high to low per cycle (``schedule.py``); a random restart (every
  ``optimizer.restart.every`` iterations) goes back to the best parameters so far, adds seeded
  noise and resets Adam, and starts a new cycle;
* gradient norms are clipped per field (and for the head); bounds are enforced by projection
  after every step (``learnables.py``);
* alternating optimisation (seed 6.2): the head first learns alone for ``head_first``
  iterations on images cached from the current sequence, then ``sequence`` sequence steps
  (head frozen) and ``head`` head steps alternate; the cache is refreshed at each switch;
* a NaN or inf in the loss, a gradient or a parameter stops the run with ``TrainingError``
  after writing the last good state to ``last_good.pt``;
* every ``output.checkpoint_every`` iterations ``checkpoint.pt`` (a ``mrzero.sequences.checkpoint``
  file that ``mrzero export`` reads) and ``resume.pt`` (optimiser states and history, read with
  ``weights_only=True``) are written; ``resume=True`` continues from them and gives the same
  result as an uninterrupted run, because every random draw is seeded by (seed, iteration);
* every ``output.report_every`` iterations a report row is drawn (``report.py``).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from mrzero.core.heads import build_head
from mrzero.sequences.adc_layout import derive_layout
from mrzero.sequences.checkpoint import load_checkpoint, save_checkpoint
from mrzero.sequences.sequence import Sequence
from mrzero.sequences.training.forward import ForwardModel, repetition_groups
from mrzero.sequences.training.learnables import Bounds, Learnables, free_mask
from mrzero.sequences.training.losses import Loss, LossParts, relative_error
from mrzero.sequences.training.recipe import Recipe, RecipeError
from mrzero.sequences.training.report import Report, t1_map_figure
from mrzero.sequences.training.schedule import Schedule
from mrzero.sequences.training.targets import Targets, build_sequence, make_phantoms

log = logging.getLogger(__name__)

#: Step-size units of the recipe (degrees, ms, cycles/FOV) to SI.
LR_TO_SI = {"flip": math.pi / 180, "rf_phase": math.pi / 180, "adc_phase": math.pi / 180,
            "duration": 1e-3, "moment": 1.0}
RESUME_FORMAT = "mrzero-training-state"


class TrainingError(RuntimeError):
    """Training cannot go on (NaN, unusable resume state); the message says what happened."""


@dataclass
class TrainingResult:
    """What a run produced; ``history`` holds one dict of loss parts per iteration."""

    sequence: Sequence
    head: torch.nn.Module | None
    history: list[dict[str, float]]
    out: Path
    final_checkpoint: Path
    held_out_error: float | None = None


def _draw(seed: int, iteration: int, salt: int) -> torch.Generator:
    """A generator for one iteration's random draws, independent of how the run got there."""
    return torch.Generator().manual_seed((seed * 1_000_003 + iteration) * 7 + salt)


class Trainer:
    """Runs one recipe; see the module docstring. ``out`` receives checkpoints and reports."""

    def __init__(self, recipe: Recipe, out: str | Path, device: str | None = None,
                 iterations: int | None = None, progress: bool = True) -> None:
        self.recipe, self.out, self.progress = recipe, Path(out), progress
        self.device = torch.device(device or recipe.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RecipeError(f"device: {self.device} requested but CUDA is not available")
        self.iterations = int(iterations or recipe.optimizer.iterations)
        torch.manual_seed(recipe.seed)
        r, spec = recipe, recipe.sequence
        built = build_sequence(spec.builder, spec.options, r.matrix, self.device)
        if spec.checkpoint:
            built = load_checkpoint(spec.checkpoint, device=self.device).sequence
        masks = {}
        for name, free in spec.learn.items():
            try:
                masks[name] = free_mask(built, name, free.reps, free.events, free.axes)
            except ValueError as exc:
                raise RecipeError(f"sequence.learn.{name}: {exc}") from exc
            if not bool(masks[name].any()):
                raise RecipeError(f"sequence.learn.{name}: selects no entry of the {built.name} sequence")
        start = built.clone()
        for name in spec.zero:
            # flips start at a tiny angle: the fast engine prunes states of exactly zero amplitude,
            # which would also remove the gradient that lets the flips grow
            value = math.radians(spec.zero_flip_deg) if name == "flip" else 0.0
            setattr(start, name, torch.full_like(getattr(start, name), value))
        bounds = Bounds(r.bounds.max_gradient_mT_m * 1e-3, r.bounds.min_duration_ms * 1e-3,
                        math.radians(r.bounds.max_flip_deg))
        self.learn = Learnables(start, masks, bounds) if masks else None
        if self.learn is not None:
            bad = self.learn.out_of_bounds()
            if bad:
                raise RecipeError(f"bounds: the fixed part of the sequence violates them: {'; '.join(bad)}")
        self.forward = ForwardModel(r.matrix, r.engine.name, dict(r.engine.options), r.recon.method,
                                    r.recon.iterations, r.recon.density, r.recon.split)
        self.phantoms = make_phantoms(r.phantom, r.matrix, self.device)
        self.held_out = make_phantoms(r.held_out, r.matrix, self.device) if r.held_out else []
        self.targets = Targets(r.target, self.forward, r.matrix, start, spec.builder, spec.options,
                               self.device)
        self.held_targets = Targets(r.target, self.forward, r.matrix, start, spec.builder, spec.options,
                                    self.device)
        reference = self.targets.reference or built
        self.reference = reference
        sar_ref = float(reference.sar_proxy()) or 1.0
        self.loss = Loss(r.loss.image, r.loss.compare, r.loss.sar, r.loss.time, sar_ref,
                         float(reference.total_duration()) or 1.0)
        self.n_images = len(repetition_groups(start)) if r.recon.split == "repetition" else 1
        self.head = self.head_config = None
        if r.head is not None:
            self.head_config = self._head_config(r)
            self.head = build_head(self.head_config).to(self.device)
        first = self.targets.get(0, self.phantoms[0])
        n_pred = self.n_images if r.head is None else 1
        if first.image.shape[0] != n_pred:
            raise RecipeError(f"target: gives {first.image.shape[0]} image(s) per phantom, the "
                              f"reconstruction{' head' if r.head else ''} produces {n_pred}")
        self.schedule = Schedule(r.optimizer.schedule, r.optimizer.restart.every or self.iterations,
                                 r.optimizer.final_factor)
        self.seq_opt = self._sequence_optimizer()
        self.head_opt = (torch.optim.Adam([{"params": list(self.head.parameters()), "lr": r.head.lr,
                                            "base_lr": r.head.lr}]) if self.head else None)
        self.history: list[dict[str, float]] = []
        self.best: dict[str, Any] = {"error": math.inf, "state": self._params(), "iteration": -1}
        self._good, self._good_iteration = self._params(), 0
        self.iteration = 0
        self._cache: dict[int, torch.Tensor] | None = None
        self._cache_phase = ""
        self.report = Report(self.out / "report")

    # ------------------------------------------------------------------ setup helpers
    def _head_config(self, r: Recipe) -> dict[str, Any]:
        h = r.head
        if h.kind == "mlp":
            return {"kind": "mlp", "n_in": self.n_images, "hidden": list(h.hidden), "scale": h.scale,
                    "features": h.features}
        return {"kind": "cnn", "n_in": self.n_images, "channels": h.channels, "layers": h.layers}

    def _sequence_optimizer(self) -> torch.optim.Adam | None:
        if self.learn is None:
            return None
        lr = self.recipe.optimizer.lr
        groups = [{"params": [p], "lr": lr[name] * LR_TO_SI[name], "base_lr": lr[name] * LR_TO_SI[name],
                   "name": name} for name, p in self.learn.params.items()]
        return torch.optim.Adam(groups)

    def _params(self) -> dict[str, Any]:
        seq = self.learn.state() if self.learn else {}
        head = {k: v.detach().clone() for k, v in self.head.state_dict().items()} if self.head else {}
        return {"sequence": seq, "head": head}

    def _load_params(self, state: dict[str, Any]) -> None:
        if self.learn:
            self.learn.load(state["sequence"])
        if self.head:
            self.head.load_state_dict(state["head"])

    def sequence(self) -> Sequence:
        """The current sequence (the start sequence when nothing of it is learnable)."""
        return self.learn.sequence() if self.learn else self.targets.trained

    # ------------------------------------------------------------------ one iteration
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

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return images if self.head is None else self.head(images)

    def _cached_images(self) -> dict[int, torch.Tensor]:
        if self._cache is None:
            seq = self.sequence()
            with torch.no_grad():
                self._cache = {i: self.forward(seq, ph) for i, ph in enumerate(self.phantoms)}
        return self._cache

    def _step_loss(self, i: int, phase: str) -> tuple[LossParts, torch.Tensor, int]:
        """The loss of iteration ``i``, averaged over its batch of phantoms: ``alternate.batch``
        cached images for a head step, ``alternate.sequence_batch`` simulations otherwise."""
        gen = _draw(self.recipe.seed, i, 1)
        n, a = len(self.phantoms), self.recipe.optimizer.alternate
        seq = self.sequence()
        if phase == "head":
            batch = torch.randperm(n, generator=gen)[: a.batch].tolist()
            images = self._cached_images()
        else:
            batch = ([int(torch.randint(n, (1,), generator=gen))] if a.sequence_batch == 1
                     else torch.randperm(n, generator=gen)[: a.sequence_batch].tolist())
            images = {idx: self.forward(seq, self.phantoms[idx]) for idx in batch}
        preds = {idx: self.predict(images[idx]) for idx in batch}
        parts_list = []
        for idx in batch:
            t = self.targets.get(idx, self.phantoms[idx])
            parts_list.append(self.loss(preds[idx], t.image, t.weight, seq))
        first = parts_list[0]
        parts = LossParts(torch.stack([p.image for p in parts_list]).mean(), first.sar, first.time,
                          sum(p.error for p in parts_list) / len(parts_list))
        return parts, preds[batch[0]].detach(), batch[0]

    def _finite(self) -> bool:
        tensors = list(self.learn.params.values()) if self.learn else []
        tensors += list(self.head.parameters()) if self.head else []
        return all(bool(torch.isfinite(t).all()) for t in tensors)

    def _stop_on_nan(self, i: int, what: str) -> None:
        path = self.out / "last_good.pt"
        state = self._good
        self._load_params(state)
        self._save_checkpoint(path, f"last good state before the {what} at iteration {i}")
        raise TrainingError(f"{what} at iteration {i}: training stopped; the last good state "
                            f"(after {self._good_iteration} iterations) is in {path}")

    def step(self, i: int) -> dict[str, float]:
        """One optimisation step at iteration ``i``; returns the loss parts and metrics."""
        r = self.recipe.optimizer
        cycle_i = i % r.restart.every if r.restart.every else i
        if r.restart.every and i and cycle_i == 0:
            self._restart(i)
        factor = self.schedule.factor(cycle_i)
        phase = self.phase(i)
        if phase != "head":
            self._cache = None
        if not self._finite():
            self._stop_on_nan(i, "a NaN or inf parameter")
        try:
            parts, pred, idx = self._step_loss(i, phase)
        except ValueError as exc:  # a non-finite sequence is refused by Sequence.validate
            if "not finite" in str(exc):
                self._stop_on_nan(i, "a NaN or inf sequence value")
            raise
        before = self._good  # the parameters this loss was computed with
        total = parts.total
        if not bool(torch.isfinite(total)):
            self._stop_on_nan(i, "a NaN or inf loss")
        for opt in (self.seq_opt, self.head_opt):
            if opt is not None:
                opt.zero_grad(set_to_none=True)
        total.backward()
        stepping = []
        if self.seq_opt is not None and phase in ("sequence", "joint"):
            stepping.append(self.seq_opt)
        if self.head_opt is not None and phase in ("head", "joint"):
            stepping.append(self.head_opt)
        for opt in stepping:
            for group in opt.param_groups:
                grads = [p.grad for p in group["params"] if p.grad is not None]
                if any(not bool(torch.isfinite(g).all()) for g in grads):
                    self._stop_on_nan(i, "a NaN or inf gradient")
                if r.clip:
                    torch.nn.utils.clip_grad_norm_(group["params"], r.clip)
                group["lr"] = group["base_lr"] * factor
            opt.step()
        if self.learn is not None:
            self.learn.project()
        if self._finite():
            self._good, self._good_iteration = self._params(), i + 1
        seq = self.sequence()
        record = {"iteration": i, **parts.as_dict(), "phase_head": float(phase == "head"),
                  "sar_rel": float(seq.sar_proxy().detach()) / self.loss.sar_ref, "lr_factor": factor,
                  "phantom": idx}
        self.history.append(record)
        if parts.error < self.best["error"] and phase != "head":
            self.best = {"error": parts.error, "state": before, "iteration": i}
        self._last_pred = pred
        return record

    def _restart(self, i: int) -> None:
        noise = self.recipe.optimizer.restart.noise
        self._load_params(self.best["state"])
        if self.learn is not None:
            gen = _draw(self.recipe.seed, i, 2)
            with torch.no_grad():
                for group in self.seq_opt.param_groups:
                    p = group["params"][0]
                    kick = torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device)
                    p.add_(noise * 10 * group["base_lr"] * kick * self.learn.masks[group["name"]])
            self.learn.project()
            self.seq_opt = self._sequence_optimizer()
        log.info("iteration %d: random restart from the best state (iteration %d, error %.2f %%), "
                 "optimizer reset", i, self.best["iteration"], 100 * self.best["error"])

    # ------------------------------------------------------------------ checkpoints
    def final_sequence(self) -> Sequence:
        """The current sequence, detached, with a readout layout derived from its trajectory when
        the moments were learned (the builder's Cartesian lines no longer hold)."""
        seq = self.sequence().clone()
        if self.learn is not None and "moment" in self.learn.masks:
            seq = replace(seq, readouts=derive_layout(seq.n_rep, seq.adc, seq.trajectory(),
                                                      self.recipe.matrix))
        return replace(seq, name=f"{self.recipe.name} (trained)")

    def _metadata(self, note: str) -> dict[str, Any]:
        last = self.history[-1] if self.history else {}
        meta: dict[str, Any] = {"provenance": {"recipe": self.recipe.name, "seed": self.recipe.seed,
                                               "iterations": len(self.history), "note": note,
                                               "last": last, "best_error": self.best["error"]}}
        if self.head_config is not None:
            meta["head_config"] = self.head_config
        return meta

    def _save_checkpoint(self, path: Path, note: str, figure: bytes | None = None) -> Path:
        return save_checkpoint(path, self.final_sequence(), self.head, self._metadata(note), figure)

    def save(self) -> None:
        """``checkpoint.pt`` (exportable) and ``resume.pt`` (everything to continue)."""
        self._save_checkpoint(self.out / "checkpoint.pt", f"iteration {self.iteration}")
        state = {"format": RESUME_FORMAT, "iteration": self.iteration, "params": self._params(),
                 "seq_opt": self.seq_opt.state_dict() if self.seq_opt else None,
                 "head_opt": self.head_opt.state_dict() if self.head_opt else None,
                 "history": json.dumps(self.history),
                 "best": {**self.best, "error": float(self.best["error"])}}
        tmp = self.out / "resume.pt.tmp"
        torch.save(state, tmp)
        tmp.replace(self.out / "resume.pt")

    def resume(self) -> None:
        """Continue from ``resume.pt`` in ``out``."""
        path = self.out / "resume.pt"
        if not path.is_file():
            raise TrainingError(f"--resume: no {path} to continue from (run without --resume first)")
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:  # foreign or truncated files raise many exception types
            raise TrainingError(f"{path}: not a training state ({type(exc).__name__}: {exc})") from exc
        if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT:
            raise TrainingError(f"{path}: not a {RESUME_FORMAT} file")
        self._load_params(state["params"])
        if self.seq_opt is not None:
            self.seq_opt.load_state_dict(state["seq_opt"])
        if self.head_opt is not None:
            self.head_opt.load_state_dict(state["head_opt"])
        self.history = json.loads(state["history"])
        self.best = state["best"]
        self.iteration = int(state["iteration"])
        self._good, self._good_iteration = self._params(), self.iteration
        log.info("resumed %s at iteration %d from %s", self.recipe.name, self.iteration, path)

    # ------------------------------------------------------------------ evaluation and run
    @torch.no_grad()
    def evaluate(self, phantoms: list | None = None) -> float:
        """Mean relative error of the current sequence (+ head) on ``phantoms`` (default: held-out)."""
        phantoms = self.held_out if phantoms is None else phantoms
        targets = self.held_targets if phantoms is self.held_out else self.targets
        errors = []
        for i, ph in enumerate(phantoms):
            t = targets.get(i, ph)
            pred = self.predict(self.forward(self.sequence(), ph))
            errors.append(float(relative_error(pred, t.image, t.weight, self.loss.compare)))
        return sum(errors) / max(len(errors), 1)

    def run(self) -> TrainingResult:
        """Train to ``iterations``; write checkpoints, reports and the final summary."""
        self.out.mkdir(parents=True, exist_ok=True)
        o = self.recipe.output
        log.info("training %s on %s from iteration %d to %d: start %s", self.recipe.name, self.device,
                 self.iteration, self.iterations, self.targets.trained.summary())
        bar = tqdm(range(self.iteration, self.iterations), desc=self.recipe.name, unit="it",
                   disable=not self.progress, initial=self.iteration, total=self.iterations)
        for i in bar:
            rec = self.step(i)
            self.iteration = i + 1
            bar.set_postfix(loss=f"{rec['loss']:.4f}", img=f"{rec['image']:.4f}", sar=f"{rec['sar']:.4f}",
                            err=f"{100 * rec['error']:.1f}%", sar_rel=f"{100 * rec['sar_rel']:.0f}%")
            if self.iteration % o.report_every == 0 or self.iteration == self.iterations:
                self._report(i)
                log.info("iteration %d: loss %.5f (image %.5f, SAR %.5f, time %.5f), error %.2f %%, "
                         "relative SAR %.1f %%", self.iteration, rec["loss"], rec["image"], rec["sar"],
                         rec["time"], 100 * rec["error"], 100 * rec["sar_rel"])
            if self.iteration % o.checkpoint_every == 0:
                self.save()
        self.save()
        held = self.evaluate() if self.held_out else None
        if held is not None and self.recipe.target.kind == "t1":
            self._t1_map()
        figure = self.report.summary(self.history, held, self.recipe.name)
        final = self._save_checkpoint(self.out / "final.pt", "final", figure)
        (self.out / "history.json").write_text(json.dumps(self.history))
        log.info("finished %s: error %.2f %% (best %.2f %% at %d), relative SAR %.1f %%%s; "
                 "final sequence in %s",
                 self.recipe.name, 100 * self.history[-1]["error"], 100 * self.best["error"],
                 self.best["iteration"], 100 * self.history[-1]["sar_rel"],
                 "" if held is None else f", held-out error {100 * held:.2f} %", final)
        return TrainingResult(self.final_sequence(), self.head, self.history, self.out, final, held)

    @torch.no_grad()
    def _t1_map(self) -> Path:
        """``report/t1_map.png``: the learned timings and the T1 map of the first held-out phantom."""
        ph = self.held_out[0]
        target = self.held_targets.get(0, ph)
        pred = self.predict(self.forward(self.sequence(), ph))
        title = (f"{self.recipe.name}: {ph.name}, relative T1 error "
                 f"{100 * float(relative_error(pred, target.image, target.weight, self.loss.compare)):.1f} %")
        return t1_map_figure(self.report.folder / "t1_map.png", self.sequence(), pred[0], target.image[0],
                             target.weight > 0, title)

    def _report(self, i: int) -> None:
        idx = int(self.history[-1]["phantom"])
        target = self.targets.get(idx, self.phantoms[idx]).image
        self.report.snapshot(i, self.sequence(), self._last_pred, target, self.history)
