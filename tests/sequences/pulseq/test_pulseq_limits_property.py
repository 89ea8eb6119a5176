"""Property: every file the export writes keeps the limits and timing, or the export refuses clearly."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pypulseq as pp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mrzero.sequences.pulseq.export import ExportError, ExportOptions, export, limit_violations
from mrzero.sequences.pulseq.system import hardware
from mrzero.sequences.sequence import Sequence


def random_sequence(seed: int, n_rep: int, n_event: int, scale: float) -> Sequence:
    """A 'learned' sequence: random durations, moments, ADC pattern, flips, phases and RF kinds."""
    rng = np.random.default_rng(seed)
    adc = rng.random((n_rep, n_event)) < 0.5
    adc[rng.integers(n_rep), rng.integers(n_event)] = True
    duration = rng.uniform(0, 3e-3, (n_rep, n_event)) * (rng.random((n_rep, n_event)) > 0.2)
    duration[adc] = rng.choice([0.0, 20e-6, 80e-6])
    moment = rng.normal(0, scale, (n_rep, n_event, 3))
    flip = np.radians(rng.uniform(-180, 400, n_rep)) * (rng.random(n_rep) > 0.2)
    return Sequence(
        flip=torch.tensor(flip, dtype=torch.float32),
        rf_phase=torch.tensor(rng.uniform(-10, 10, n_rep), dtype=torch.float32),
        duration=torch.tensor(duration, dtype=torch.float32),
        moment=torch.tensor(moment, dtype=torch.float32),
        adc=torch.tensor(adc),
        adc_phase=torch.tensor(rng.uniform(-10, 10, n_rep), dtype=torch.float32),
        rf_kind=torch.tensor(rng.integers(0, 3, n_rep)),
        name="random",
    )


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n_rep=st.integers(1, 4),
    n_event=st.integers(1, 6),
    scale=st.sampled_from([0.1, 2.0, 20.0, 200.0]),
    shape=st.sampled_from(["block", "sinc"]),
    preset=st.sampled_from(["default", "prisma"]),
)
def test_written_files_keep_limits_or_are_refused(seed, n_rep, n_event, scale, shape, preset):
    with tempfile.TemporaryDirectory() as tmp:
        check_export(
            random_sequence(seed, n_rep, n_event, scale),
            Path(tmp) / "random.seq",
            scale,
            hardware(preset),
            shape,
        )


def check_export(seq: Sequence, path: Path, scale: float, limits, shape: str) -> None:
    try:
        result = export(seq, path, limits=limits, options=ExportOptions(rf_shape=shape))
    except ExportError as exc:
        message = str(exc)
        assert message.startswith("rep ") and ("exceeds" in message or "cannot build" in message), message
        assert not path.exists()
        return
    written = pp.Sequence()
    written.read(str(path))
    ok, errors = written.check_timing()
    assert ok, errors
    assert limit_violations(written, limits) == []
    durations = np.array(list(written.block_durations.values()))
    np.testing.assert_allclose(durations / 10e-6, np.round(durations / 10e-6), atol=1e-6)
    # Stretching moves samples in time but never in k-space.
    k_adc, _, _, _, _ = written.calculate_kspace()
    k_model = seq.trajectory().double().numpy()
    np.testing.assert_allclose(k_adc.T * np.array(seq.fov), k_model, atol=1e-3 * max(1.0, scale))
    assert result.sar_proxy == math.fsum(float(f) ** 2 for f in seq.flip.double())
