"""``--device`` of the simulation command goes through the one device selection: a device torch
cannot use ends the command at once (exit 2) with a line saying what torch sees."""

from __future__ import annotations

import pytest
import torch

from mrzero.cli import main


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_simulate_refuses_an_unavailable_device_before_simulating(tmp_path, capsys):
    out = tmp_path / "out"
    command = ["simulate", "--sequence", "gre", "--matrix", "8", "--device", "cuda:2", "-o", str(out)]
    assert main(command) == 2
    captured = capsys.readouterr()
    assert (
        "device 'cuda:2' asked for (--device), but torch sees no CUDA device" in captured.out + captured.err
    )
    assert not out.exists() or not any(out.iterdir())
