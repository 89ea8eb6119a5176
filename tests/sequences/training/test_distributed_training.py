"""``torchrun --nproc-per-node 2 mrzero train``: two CPU ranks (gloo, 127.0.0.1) give the parameters
of one process over the same phantoms, resume under torchrun included, and only rank 0 writes."""

from __future__ import annotations

import json

import pytest
import torch
from torchrun_launch import MRZERO, TORCHRUN, torchrun_mrzero
from training_cases import DATA_PARALLEL

from mrzero.sequences.checkpoint import load_checkpoint
from mrzero.sequences.training import Trainer
from mrzero.sequences.training.recipe import parse_recipe

#: Summation order differs between ranks and one process (float32): parameters agree to ~1e-7.
TOLERANCE = 1e-5


def _train(recipe, out, *extra: str):
    return torchrun_mrzero("train", str(recipe), "-o", str(out), "--no-progress", "--threads", "1", *extra)


@pytest.mark.slow
@pytest.mark.skipif(not TORCHRUN.is_file() or not MRZERO.is_file(), reason="needs torchrun and mrzero")
def test_two_ranks_give_the_parameters_of_one_process_and_resume(tmp_path, single_torch_thread):
    recipe = tmp_path / "ddp.json"
    recipe.write_text(json.dumps(DATA_PARALLEL))
    one = Trainer(parse_recipe(DATA_PARALLEL), tmp_path / "one", progress=False).run()

    first = _train(recipe, tmp_path / "two", "--iterations", "2")
    assert first.stdout.count("ddp: 2 iterations") == 1  # rank 0 alone reports
    second = _train(recipe, tmp_path / "two", "--resume")
    assert "ddp: 4 iterations" in second.stdout

    two = load_checkpoint(tmp_path / "two" / "final.pt")
    assert torch.allclose(two.sequence.flip, one.sequence.flip, atol=TOLERANCE)
    assert torch.allclose(two.sequence.moment, one.sequence.moment, atol=TOLERANCE)
    assert not torch.allclose(
        one.sequence.flip, Trainer(parse_recipe(DATA_PARALLEL), tmp_path / "x").sequence().flip
    )
    head = one.head.state_dict()
    assert all(torch.allclose(two.head[k], head[k], atol=TOLERANCE) for k in head)
    history = json.loads((tmp_path / "two" / "history.json").read_text())
    assert [h["loss"] for h in history] == pytest.approx([h["loss"] for h in one.history], rel=TOLERANCE)
    assert two.metadata["provenance"]["best_iteration"] == one.best["iteration"]
