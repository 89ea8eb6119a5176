"""The one simulation interface: ``simulate(sequence, phantom, engine=..., device=...)``.

Returns the complex signal ``[coil, n_samples]`` in the ADC order of ``Sequence.trajectory()``,
``sum_voxels coil * Mxy`` with the sign conventions of ``core/units.py``; complex64 for
a float32 sequence, complex128 for float64 (for gradcheck). Differentiable in every sequence
tensor (flip, rf_phase, duration, moment, adc_phase) and device-agnostic: the simulation runs
on ``device`` (default: the sequence's), with the phantom moved there.

Engines (options in brackets, see each module):

* ``"fast"`` (default): configuration states, ``sequences/engines/configuration.py``
  [tolerance, max_states, checkpointing, progress];
* ``"isochromat"``: the seed's Algorithm 1, ``sequences/engines/isochromat.py``
  [spins, checkpointing, progress].
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable

import torch

from mrzero.sequences.engines.configuration import simulate_configurations
from mrzero.sequences.engines.isochromat import simulate_isochromats
from mrzero.sequences.engines.voxels import voxels_of
from mrzero.sequences.phantom import Phantom
from mrzero.sequences.sequence import Sequence, SequenceError

log = logging.getLogger(__name__)

ENGINES: dict[str, Callable[..., torch.Tensor]] = {
    "fast": simulate_configurations,
    "isochromat": simulate_isochromats,
}


def engine_options(engine: str) -> tuple[str, ...]:
    """The keyword options ``engine`` accepts."""
    params = inspect.signature(ENGINES[engine]).parameters.values()
    return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


def simulate(
    sequence: Sequence,
    phantom: Phantom,
    engine: str = "fast",
    device: torch.device | str | None = None,
    **options: object,
) -> torch.Tensor:
    """Simulate ``sequence`` on ``phantom``; see the module docstring."""
    if engine not in ENGINES:
        raise ValueError(f"unknown simulation engine {engine!r}; choose one of {sorted(ENGINES)}")
    unknown = set(options) - set(engine_options(engine))
    if unknown:
        raise TypeError(
            f"engine {engine!r} has no option(s) {sorted(unknown)}; it accepts {list(engine_options(engine))}"
        )
    if not isinstance(sequence, Sequence) or not isinstance(phantom, Phantom):
        raise TypeError(
            "simulate(sequence, phantom): expected a Sequence and a Phantom, got "
            f"{type(sequence).__name__} and {type(phantom).__name__}"
        )
    if sequence.n_event == 0:
        raise SequenceError("sequence has no events: every repetition needs at least one event")
    if not sequence.flip.is_floating_point():
        raise SequenceError(f"flip must be a floating tensor, got {sequence.flip.dtype}")
    sequence.validate()
    if device is not None and torch.device(device) != sequence.device:
        sequence = sequence.to(device)
    start = time.perf_counter()
    vox = voxels_of(phantom, sequence)
    signal = ENGINES[engine](sequence, vox, **options)
    log.info(
        "simulated %s on %s (%d voxels, %d coils) with the %s engine: %d samples in %.3f s",
        sequence.name,
        phantom.name,
        vox.n_voxels,
        signal.shape[0],
        engine,
        signal.shape[1],
        time.perf_counter() - start,
    )
    return signal
