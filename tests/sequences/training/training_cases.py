"""Small recipes for the training tests (8x8 matrices, a few iterations)."""

from __future__ import annotations

import copy
from typing import Any

#: GRE encoding from zero on an 8x8 brain phantom (the shape of gre_from_zero, tiny).
FROM_ZERO: dict[str, Any] = {
    "name": "tiny_from_zero",
    "seed": 3,
    "matrix": 8,
    "sequence": {
        "builder": "gre",
        "options": {"flip_deg": 5, "te_ms": 3, "tr_ms": 20},
        "zero": ["flip", "rf_phase", "moment"],
        "learn": {"flip": "all", "rf_phase": "all", "moment": {"axes": "xy"}},
    },
    "target": {"kind": "sequence"},
    "engine": {"name": "fast", "options": {"tolerance": 0.001, "max_states": 256}},
    "optimizer": {"iterations": 5, "lr": {"flip": 1.0, "rf_phase": 5.0, "moment": 0.3}},
    "output": {"checkpoint_every": 2, "report_every": 4},
}

#: T1 from ten inversion blocks with an MLP head, alternating (the shape of t1_mapping, tiny).
T1: dict[str, Any] = {
    "name": "tiny_t1",
    "seed": 1,
    "matrix": 4,
    "sequence": {
        "builder": "t1",
        "options": {"ti_ms": [0, 0, 0], "trec_ms": 0, "te_ms": 8, "tr_ms": 15, "flip_deg": 5},
        "learn": {"duration": {"reps": ["inversion", "recovery"], "events": [0]}},
    },
    "target": {"kind": "t1"},
    "phantom": {"kind": "sparse", "samples": 3, "block": [2, 2]},
    "recon": {"split": "repetition"},
    "head": {"kind": "mlp", "hidden": [8, 8, 8], "lr": 0.01},
    "optimizer": {
        "iterations": 7,
        "lr": {"duration": 50.0},
        "alternate": {"head_first": 2, "sequence": 2, "head": 1, "batch": 2},
    },
    "output": {"checkpoint_every": 5, "report_every": 5},
}


#: The T1 head alone on a fixed IR sequence (8x8): tissue-block samples, a held-out sample set.
T1_HEAD: dict[str, Any] = {
    "name": "tiny_t1_head",
    "seed": 0,
    "matrix": 8,
    "sequence": {
        "builder": "t1",
        "options": {"ti_ms": [50, 250, 700, 1600], "trec_ms": 500, "te_ms": 8, "tr_ms": 15, "flip_deg": 5},
    },
    "target": {"kind": "t1", "threshold": 0.1, "relative": True},
    "phantom": {"kind": "sparse", "samples": 8, "block": [2, 2], "n_blocks": 6, "spread": 0.2},
    "held_out": {"kind": "sparse", "samples": 2, "block": [2, 2], "n_blocks": 6, "spread": 0.2, "seed": 100},
    "recon": {"split": "repetition"},
    "head": {"kind": "mlp", "hidden": [32, 32, 32], "lr": 0.01, "features": "complex"},
    "loss": {"compare": "complex"},
    "optimizer": {"iterations": 300, "final_factor": 0.1, "alternate": {"head_first": 300, "batch": 8}},
    "output": {"checkpoint_every": 300, "report_every": 300},
}


def recipe(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with top-level keys replaced."""
    out = copy.deepcopy(base)
    out.update(changes)
    return out


#: Data-parallel case (8x8): batches of 3 of 5 sparse phantoms (a rank gets 2 or 1), a CNN head
#: trained jointly, a SAR penalty (shared by the ranks) and a restart from the best state.
DATA_PARALLEL: dict[str, Any] = {
    "name": "ddp",
    "seed": 2,
    "matrix": 8,
    "sequence": {
        "builder": "gre",
        "options": {"flip_deg": 5, "te_ms": 3, "tr_ms": 20},
        "learn": {"flip": "all", "moment": {"axes": "xy"}},
    },
    "target": {"kind": "sequence", "options": {"flip_deg": 10, "te_ms": 3, "tr_ms": 20}},
    "phantom": {"kind": "sparse", "samples": 5, "block": [2, 2], "n_blocks": 3},
    "engine": {"name": "fast", "options": {"tolerance": 0.001, "max_states": 128}},
    "head": {"kind": "cnn", "channels": 4, "layers": 2, "lr": 0.01},
    "loss": {"sar": 0.1},
    "optimizer": {
        "iterations": 4,
        "lr": {"flip": 1.0, "moment": 0.05},
        "restart": {"every": 2, "noise": 0.2},
        "alternate": {"sequence_batch": 3, "batch": 4},
    },
    "output": {"checkpoint_every": 2, "report_every": 100},
}
