"""The core training loop on a one-parameter problem: best on the full loss, restarts from it,
resume equal to an uninterrupted run, the NaN guard, and how a batch is shared between ranks."""

from __future__ import annotations

import math

import pytest
import torch

from mrzero.core.training import LoopSettings, Ranks, Share, StepLoss, TrainingError, TrainingLoop


class Toy(TrainingLoop):
    """Fit ``w`` to samples ``y_k`` around 2 with a penalty ``lam w^2``: full-loss optimum near 1.

    Plain SGD with a step of 0.45 on a curvature of 4 overshoots: the iterates alternate around
    the optimum, so the iterate with the smallest data term (the first, w ~ 1.8) is not the one
    with the smallest full loss (the last)."""

    def __init__(
        self, out, steps: int = 6, restart_every: int = 0, lam: float = 1.0, lr: float = 0.45
    ) -> None:
        settings = LoopSettings(
            "toy", checkpoint_every=3, report_every=100, evaluate_every=1, restart_every=restart_every
        )
        super().__init__(out, settings, steps, torch.device("cpu"), progress=False)
        self.y = 2 + 0.1 * torch.randn(8, generator=torch.Generator().manual_seed(0))
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.lam = lam
        self.opt = torch.optim.SGD([self.w], lr=lr)
        self.restarted_at: list[tuple[int, float]] = []
        self.w_evaluated: list[float] = []

    def optimizers(self):
        return {"w": self.opt}

    def parameters(self):
        return [self.w]

    def params_state(self):
        return {"w": self.w.detach().clone()}

    def load_params_state(self, state):
        with torch.no_grad():
            self.w.copy_(state["w"])

    def batch(self, step):
        return torch.randperm(8, generator=torch.Generator().manual_seed(step))[:4].tolist()

    def loss(self, step, share):
        return self._loss(share)

    def evaluation_set(self):
        return list(range(8))

    def evaluation_loss(self, share):
        return self._loss(share)

    def _loss(self, share: Share) -> StepLoss:
        data = share.per_sample(((self.w - self.y[share.indices]) ** 2).sum())
        penalty = share.shared(self.lam * (self.w**2).sum())
        return StepLoss(data + penalty, {"data": float(data.detach())})

    def restart(self, step):
        self.restarted_at.append((step, float(self.w.detach())))

    def on_evaluation(self, metrics, best):
        self.w_evaluated.append(float(self.w.detach()))


def test_best_is_chosen_on_the_full_loss_not_on_the_data_term(tmp_path):
    toy = Toy(tmp_path)
    toy.train()
    evaluations = toy.evaluations
    assert [e["iteration"] for e in evaluations] == list(range(7))  # the start, then every step
    full = min(range(7), key=lambda i: evaluations[i]["loss"])
    data = min(range(7), key=lambda i: evaluations[i]["data"])
    assert data == 1 and full == 6  # the overshooting first step fits the data best
    assert toy.best["iteration"] == 6 and toy.best["loss"] == pytest.approx(evaluations[6]["loss"])
    assert float(toy.best["state"]["w"]) == pytest.approx(float(toy.w.detach()))


def test_restarts_go_back_to_the_best_state(tmp_path):
    toy = Toy(tmp_path, steps=7, restart_every=3, lr=0.6)  # steps of 0.6 diverge: the start stays best
    toy.train()
    assert [step for step, _ in toy.restarted_at] == [3, 6]
    for step, w in toy.restarted_at:
        seen = [i for i, e in enumerate(toy.evaluations) if e["iteration"] <= step]
        best = min(seen, key=lambda i: toy.evaluations[i]["loss"])
        assert w == toy.w_evaluated[best]  # the restart starts from the best state evaluated so far
    assert toy.restarted_at == [(3, 0.0), (6, 0.0)] and abs(toy.w_evaluated[3]) > 1


def test_resume_continues_exactly_as_an_uninterrupted_run(tmp_path):
    full = Toy(tmp_path / "full", steps=6, restart_every=4)
    full.train()
    first = Toy(tmp_path / "split", steps=3, restart_every=4)
    first.train()
    second = Toy(tmp_path / "split", steps=6, restart_every=4)
    second.resume()
    assert second.iteration == 3
    second.train()
    assert [h["loss"] for h in second.history] == [h["loss"] for h in full.history]
    assert second.best["iteration"] == full.best["iteration"]
    assert float(second.w.detach()) == float(full.w.detach())


def test_a_nan_stops_the_run_and_keeps_the_last_finite_state(tmp_path):
    toy = Toy(tmp_path, steps=2)
    toy.train()
    kept = float(toy.w.detach())
    toy.y.fill_(math.nan)
    toy.iterations = 6
    with pytest.raises(TrainingError, match="NaN or inf loss at iteration 2.*after 2 iterations"):
        toy.train()
    assert float(torch.load(tmp_path / "last_good.pt", weights_only=True)["w"]) == kept


def test_a_foreign_state_file_is_refused(tmp_path):
    torch.save({"model": torch.zeros(1)}, tmp_path / "resume.pt")
    with pytest.raises(TrainingError, match="not a mrzero-training-state"):
        Toy(tmp_path).resume()
    with pytest.raises(TrainingError, match="no .*missing.pt"):
        Toy(tmp_path / "missing.pt").resume()


def test_ranks_share_a_batch_so_that_their_parts_sum_to_the_batch():
    batch = [7, 3, 5, 0, 2]
    shares = [Ranks(r, 3).share(batch) for r in range(3)]
    assert [s.indices for s in shares] == [[7, 0], [3, 2], [5]]
    assert sorted(i for s in shares for i in s.indices) == sorted(batch)
    term = torch.tensor(6.0)
    assert sum(float(s.shared(term)) for s in shares) == pytest.approx(6.0)
    assert sum(float(s.per_sample(torch.tensor(float(len(s.indices))))) for s in shares) == pytest.approx(1.0)
    assert Ranks().share(batch) == Share(batch, 5, 1)
