"""Data-parallel training with ``torch.distributed``: which rank trains on which samples, and sums.

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) ``init_distributed`` joins the process
group: gloo on the CPU, NCCL on CUDA (each rank on ``cuda:LOCAL_RANK``). Every rank draws the same
batch of sample indices; ``Ranks.share`` gives rank ``r`` the indices ``r, r + world, ...``. Each
rank's loss is its share's part of the batch mean (``Share.per_sample``) plus its ``1 / world``
part of the terms that do not depend on the samples (``Share.shared``), so summing gradients
and metrics over ranks (``sum_gradients``, ``sum_metrics``) gives exactly the one-process batch,
up to the order of floating-point additions. Parameters start equal on every rank
(``broadcast``) and stay equal, because every rank applies the same summed gradient.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from mrzero.core.device import DeviceError, select_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Share:
    """This rank's ``indices`` of a batch of ``batch`` samples split over ``world`` ranks."""

    indices: list[int]
    batch: int
    world: int = 1

    def per_sample(self, summed: torch.Tensor) -> torch.Tensor:
        """This rank's part of the batch mean, from the sum of its samples' terms."""
        return summed / max(self.batch, 1)

    def shared(self, term: torch.Tensor) -> torch.Tensor:
        """This rank's part of a term that every rank computes alike (a penalty on the sequence)."""
        return term / self.world


@dataclass(frozen=True)
class Ranks:
    """This process's ``rank`` among ``world`` (one process: rank 0 of 1, nothing is communicated)."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        """Whether this rank writes checkpoints, reports and logs progress."""
        return self.rank == 0

    def share(self, indices: list[int]) -> Share:
        return Share(list(indices)[self.rank :: self.world], len(indices), self.world)

    def sum_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        """``metrics`` summed over ranks (every rank must pass the same keys)."""
        if self.world == 1:
            return metrics
        keys = sorted(metrics)
        values = torch.tensor([metrics[k] for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(values)
        return dict(zip(keys, values.tolist(), strict=True))

    def sum_gradients(self, params: list[torch.Tensor]) -> None:
        """Sum ``.grad`` over ranks in place; a tensor without a gradient on every rank keeps none
        (as in one process, where the optimiser then skips it)."""
        if self.world == 1 or not params:
            return
        present = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=self.device)
        dist.all_reduce(present)
        for p, anywhere in zip(params, present.tolist(), strict=True):
            if anywhere:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                dist.all_reduce(p.grad)

    def broadcast(self, tensors: list[torch.Tensor]) -> None:
        """Rank 0's values of ``tensors`` on every rank (in place)."""
        if self.world == 1:
            return
        with torch.no_grad():
            for t in tensors:
                dist.broadcast(t.data, src=0)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def init_distributed(device: torch.device) -> tuple[Ranks, torch.device]:
    """Join the ``torchrun`` process group when ``WORLD_SIZE`` > 1; returns the ranks and this rank's
    device (``cuda:LOCAL_RANK`` when ``device`` is CUDA). One process: ``Ranks()`` and ``device``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks(device=device), device
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        try:
            device = select_device(f"cuda:{local}")
        except DeviceError as exc:
            raise DeviceError(
                f"rank {rank} (local rank {local}): {exc}; start at most as many processes "
                f"per node as it has GPUs"
            ) from exc
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise DeviceError(f"data-parallel training runs on cpu (gloo) or cuda (NCCL), not {device}")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    log.info("rank %d of %d on %s (%s)", rank, world, device, dist.get_backend())
    return Ranks(rank, world, device), device


def shutdown_distributed() -> None:
    """Leave the process group (if one was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
