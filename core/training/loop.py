"""The one training loop: MRzero sequences and heads, and the RoAR U-Net, are subclasses of it.

``TrainingLoop.run`` steps from ``iteration`` to ``iterations``. One step:

1. at the start of a restart cycle (every ``restart_every`` steps) go back to the best state and
   let the subclass perturb it and reset its optimisers (``restart``);
2. refuse non-finite parameters; take this rank's share of the step's batch (``batch``) and its
   loss (``loss``); back-propagate; sum gradients and metrics over ranks (``distributed.py``);
3. refuse a non-finite loss or gradient; per parameter group clip the gradient norm (``clip``)
   and set the step size to ``base_lr x lr_factor(step)``; step the optimisers of the step's
   phase (``stepping``); ``after_step`` (projections onto bounds);
4. record the step (``record``) in ``history``.

Around the steps: the full loss on a fixed evaluation set (``evaluation_set``,
``evaluation_loss``) at the start, every ``evaluate_every`` steps, before every restart and at
the end chooses the ``best`` state (lowest full loss, every penalty included); restarts resume
from it; the state file records it. Every ``report_every`` steps ``report_step``, every
``checkpoint_every`` steps the state file (``resume_file``: parameters, optimisers, history,
evaluations, best, CPU and CUDA RNG states) and ``write_checkpoint``. A NaN or inf anywhere stops
the run with ``TrainingError`` after ``write_last_good`` kept the last finite state. ``resume`` continues from
the state file exactly as an uninterrupted run would (subclasses draw their randomness from
(seed, step)). Progress is one tqdm bar; log records go through ``tqdm.write`` while it runs.
Under ``torchrun`` only rank 0 writes files, reports and shows progress.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from mrzero.core.training.distributed import Ranks, Share
from mrzero.core.training.state import TrainingError, load_state, save_state

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopSettings:
    """How often the loop evaluates, reports, checkpoints and restarts (in steps)."""

    name: str
    checkpoint_every: int
    report_every: int
    evaluate_every: int
    restart_every: int = 0  # 0: no restarts
    clip: float = 0.0  # gradient-norm clip per parameter group; 0: off
    evaluate_start: bool = True  # the start state is a candidate for "best"
    resume_file: str = "resume.pt"
    last_good_file: str = "last_good.pt"


@dataclass
class StepLoss:
    """This rank's part of a loss (the parts of all ranks sum to the batch's) and additive metrics."""

    total: torch.Tensor
    metrics: dict[str, float]


@contextmanager
def progress_bar(name: str, initial: int, total: int, enabled: bool) -> Iterator[tqdm]:
    """One tqdm bar; log records printed while it runs go above it instead of through it."""
    with logging_redirect_tqdm():
        bar = tqdm(
            desc=name, initial=initial, total=total, unit="it", disable=not enabled, dynamic_ncols=True
        )
        try:
            yield bar
        finally:
            bar.close()


def _due(iteration: int, every: int) -> bool:
    return every > 0 and iteration % every == 0


class TrainingLoop:
    """Checkpoint, resume, schedule, restarts, NaN guard, best state, progress, ranks; see the module."""

    def __init__(
        self,
        out: str | Path,
        settings: LoopSettings,
        iterations: int,
        device: torch.device,
        ranks: Ranks | None = None,
        progress: bool = True,
    ) -> None:
        self.out, self.settings, self.iterations = Path(out), settings, int(iterations)
        self.device, self.ranks = device, ranks or Ranks(device=device)
        self.progress = progress and self.ranks.main
        self.iteration = 0
        self.history: list[dict[str, float]] = []
        self.evaluations: list[dict[str, float]] = []
        self.best: dict[str, Any] = {"loss": math.inf, "iteration": -1, "metrics": {}, "state": None}
        self._good: tuple[dict[str, Any], int] | None = None

    # ------------------------------------------------------------------ what a subclass provides
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Every optimiser by name (their states go into the state file)."""
        raise NotImplementedError

    def stepping(self, step: int) -> list[str]:
        """Names of the optimisers that step at ``step`` (all of them unless phases alternate)."""
        return list(self.optimizers())

    def batch(self, step: int) -> list[int]:
        """The sample indices of ``step``, the same on every rank."""
        raise NotImplementedError

    def loss(self, step: int, share: Share) -> StepLoss:
        """The loss of this rank's ``share`` of the batch of ``step`` (differentiable)."""
        raise NotImplementedError

    def evaluation_set(self) -> list[int]:
        """The fixed samples the full loss is evaluated on to choose the best state."""
        raise NotImplementedError

    def evaluation_loss(self, share: Share) -> StepLoss:
        """The full loss (every penalty) of this rank's share of the evaluation set (no gradient)."""
        raise NotImplementedError

    def parameters(self) -> list[torch.Tensor]:
        """Every trained tensor (finiteness checks, the broadcast from rank 0)."""
        raise NotImplementedError

    def params_state(self) -> dict[str, Any]:
        """Copies of the trained tensors (best, last good, state file)."""
        raise NotImplementedError

    def load_params_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ optional hooks
    def lr_factor(self, step: int) -> float:
        """Step-size factor of ``step`` (times each group's ``base_lr``)."""
        return 1.0

    def before_step(self, step: int) -> None:
        """Called before the loss of ``step`` (e.g. to drop caches when the phase changes)."""

    def after_step(self, step: int) -> None:
        """Called after the optimisers stepped (projections onto bounds)."""

    def restart(self, step: int) -> None:
        """At a restart, after the best state was loaded: perturb it, reset the optimisers."""

    def record(self, step: int, metrics: dict[str, float], factor: float) -> dict[str, float]:
        """The history row of ``step`` from its rank-summed metrics."""
        return {"iteration": step, **metrics, "lr_factor": factor}

    def on_evaluation(self, metrics: dict[str, float], best: bool) -> None:
        """After an evaluation (every rank); ``best`` when it is the new best state."""

    def report_step(self, step: int) -> None:
        """Draw the report of ``step`` (rank 0 only)."""

    def log_step(self, record: dict[str, float]) -> str:
        """One line for the log at report steps and the progress bar's postfix."""
        return f"loss {record['loss']:.5g}"

    def write_checkpoint(self, note: str) -> None:
        """Problem-specific files beside the state file (rank 0 only), e.g. an exportable sequence."""

    def write_last_good(self, path: Path, note: str) -> None:
        """Keep the last finite state in ``path`` (rank 0 only); the parameters are loaded already."""
        torch.save(self.params_state(), path)

    def extra_state(self) -> dict[str, Any]:
        """Subclass state for the state file (weights_only types)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what ``extra_state`` saved."""

    # ------------------------------------------------------------------ the loop
    def _finite(self) -> bool:
        """Whether every trained tensor is finite (one device synchronisation, not one per tensor)."""
        tensors = self.parameters()
        return not tensors or bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())

    def stop_on_nan(self, step: int, what: str) -> None:
        """Load the last finite state, write it (rank 0) and raise ``TrainingError``."""
        state, good_iteration = self._good if self._good is not None else (self.params_state(), step)
        self.load_params_state(state)
        path = self.out / self.settings.last_good_file
        if self.ranks.main:
            self.out.mkdir(parents=True, exist_ok=True)
            self.write_last_good(path, f"last good state before the {what} at iteration {step}")
        raise TrainingError(
            f"{what} at iteration {step}: training stopped; the last good state "
            f"(after {good_iteration} iterations) is in {path}"
        )

    def step(self, i: int) -> dict[str, float]:
        """One optimisation step at iteration ``i``; returns its history row."""
        s = self.settings
        if _due(i, s.restart_every) and i:
            self._restart(i)
        if self._good is None:
            self._good = (self.params_state(), i)
        factor = self.lr_factor(i)
        names = self.stepping(i)
        self.before_step(i)
        if not self._finite():
            self.stop_on_nan(i, "a NaN or inf parameter")
        opts = self.optimizers()
        for opt in opts.values():
            opt.zero_grad(set_to_none=True)
        part = self.loss(i, self.ranks.share(self.batch(i)))
        if part.total.requires_grad:
            part.total.backward()
        metrics = self.ranks.sum_metrics({"loss": float(part.total.detach()), **part.metrics})
        if not math.isfinite(metrics["loss"]):
            self.stop_on_nan(i, "a NaN or inf loss")
        stepping = [opts[n] for n in names]
        self.ranks.sum_gradients([p for opt in stepping for g in opt.param_groups for p in g["params"]])
        for opt in stepping:
            for group in opt.param_groups:
                grads = [p.grad for p in group["params"] if p.grad is not None]
                if grads and not bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()):
                    self.stop_on_nan(i, "a NaN or inf gradient")
                if s.clip:
                    torch.nn.utils.clip_grad_norm_(group["params"], s.clip)
                group["lr"] = group.setdefault("base_lr", group["lr"]) * factor
            opt.step()
        self.after_step(i)
        if self._finite():
            self._good = (self.params_state(), i + 1)
        row = self.record(i, metrics, factor)
        self.history.append(row)
        return row

    def _restart(self, i: int) -> None:
        if self.best["state"] is not None:
            self.load_params_state(self.best["state"])
        self.restart(i)
        log.info(
            "iteration %d: random restart from the best state (iteration %d, full loss %.5g), "
            "optimizer reset",
            i,
            self.best["iteration"],
            self.best["loss"],
        )

    @torch.no_grad()
    def evaluate_full_loss(self) -> dict[str, float]:
        """The full loss on the evaluation set now; updates ``best`` and ``evaluations``."""
        samples = self.evaluation_set()
        part = self.evaluation_loss(self.ranks.share(samples))
        metrics = self.ranks.sum_metrics({"loss": float(part.total), **part.metrics})
        metrics["iteration"] = self.iteration
        better = math.isfinite(metrics["loss"]) and metrics["loss"] < self.best["loss"]
        if better:
            self.best = {
                "loss": metrics["loss"],
                "iteration": self.iteration,
                "metrics": dict(metrics),
                "state": self.params_state(),
            }
        self.evaluations.append(metrics)
        self.on_evaluation(metrics, better)
        return metrics

    def save(self) -> None:
        """The state file and the subclass's checkpoint files (rank 0)."""
        if not self.ranks.main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        self.write_checkpoint(f"iteration {self.iteration}")
        state = {
            "iteration": self.iteration,
            "params": self.params_state(),
            "optimizers": {n: o.state_dict() for n, o in self.optimizers().items()},
            "history": json.dumps(self.history),
            "evaluations": json.dumps(self.evaluations),
            "best": {
                **self.best,
                "metrics": json.dumps(self.best["metrics"]),
                "loss": float(self.best["loss"]),
            },
            "rng": torch.get_rng_state(),
            "cuda_rng": (
                torch.cuda.get_rng_state(self.device)
                if self.device.type == "cuda"
                else torch.empty(0, dtype=torch.uint8)
            ),
            "extra": self.extra_state(),
        }
        save_state(self.out / self.settings.resume_file, state)

    def resume(self, required: bool = True) -> bool:
        """Continue from the state file in ``out``; without one, ``TrainingError`` (or False when not
        ``required``)."""
        path = self.out / self.settings.resume_file
        if not required and not path.is_file():
            return False
        state = load_state(path, self.device)
        self.load_params_state(state["params"])
        opts = self.optimizers()
        for name, opt_state in state["optimizers"].items():
            opts[name].load_state_dict(opt_state)
        self.history = json.loads(state["history"])
        self.evaluations = json.loads(state["evaluations"])
        self.best = {**state["best"], "metrics": json.loads(state["best"]["metrics"])}
        self.iteration = int(state["iteration"])
        torch.set_rng_state(state["rng"].cpu())
        if self.device.type == "cuda" and state["cuda_rng"].numel():
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)
        self.load_extra_state(state["extra"])
        self._good = (self.params_state(), self.iteration)
        log.info("resumed %s at iteration %d from %s", self.settings.name, self.iteration, path)
        return True

    def train(self) -> None:
        """Step to ``iterations``, evaluating, reporting and checkpointing on the way."""
        s = self.settings
        if self.ranks.main:
            self.out.mkdir(parents=True, exist_ok=True)
        self.ranks.broadcast(self.parameters())
        if s.evaluate_start and not self.evaluations:
            self.evaluate_full_loss()
        with progress_bar(s.name, self.iteration, self.iterations, self.progress) as bar:
            for i in range(self.iteration, self.iterations):
                row = self.step(i)
                self.iteration = i + 1
                bar.update(1)
                bar.set_postfix_str(self.log_step(row))
                last = self.iteration == self.iterations
                if _due(self.iteration, s.evaluate_every) or _due(self.iteration, s.restart_every) or last:
                    self.evaluate_full_loss()
                if self.ranks.main and (_due(self.iteration, s.report_every) or last):
                    self.report_step(i)
                    log.info("%s iteration %d: %s", s.name, self.iteration, self.log_step(row))
                if _due(self.iteration, s.checkpoint_every):
                    self.save()
        self.save()
        self.ranks.barrier()
