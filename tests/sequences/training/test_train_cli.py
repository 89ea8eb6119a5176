"""``mrzero train``: a recipe file in, checkpoints, report and an exportable final sequence out."""

from __future__ import annotations

import json

import pytest
import torch
from training_cases import FROM_ZERO, recipe

from mrzero.cli import main
from mrzero.sequences.checkpoint import load_checkpoint


def test_train_command_writes_final_checkpoint_and_report(tmp_path, capsys):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(recipe(FROM_ZERO, output={"checkpoint_every": 1, "report_every": 2})))
    out = tmp_path / "run"
    assert main(["train", str(path), "--iterations", "2", "-o", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "tiny_from_zero: 2 iterations, relative error" in printed
    for name in (
        "final.pt",
        "checkpoint.pt",
        "resume.pt",
        "history.json",
        "report/summary.html",
        "report/summary.png",
        "report/iter_00001.png",
    ):
        assert (out / name).is_file(), name
    final = load_checkpoint(out / "final.pt")
    assert final.figure_png is not None and final.figure_png[:4] == b"\x89PNG"
    assert bool(final.sequence.free["moment"].any())
    assert len(json.loads((out / "history.json").read_text())) == 2
    # --resume continues to the new iteration count from resume.pt
    assert main(["train", str(path), "--iterations", "3", "-o", str(out), "--resume", "--no-progress"]) == 0
    assert len(json.loads((out / "history.json").read_text())) == 3
    assert torch.isfinite(load_checkpoint(out / "final.pt").sequence.moment).all()


def test_train_command_names_an_unknown_key(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nsequence:\n  learn: {flip: all}\noptimiser:\n  iterations: 3\n")
    assert main(["train", str(path), "-o", str(tmp_path / "out")]) == 2
    assert "unknown recipe key 'optimiser'" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


def test_train_command_refuses_negative_threads(tmp_path, capsys):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(FROM_ZERO))
    assert main(["train", str(path), "--threads", "-2", "-o", str(tmp_path / "out")]) == 2
    assert "--threads must be 0" in capsys.readouterr().out


def test_train_command_refuses_an_unavailable_device(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(FROM_ZERO))
    assert main(["train", str(path), "--device", "cuda:1", "-o", str(tmp_path / "out")]) == 2
    assert "device 'cuda:1' asked for, but torch sees no CUDA device" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()
