"""Checkpoints: plain torch.save files that load with weights_only=True, and their refusals."""

from __future__ import annotations

import pytest
import torch

from mrzero.sequences.builders import BUILDERS
from mrzero.sequences.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


class Pickled:
    """An arbitrary class: a file holding it must not load."""


def test_sequence_head_metadata_and_figure_round_trip(tmp_path):
    seq = BUILDERS["gre"](matrix=8)
    seq.free = {"flip": torch.ones_like(seq.flip, dtype=torch.bool)}
    head = torch.nn.Linear(3, 2)
    meta = {
        "pipeline": "cartesian",
        "head_config": {"kind": "mlp", "widths": [3, 2]},
        "provenance": {"loss": 0.125, "iterations": 40},
    }
    path = save_checkpoint(tmp_path / "run.pt", seq, head=head, metadata=meta, figure_png=b"\x89PNG fake")
    raw = torch.load(path, weights_only=True)  # the safety contract itself
    assert raw["format"] == "mrzero-checkpoint"
    back = load_checkpoint(path)
    for name in ("flip", "rf_phase", "rf_kind", "duration", "moment", "adc", "adc_phase"):
        assert torch.equal(getattr(back.sequence, name), getattr(seq, name)), name
    assert back.sequence.readouts == seq.readouts
    assert back.sequence.hints == seq.hints
    assert (back.sequence.fov, back.sequence.matrix, back.sequence.name) == (seq.fov, seq.matrix, seq.name)
    assert torch.equal(back.sequence.free["flip"], seq.free["flip"])
    assert torch.equal(back.head["weight"], head.weight.detach())
    assert back.metadata == meta
    assert back.figure_png == b"\x89PNG fake"


def test_unsafe_foreign_and_malformed_files_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"x": Pickled()}, tmp_path / "pickle.pt")
    with pytest.raises(CheckpointError, match="not a safe torch checkpoint"):
        load_checkpoint(tmp_path / "pickle.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an mrzero-checkpoint file"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save({"format": "mrzero-checkpoint", "version": 7}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="version 7 is not supported"):
        load_checkpoint(tmp_path / "future.pt")
    empty = {"format": "mrzero-checkpoint", "version": 1, "sequence": {"tensors": {}}}
    torch.save(empty, tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match="lacks the tensor"):
        load_checkpoint(tmp_path / "empty.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a safe torch checkpoint"):
        load_checkpoint(tmp_path / "text.pt")


def test_metadata_must_be_json_and_head_must_be_tensors(tmp_path):
    seq = BUILDERS["gre"](matrix=8)
    with pytest.raises(CheckpointError, match="JSON-serialisable"):
        save_checkpoint(tmp_path / "a.pt", seq, metadata={"when": object()})
    with pytest.raises(CheckpointError, match="head weights must be tensors"):
        save_checkpoint(tmp_path / "b.pt", seq, head={"w": [1.0, 2.0]})


def test_played_out_pulses_survive_the_checkpoint(tmp_path):
    from mrzero.sequences.sequence import RfOffsets

    seq = BUILDERS["gre"](matrix=4)
    r = seq.n_rep
    seq.rf_offsets = RfOffsets(
        torch.linspace(-434, 0, r), torch.full((r,), 2e-3), torch.full((r, 8), 1 / 8, dtype=torch.complex64)
    )
    back = load_checkpoint(save_checkpoint(tmp_path / "fs.pt", seq)).sequence
    for name in ("frequency", "duration", "shape"):
        assert torch.equal(getattr(back.rf_offsets, name), getattr(seq.rf_offsets, name))
    plain = load_checkpoint(save_checkpoint(tmp_path / "plain.pt", BUILDERS["gre"](matrix=4)))
    assert plain.sequence.rf_offsets is None
