"""Sequence builders: k-space coverage, timing (TE/TR), spoiling, RF kinds, readout layouts."""

from __future__ import annotations

import math

import pytest
import torch

from mrzero.sequences.adc_layout import derive_layout
from mrzero.sequences.builders import (
    BUILDERS,
    flash,
    inversion_gre,
    mgre,
    phase_order,
    radial_gre,
    rare,
    rf_spoil_phases,
)
from mrzero.sequences.builders.blocks import GOLDEN_ANGLE
from mrzero.sequences.sequence import EXCITATION, INVERSION, REFOCUSING, SequenceError


def grid_points(k: torch.Tensor) -> list[tuple[int, int]]:
    return [(int(x), int(y)) for x, y in k[:, :2].round().tolist()]


def rep_start_times(seq) -> torch.Tensor:
    """Start time (s) of every repetition (= its RF pulse)."""
    per_rep = seq.duration.double().sum(1)
    return torch.cumsum(per_rep, 0) - per_rep


def sample_times(seq) -> torch.Tensor:
    """``Sequence.sample_times`` in float64 (the sequences are float32; cumsum over a scan loses ~1e-8 s)."""
    return seq.to(dtype=torch.float64).sample_times()


def centre_sample_times(seq) -> list[float]:
    """Time since its repetition's RF of each readout's k = 0 sample."""
    t = sample_times(seq)
    starts = rep_start_times(seq)
    return [float(t[r.first + r.centre] - starts[r.rep]) for r in seq.readouts.readouts]


@pytest.mark.parametrize("order", ["linear", "centric"])
@pytest.mark.parametrize("n", [8, 9])
def test_cartesian_gre_covers_the_integer_grid_exactly_once(order, n):
    seq = flash(matrix=n, order=order, te=2e-3, tr=5e-3)
    k = seq.trajectory()
    assert k.shape == (n * n, 3)
    assert torch.allclose(k, k.round(), atol=1e-5) and float(k[:, 2].abs().max()) == 0
    points = grid_points(k)
    expected = {(x, y) for x in range(-(n // 2), n - n // 2) for y in range(-(n // 2), n - n // 2)}
    assert len(points) == len(set(points)) == n * n and set(points) == expected
    first_line = int(k[0, 1].round())
    assert first_line == (0 if order == "centric" else -(n // 2))


def test_phase_orders():
    assert phase_order(6, "linear") == [-3, -2, -1, 0, 1, 2]
    assert phase_order(6, "centric") == [0, -1, 1, -2, 2, -3]
    with pytest.raises(ValueError, match="phase order 'spiral' unknown"):
        phase_order(4, "spiral")


@pytest.mark.parametrize("te, tr, n", [(3e-3, 20e-3, 48), (5e-3, 11e-3, 32), (2e-3, 6e-3, 16)])
def test_gre_te_and_tr_are_what_was_asked(te, tr, n):
    seq = flash(matrix=n, te=te, tr=tr)
    per_rep = seq.duration.double().sum(1)
    assert torch.allclose(per_rep, torch.full_like(per_rep, tr), atol=1e-9)
    assert centre_sample_times(seq) == pytest.approx([te] * n, abs=1e-9)
    centre = seq.trajectory()[[r.first + r.centre for r in seq.readouts.readouts]]
    assert float(centre[:, 0].abs().max()) == 0  # the centre sample is kx = 0


def test_gre_refuses_impossible_timing_with_the_reason():
    with pytest.raises(ValueError, match=r"flash: TE 1.00 ms is 0.650 ms too short for the 33 samples"):
        flash(matrix=64, te=1e-3, dwell=50e-6)
    with pytest.raises(ValueError, match=r"flash: TR 4.00 ms .* too short"):
        flash(matrix=64, te=3e-3, tr=4e-3)
    with pytest.raises(ValueError, match="matrix must be at least 2"):
        flash(matrix=1)


def test_rf_spoiling_phases_grow_quadratically_and_adc_follows():
    seq = flash(matrix=16, te=2e-3, tr=5e-3)
    phi = seq.rf_phase.double()
    wrapped = torch.remainder(torch.diff(phi, n=2) - math.radians(117), 2 * math.pi)
    assert torch.allclose(
        torch.minimum(wrapped, 2 * math.pi - wrapped), torch.zeros(14, dtype=torch.float64), atol=1e-5
    )
    assert float(phi[0]) == 0 and float(phi[1]) == pytest.approx(math.radians(117), abs=1e-6)
    assert torch.allclose(seq.adc_phase.double(), phi + math.pi / 2)
    assert torch.equal(
        rf_spoil_phases(3),
        torch.remainder(torch.tensor([0.0, 1, 3], dtype=torch.float64) * math.radians(117), 2 * math.pi),
    )
    off = flash(matrix=16, te=2e-3, tr=5e-3, rf_spoiling=False)
    assert float(off.rf_phase.abs().max()) == 0


def test_gradient_spoiling_is_the_same_net_moment_every_tr():
    n = 16
    seq = flash(matrix=n, te=2e-3, tr=5e-3, spoiler=2.0)
    net = seq.moment.double().sum(1)
    assert torch.allclose(net[:, 0], torch.full((n,), 2.0 * n, dtype=torch.float64))
    assert float(net[:, 1:].abs().max()) == 0
    assert (seq.rf_kind == EXCITATION).all() and seq.free == {}


@pytest.mark.parametrize("scheme", ["golden", "uniform"])
def test_radial_spokes_pass_the_centre_at_the_requested_angles(scheme):
    n, spokes = 16, 10
    seq = radial_gre(matrix=n, spokes=spokes, angles=scheme, te=2e-3, tr=5e-3)
    k = seq.trajectory().double().reshape(spokes, n, 3)
    assert float(k[:, n // 2].abs().max()) < 1e-5  # sample n/2 is the centre
    step = math.pi / spokes if scheme == "uniform" else GOLDEN_ANGLE
    for j in range(spokes):
        direction = k[j, -1, :2] - k[j, 0, :2]
        angle = math.atan2(float(direction[1]), float(direction[0]))
        diff = (angle - j * step) % (2 * math.pi)
        assert min(diff, 2 * math.pi - diff) < 1e-5, j
        assert float(direction.norm()) == pytest.approx(n - 1, abs=1e-4)
    assert centre_sample_times(seq) == pytest.approx([2e-3] * spokes, abs=1e-9)
    assert seq.readouts.trajectory == "radial"
    assert [r.line for r in seq.readouts.readouts] == list(range(spokes))
    assert GOLDEN_ANGLE == pytest.approx(math.radians(111.246), abs=1e-5)


def test_rare_is_cpmg_with_refocusing_kinds_and_echo_times():
    n, esp = 16, 6e-3
    seq = rare(matrix=n, echo_spacing=esp)
    assert seq.rf_kind.tolist() == [EXCITATION] + [REFOCUSING] * n
    assert float(seq.flip[0]) == pytest.approx(math.pi / 2)
    assert torch.allclose(seq.flip[1:], torch.tensor(math.pi))
    assert float(seq.rf_phase[0]) == 0 and torch.allclose(seq.rf_phase[1:], torch.tensor(math.pi / 2))
    points = grid_points(seq.trajectory())
    assert len(set(points)) == n * n and {p[0] for p in points} == set(range(-(n // 2), n // 2))
    # echo j's centre at (j + 1) * ESP after the excitation, half an ESP after its refocusing pulse
    t = sample_times(seq)
    centres = torch.stack([t[r.first + r.centre] for r in seq.readouts.readouts])
    assert torch.allclose(centres, esp * torch.arange(1, n + 1, dtype=torch.float64), atol=1e-9)
    assert centre_sample_times(seq) == pytest.approx([esp / 2] * n, abs=1e-9)
    k = seq.trajectory()
    assert float(k[[r.first + r.centre for r in seq.readouts.readouts], 0].abs().max()) == 0
    with pytest.raises(ValueError, match="rare: echo spacing 1.00 ms cannot hold"):
        rare(matrix=64, echo_spacing=1e-3)


def test_inversion_blocks_time_ti_and_trec_and_count_repetitions():
    n, ti, trec = 8, [0.1, 0.5, 1.0], [0.0, 2.0, 0.3]
    seq = inversion_gre(matrix=n, ti=ti, trec=trec, te=3e-3, tr=6e-3)
    per_block = n + 2
    assert seq.n_rep == 3 * per_block
    for b in range(3):
        inv, rec = b * per_block, (b + 1) * per_block - 1
        assert int(seq.rf_kind[inv]) == INVERSION and float(seq.flip[inv]) == pytest.approx(math.pi)
        assert float(seq.duration[inv].sum()) == pytest.approx(ti[b])
        assert float(seq.flip[rec]) == 0 and float(seq.duration[rec].sum()) == pytest.approx(trec[b])
        assert torch.allclose(seq.flip[inv + 1 : rec], torch.tensor(math.radians(5)))
    reads = seq.readouts.readouts
    assert [r.repetition for r in reads] == [b for b in range(3) for _ in range(n)]
    assert reads[0].line == n // 2 and reads[n].line == n // 2  # centric: each block starts at ky = 0
    k = seq.trajectory().reshape(3, n * n, 3)
    assert all(len(set(grid_points(k[b]))) == n * n for b in range(3))
    assert torch.equal(seq.adc.sum(1)[::per_block], torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="one Trec per TI"):
        inversion_gre(ti=[0.1, 0.2], trec=[0.0])


def test_seed_t1_protocol_defaults():
    seq = inversion_gre()
    assert seq.matrix == (32, 32, 1) and seq.n_rep == 10 * 34
    assert centre_sample_times(seq)[:3] == pytest.approx([8e-3] * 3, abs=1e-9)
    assert float(seq.duration[1].sum()) == pytest.approx(15e-3)


def test_mgre_echo_times_and_echo_index():
    n = 8
    seq = mgre(matrix=n, n_echoes=10, tr=50e-3)
    tes = centre_sample_times(seq)
    expected = [4e-3 * (j + 1) for j in range(10)] * n
    assert tes == pytest.approx(expected, abs=1e-9)
    contrasts = [r.contrast for r in seq.readouts.readouts]
    assert contrasts == list(range(10)) * n
    k = seq.trajectory()
    for echo in range(10):
        reads = [r for r in seq.readouts.readouts if r.contrast == echo]
        idx = torch.cat([torch.arange(r.first, r.first + r.n) for r in reads])
        assert len(set(grid_points(k[idx]))) == n * n
    per_rep = seq.duration.double().sum(1)
    assert torch.allclose(per_rep, torch.full_like(per_rep, 50e-3))
    with pytest.raises(ValueError, match="mgre: echo spacing 1.00 ms is 0.600 ms too short for a 8-sample"):
        mgre(matrix=n, echo_spacing=1e-3, dwell=0.2e-3, te_first=2e-3)


def test_builder_layouts_agree_with_the_layout_derived_from_the_trajectory():
    for seq in [flash(matrix=8, te=2e-3, tr=5e-3, order="centric"), mgre(matrix=8, n_echoes=3)]:
        derived = derive_layout(seq.n_rep, seq.adc, seq.trajectory(), seq.matrix[1])
        assert derived.trajectory == "cartesian"
        assert [(r.rep, r.first, r.n, r.line, r.contrast, r.centre) for r in derived.readouts] == [
            (r.rep, r.first, r.n, r.line, r.contrast, r.centre) for r in seq.readouts.readouts
        ]
    radial = radial_gre(matrix=8, spokes=5)
    assert derive_layout(radial.n_rep, radial.adc, radial.trajectory(), 8).trajectory == "other"


def test_a_stale_layout_is_refused():
    seq = flash(matrix=8, te=2e-3, tr=5e-3)
    adc = seq.adc.clone()
    adc[3, 2] = False
    with pytest.raises(SequenceError, match="readouts: .*repetition 3"):
        type(seq)(**{**seq.__dict__, "adc": adc})


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_builder_makes_a_valid_sequence_in_the_requested_dtype(name):
    seq = BUILDERS[name](matrix=8, dtype=torch.float64, device="cpu")
    assert seq.duration.dtype == torch.float64 and seq.adc.dtype == torch.bool
    assert seq.readouts.n_samples == seq.n_samples and seq.free == {}
    assert seq.hints.readout_dwell > 0 and seq.matrix[:2] == (8, 8)
    assert float(seq.duration.min()) >= 0


def test_rf_and_gradient_spoiled_flash_reaches_the_ernst_signal():
    """Through the fast engine: one voxel, centre samples of the last lines vs the Ernst formula.

    A run with T2 = 1 ms (no transverse coherence left after a TR: Ernst holds exactly) calibrates
    the voxel's k-space weighting; with T2 = 40 ms only RF spoiling brings the mean back to
    Ernst, the gradient spoiler alone leaves a coherent steady state well below it.
    """
    from mrzero.sequences.phantoms import phantom_from_arrays
    from mrzero.sequences.simulate import simulate

    n, t1, tr, te, flip = 32, 0.05, 10e-3, 3e-3, math.radians(20)

    def centre_signal(t2: float, rf_spoiling: bool) -> torch.Tensor:
        pd = torch.zeros(n, n)
        pd[n // 2, n // 2] = 1
        voxel = phantom_from_arrays(pd, torch.full((n, n), t1), torch.full((n, n), t2))
        seq = flash(matrix=n, te=te, tr=tr, flip=flip, rf_spoiling=rf_spoiling, dtype=torch.float64)
        signal = simulate(seq, voxel, engine="fast")[0]
        return signal[[r.first + r.centre for r in seq.readouts.readouts]].abs()

    e1 = math.exp(-tr / t1)

    def ernst(t2: float) -> float:
        return math.sin(flip) * (1 - e1) / (1 - e1 * math.cos(flip)) * math.exp(-te / t2)

    weighting = centre_signal(1e-3, True) / ernst(1e-3)
    spoiled = float((centre_signal(0.04, True) / weighting)[-12:].mean())
    coherent = float((centre_signal(0.04, False) / weighting)[-12:].mean())
    assert spoiled == pytest.approx(ernst(0.04), rel=0.05)
    assert abs(coherent / ernst(0.04) - 1) > 0.1


def test_rare_echo_centres_are_spin_echoes():
    """Through the fast engine: B0 and T2' are refocused at every echo centre, T2 is not.

    A voxel without relaxation calibrates the k-space weighting (and must read real and
    positive: the CPMG and ADC phases); then a voxel with T2 = 50 ms, T2' = 4 ms and 30 Hz
    off-resonance gives exactly exp(-TE/T2) with zero phase at echo j, TE = (j + 1) * ESP.
    """
    from mrzero.sequences.phantoms import phantom_from_arrays
    from mrzero.sequences.simulate import simulate

    n, esp = 16, 6e-3
    seq = rare(matrix=n, echo_spacing=esp, dtype=torch.float64)
    centres = [r.first + r.centre for r in seq.readouts.readouts]

    def centre_signal(t2: float, t2dash: float, b0: float) -> torch.Tensor:
        pd = torch.zeros(n, n)
        pd[n // 2, n // 2] = 1

        def full(v: float) -> torch.Tensor:
            return torch.full((n, n), v)

        voxel = phantom_from_arrays(pd, full(1.0), full(t2), t2dash=full(t2dash), b0=full(b0))
        return simulate(seq, voxel, engine="fast")[0][centres]

    weighting = centre_signal(100.0, 0.0, 0.0)
    assert float(weighting.angle().abs().max()) < 1e-6 and float(weighting.real.min()) > 0
    ratio = centre_signal(0.05, 0.004, 30.0) / weighting
    te = esp * torch.arange(1, n + 1, dtype=torch.float64)
    assert torch.allclose(ratio.abs(), torch.exp(-te / 0.05), rtol=2e-3)
    assert float(ratio.angle().abs().max()) < 1e-4


def test_mgre_echoes_decay_with_t2star_and_precess_with_b0():
    """Through the fast engine: echo j of an mGRE carries exp(-TE_j/T2*) exp(-i 2 pi df TE_j).

    Taken on the first line (no earlier excitation leaves coherences behind), relative to a
    voxel without relaxation or off-resonance, which cancels the voxel's k-space weighting.
    """
    from mrzero.sequences.phantoms import phantom_from_arrays
    from mrzero.sequences.simulate import simulate

    n, t2, t2dash, df = 8, 0.06, 0.03, 20.0
    seq = mgre(matrix=n, n_echoes=5, dtype=torch.float64)
    first_line = [r for r in seq.readouts.readouts if r.rep == 0]

    def echoes(t2_: float, t2dash_: float, b0: float) -> torch.Tensor:
        pd = torch.zeros(n, n)
        pd[n // 2, n // 2] = 1

        def full(v: float) -> torch.Tensor:
            return torch.full((n, n), v)

        voxel = phantom_from_arrays(pd, full(1.0), full(t2_), t2dash=full(t2dash_), b0=full(b0))
        return simulate(seq, voxel, engine="fast")[0][[r.first + r.centre for r in first_line]]

    ratio = echoes(t2, t2dash, df) / echoes(100.0, 0.0, 0.0)
    te = 4e-3 * torch.arange(1, 6, dtype=torch.float64)
    expected = torch.exp(-te / t2 - te / t2dash) * torch.exp(-2j * math.pi * df * te)
    assert torch.allclose(ratio, expected, rtol=1e-3, atol=1e-4)


def test_inversion_blocks_follow_the_inversion_recovery_curve():
    """Through the fast engine: the first (centric, ky = 0) readout of each block after full
    recovery is proportional to 1 - 2 exp(-TI/T1), sign included."""
    from mrzero.sequences.phantoms import phantom_from_arrays
    from mrzero.sequences.simulate import simulate

    n, t1, ti = 8, 0.5, [0.05, 0.2, 0.6, 1.2]
    seq = inversion_gre(matrix=n, ti=ti, trec=5.0, te=3e-3, tr=6e-3, dtype=torch.float64)
    pd = torch.zeros(n, n)
    pd[n // 2, n // 2] = 1
    voxel = phantom_from_arrays(pd, torch.full((n, n), t1), torch.full((n, n), 0.05))
    signal = simulate(seq, voxel, engine="fast")[0]
    firsts = [r for r in seq.readouts.readouts if r.line == n // 2 and r.rep % (n + 2) == 1]
    assert [r.repetition for r in firsts] == [0, 1, 2, 3]
    ratio = signal[[r.first + r.centre for r in firsts]] / torch.tensor(
        [1 - 2 * math.exp(-t / t1) for t in ti], dtype=torch.float64
    )
    assert torch.allclose(ratio, ratio[0].expand(4), rtol=2e-3)
