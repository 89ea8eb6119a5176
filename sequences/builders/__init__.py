"""Builders of the papers' target sequences, one module per family; each returns a ``Sequence``.

Inputs are SI and radians; every builder documents its TE/TR/flip/matrix and attaches a
``ReadoutLayout`` (line/contrast/repetition per readout) for MRD export. ``free`` masks stay
empty: what is learnable is the training's choice.
"""

from collections.abc import Callable

from mrzero.sequences.builders.blocks import phase_order, rf_spoil_phases
from mrzero.sequences.builders.gre import flash
from mrzero.sequences.builders.inversion import inversion_gre
from mrzero.sequences.builders.mgre import mgre
from mrzero.sequences.builders.radial import radial_gre, spoke_angles
from mrzero.sequences.builders.rare import rare
from mrzero.sequences.sequence import Sequence

#: Builders by the short names of ``mrzero simulate --sequence``.
BUILDERS: dict[str, Callable[..., Sequence]] = {
    "gre": flash,
    "radial": radial_gre,
    "rare": rare,
    "t1": inversion_gre,
    "mgre": mgre,
}

__all__ = [
    "BUILDERS",
    "flash",
    "inversion_gre",
    "mgre",
    "phase_order",
    "radial_gre",
    "rare",
    "rf_spoil_phases",
    "spoke_angles",
]
