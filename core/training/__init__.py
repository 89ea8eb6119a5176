"""The training loop shared by MRzero sequence learning and RoAR (``loop.py``), its step-size
schedules (``schedule.py``), the resume state file (``state.py``) and data parallelism across
``torchrun`` ranks (``distributed.py``). See docs/training.md."""

from mrzero.core.training.distributed import Ranks, Share, init_distributed, shutdown_distributed
from mrzero.core.training.loop import LoopSettings, StepLoss, TrainingLoop, progress_bar
from mrzero.core.training.schedule import Schedule
from mrzero.core.training.state import TrainingError

__all__ = [
    "LoopSettings",
    "Ranks",
    "Schedule",
    "Share",
    "StepLoss",
    "TrainingError",
    "TrainingLoop",
    "init_distributed",
    "progress_bar",
    "shutdown_distributed",
]
