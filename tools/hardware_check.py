"""The hardware check of trained checkpoints, with the default limits and with them per axis only.

For each checkpoint this runs what ``mrzero train`` runs after training
(``mrzero.sequences.training.hardware.HardwareModel.check``): export within the limits, read the
file back (peak gradient and slew per axis and as a vector), import it with the project's Pulseq
import and simulate it beside the checkpoint's sequence on the recipe's first training phantom.
It does so twice: with the preset as given (``default``: vector limits) and with the same limits
per axis only (the export before vector limits), so that a run trained without the hardware model
can be compared with one trained with it (docs/training.md, "Hardware model").

Run: ``.venv/bin/python tools/hardware_check.py RECIPE CHECKPOINT ... [--preset default]``.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from mrzero.sequences.checkpoint import load_checkpoint
from mrzero.sequences.pulseq.system import hardware
from mrzero.sequences.simulate import simulate
from mrzero.sequences.training import load_recipe
from mrzero.sequences.training.hardware import HardwareModel
from mrzero.sequences.training.targets import make_phantoms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", help="recipe name or file (its phantom is simulated)")
    parser.add_argument("checkpoints", nargs="+", help="checkpoint files (final.pt of training runs)")
    parser.add_argument("--preset", default="default", help="hardware preset (default: default)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    recipe = load_recipe(args.recipe)
    phantom = make_phantoms(recipe.phantom, recipe.matrix, "cpu")[0]
    limits = hardware(args.preset)
    per_axis = dataclasses.replace(
        limits, name=f"{limits.name} per axis only", max_grad_vector=None, max_slew_vector=None
    )
    for path in args.checkpoints:
        seq = load_checkpoint(path).sequence
        for chosen in (limits, per_axis):
            check = HardwareModel(chosen).check(seq, lambda s: simulate(s, phantom))
            print(f"{path} [{chosen.name}]: {check.summary()}")


if __name__ == "__main__":
    main()
