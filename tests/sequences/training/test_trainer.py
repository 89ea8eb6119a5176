"""The training loop on tiny problems: learning from zero, determinism, resume, NaN guard, alternation."""

from __future__ import annotations

import json
import math

import pytest
import torch
from training_cases import FROM_ZERO, T1, T1_HEAD, recipe

from mrzero.sequences.checkpoint import load_checkpoint
from mrzero.sequences.training import Trainer, TrainingError
from mrzero.sequences.training.recipe import RecipeError, parse_recipe


def _spread(seq) -> float:
    return float(seq.trajectory().detach()[:, :2].abs().max())


def test_from_zero_loss_drops_and_kspace_spreads(tmp_path):
    trainer = Trainer(parse_recipe(FROM_ZERO), tmp_path, progress=False)
    assert _spread(trainer.sequence()) == 0.0  # every moment starts at zero: one k-space point
    result = trainer.run()
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < 0.6 * losses[0]
    assert result.history[0]["error"] > 0.5  # the collapsed start is far off (the seed: ~1000 % at 48x48)
    assert _spread(result.sequence) > 0.5
    assert (tmp_path / "report" / "summary.png").stat().st_size > 1000
    assert "relative error" in (tmp_path / "report" / "summary.html").read_text()
    rows = sorted(p.name for p in (tmp_path / "report").glob("iter_*.png"))
    assert rows == ["iter_00003.png", "iter_00004.png"]
    final = load_checkpoint(result.final_checkpoint)
    assert torch.allclose(final.sequence.moment, result.sequence.moment)
    assert final.sequence.readouts is not None and final.metadata["provenance"]["iterations"] == 5


def test_same_seed_same_run_and_resume_continues_identically(tmp_path):
    rec = recipe(
        FROM_ZERO,
        optimizer={**FROM_ZERO["optimizer"], "iterations": 3, "restart": {"every": 2, "noise": 0.5}},
        output={"checkpoint_every": 2, "report_every": 100},
    )
    full = Trainer(parse_recipe(rec), tmp_path / "full", progress=False).run()
    first = Trainer(parse_recipe(rec), tmp_path / "split", iterations=2, progress=False).run()
    assert [h["loss"] for h in first.history] == [h["loss"] for h in full.history[:2]]  # same seed, same run
    resumed = Trainer(parse_recipe(rec), tmp_path / "split", progress=False)
    resumed.resume()
    assert resumed.iteration == 2
    out = resumed.run()
    assert [h["loss"] for h in out.history] == pytest.approx([h["loss"] for h in full.history], rel=1e-5)
    assert torch.allclose(out.sequence.moment, full.sequence.moment, atol=1e-5)


def test_nan_stops_the_run_and_keeps_the_last_good_state(tmp_path):
    trainer = Trainer(parse_recipe(FROM_ZERO), tmp_path, iterations=2, progress=False)
    trainer.run()
    good = trainer.learn.state()
    with torch.no_grad():
        trainer.learn.params["flip"][3] = math.nan
    trainer.iterations = 4
    with pytest.raises(TrainingError, match="NaN or inf parameter at iteration 2"):
        trainer.run()
    kept = load_checkpoint(tmp_path / "last_good.pt")
    assert bool(torch.isfinite(kept.sequence.flip).all())
    assert torch.allclose(kept.sequence.flip, good["flip"])


def test_resume_without_state_fails_clearly(tmp_path):
    trainer = Trainer(parse_recipe(FROM_ZERO), tmp_path, progress=False)
    with pytest.raises(TrainingError, match="no .*resume.pt"):
        trainer.resume()


def test_alternating_sequence_and_head_with_a_t1_target(tmp_path):
    trainer = Trainer(parse_recipe(T1), tmp_path, progress=False)
    assert [trainer.phase(i) for i in range(7)] == [
        "head",
        "head",
        "sequence",
        "sequence",
        "head",
        "sequence",
        "sequence",
    ]
    timings_before = trainer.sequence().duration[:, 0].clone()
    head_before = [p.detach().clone() for p in trainer.head.parameters()]
    result = trainer.run()
    # TI/Trec grew from 0 (or from the shortest time the hardware model allows: 2.2 ms for TI)
    assert bool((result.sequence.duration[:, 0] > timings_before + 1e-3).any())
    assert any(not torch.equal(a, b) for a, b in zip(head_before, trainer.head.parameters(), strict=True))
    final = load_checkpoint(result.final_checkpoint)
    assert final.head is not None and final.metadata["head_config"]["kind"] == "mlp"
    assert final.metadata["head_config"]["n_in"] == 3


def test_target_image_of_the_wrong_shape_fails_naming_the_key(tmp_path):
    import numpy as np

    path = tmp_path / "target.npy"
    np.save(path, np.ones((7, 8), dtype=np.float32))
    rec = recipe(FROM_ZERO, target={"kind": "image", "path": str(path)})
    with pytest.raises(RecipeError, match=r"target\.path: image .* has shape \(1, 7, 8\)"):
        Trainer(parse_recipe(rec), tmp_path / "out", progress=False)


def test_fixed_flips_outside_the_bounds_fail_naming_the_key(tmp_path):
    rare_flips = {"builder": "rare", "options": {}, "learn": {"flip": {"reps": "refocusing"}}}
    rec = recipe(
        FROM_ZERO, sequence=rare_flips, bounds={"max_flip_deg": 60}
    )  # the fixed 90 deg excitation cannot comply
    with pytest.raises(RecipeError, match="bounds: .*max_flip_deg"):
        Trainer(parse_recipe(rec), tmp_path, progress=False)


def test_all_zero_flips_simulate_to_zero_signal():
    """The literal all-zero start of the seed: no transverse state survives, the signal is 0, no crash."""
    from mrzero.sequences.builders import flash
    from mrzero.sequences.phantoms import brain_phantom
    from mrzero.sequences.simulate import simulate

    seq = flash(matrix=8)
    seq.flip = torch.zeros_like(seq.flip)
    signal = simulate(seq, brain_phantom((8, 8)))
    assert signal.shape == (1, 64) and float(signal.abs().max()) == 0.0


def test_t1_head_learns_relative_t1_on_held_out_samples_and_draws_the_map(tmp_path, single_torch_thread):
    trainer = Trainer(parse_recipe(T1_HEAD), tmp_path, progress=False)
    untrained = trainer.evaluate()
    assert untrained > 0.8  # a fresh head outputs ~0 s: the RMS relative error starts near 100 %
    result = trainer.run()
    assert result.held_out_error < 0.35 * untrained  # measured: 24 % after 300 steps on 8 samples
    assert (tmp_path / "report" / "t1_map.png").stat().st_size > 5000


def test_t1_target_counts_tissue_above_the_threshold_by_its_relative_error(tmp_path, single_torch_thread):
    trainer = Trainer(parse_recipe(T1_HEAD), tmp_path, iterations=1, progress=False)
    ph = trainer.phantoms[0]
    target = trainer.targets.get(0, ph)
    tissue = ph.pd > 0.1
    assert bool((target.weight[~tissue] == 0).all())
    assert torch.allclose(target.weight[tissue] * ph.t1[tissue], torch.ones(int(tissue.sum())))
    assert torch.allclose(target.image[0][tissue], ph.t1[tissue])


def test_head_last_and_batched_sequence_steps(tmp_path, single_torch_thread):
    alternate = {"head_first": 1, "sequence": 2, "head": 1, "head_last": 2, "batch": 2, "sequence_batch": 2}
    rec = recipe(T1, optimizer={**T1["optimizer"], "iterations": 6, "alternate": alternate})
    trainer = Trainer(parse_recipe(rec), tmp_path, progress=False)
    assert [trainer.phase(i) for i in range(6)] == ["head", "sequence", "sequence", "head", "head", "head"]
    timings_before = trainer.sequence().duration[:, 0].clone()
    result = trainer.run()
    assert bool((result.sequence.duration[:, 0] > timings_before + 1e-3).any())
    with pytest.raises(RecipeError, match="optimizer.alternate.sequence_batch"):
        parse_recipe(
            recipe(T1, optimizer={**T1["optimizer"], "alternate": {**alternate, "sequence_batch": 0}})
        )


def test_best_is_the_lowest_full_loss_with_penalties_and_every_checkpoint_records_it(tmp_path):
    rec = recipe(FROM_ZERO, loss={"sar": 0.5}, optimizer={**FROM_ZERO["optimizer"], "iterations": 4})
    result = Trainer(parse_recipe(rec), tmp_path, progress=False).run()
    evaluations = json.loads((tmp_path / "evaluations.json").read_text())
    assert [e["iteration"] for e in evaluations] == [0, 2, 4]  # start, checkpoints, end
    for e in evaluations:
        assert e["sar"] > 0 and e["loss"] == pytest.approx(e["image"] + e["sar"] + e["time"], rel=1e-5)
        assert {"err_k0-4", "err_k4-8"} <= set(e)
    best = min(evaluations, key=lambda e: e["loss"])
    assert result.best["iteration"] == best["iteration"] and result.best["loss"] == best["loss"]
    for name in ("checkpoint.pt", "final.pt", "best.pt"):
        provenance = load_checkpoint(tmp_path / name).metadata["provenance"]
        assert provenance["best_iteration"] == best["iteration"], name
        assert provenance["best_error"] == pytest.approx(best["error"]), name
    assert "error at |k| 4-8 cycles/FOV" in (tmp_path / "report" / "summary.html").read_text()


def test_a_head_only_run_records_a_finite_best(tmp_path, single_torch_thread):
    """The t1_mapping bundle's protocol said best_error: Infinity: only sequence steps could be best."""
    rec = recipe(
        T1,
        sequence={**T1["sequence"], "learn": {}},
        optimizer={"iterations": 4, "alternate": {"batch": 2}},
        output={"checkpoint_every": 2, "report_every": 4},
    )
    result = Trainer(parse_recipe(rec), tmp_path, progress=False).run()
    assert all(h["phase_head"] == 1.0 for h in result.history)
    provenance = load_checkpoint(result.final_checkpoint).metadata["provenance"]
    assert math.isfinite(provenance["best_error"]) and provenance["best_iteration"] in (0, 2, 4)


def test_zero_starts_only_the_free_entries_at_zero_and_keeps_the_spoiler(tmp_path):
    """Encoding learned from zero with the built spoiling kept: the moments up to each line's last
    sample start at 0, the rewinder + spoiler after it and the RF-spoiling phases stay as built."""
    rec = recipe(
        FROM_ZERO,
        sequence={
            **FROM_ZERO["sequence"],
            "zero": ["flip", "moment"],
            "learn": {"flip": "all", "moment": {"axes": "xy", "events": "encoding"}},
        },
    )
    trainer = Trainer(parse_recipe(rec), tmp_path, progress=False)
    built = trainer.reference  # the target: the builder's own sequence
    seq = trainer.sequence()
    assert _spread(seq) == 0.0
    spoiler = seq.moment[:, -1].detach()
    assert torch.equal(spoiler, built.moment[:, -1]) and float(spoiler.abs().max()) > 8
    assert torch.equal(seq.rf_phase, built.rf_phase)
    assert bool((seq.flip == math.radians(0.1)).all())


def test_the_high_k_term_is_trained_and_evaluated_as_the_squared_outer_ring_error(tmp_path):
    """With one phantom the evaluation's ``high_k`` is lambda times the square of the band error the
    report computes separately (``band_errors`` at 8x8: the ring |k| >= 4), and the loss sums it."""
    rec = recipe(FROM_ZERO, loss={"high_k": 3.0, "high_k_from": 4.0})
    result = Trainer(parse_recipe(rec), tmp_path, progress=False).run()
    for h in result.history:
        assert h["high_k"] > 0
        assert h["loss"] == pytest.approx(h["image"] + h["high_k"] + h["sar"] + h["time"], rel=1e-5)
    for e in json.loads((tmp_path / "evaluations.json").read_text()):
        assert e["high_k"] == pytest.approx(3.0 * e["err_k4-8"] ** 2, rel=1e-4)
        assert e["loss"] == pytest.approx(e["image"] + e["high_k"] + e["sar"] + e["time"], rel=1e-5)


def test_the_encoding_prior_guides_training_and_is_left_out_of_evaluations(tmp_path):
    rec = recipe(
        FROM_ZERO,
        loss={"encoding": 2.0, "encoding_until": 0.5},
        optimizer={**FROM_ZERO["optimizer"], "iterations": 4},
    )
    result = Trainer(parse_recipe(rec), tmp_path, progress=False).run()
    guide = [h["encoding"] for h in result.history]
    assert guide[0] > 0 and guide[1] > 0 and guide[2:] == [0.0, 0.0]  # weight 2, 1, then 0 from half-way
    for h in result.history:
        assert h["loss"] == pytest.approx(h["image"] + h["sar"] + h["time"] + h["encoding"], rel=1e-5)
    evaluations = json.loads((tmp_path / "evaluations.json").read_text())
    assert all("encoding" not in e for e in evaluations)
    assert all(e["loss"] == pytest.approx(e["image"] + e["sar"] + e["time"], rel=1e-5) for e in evaluations)


def test_an_ideally_spoiled_target_is_the_target_sequence_simulated_with_ideal_spoiling(tmp_path):
    """The target of ``spoiling: ideal`` is the engine's ideally spoiled simulation of the target
    sequence (the engine's closed-form test: test_engines_physics.py), not the played one."""
    from mrzero.sequences.simulate import simulate

    played = Trainer(parse_recipe(FROM_ZERO), tmp_path / "a", progress=False)
    rec = recipe(FROM_ZERO, target={"kind": "sequence", "spoiling": "ideal"})
    ideal = Trainer(parse_recipe(rec), tmp_path / "b", progress=False)
    phantom = ideal.phantoms[0]
    fm = ideal.forward
    signal = simulate(ideal.reference, phantom, engine=fm.engine, ideal_spoiling=True, **fm.engine_options)
    expected = fm.reconstruct(ideal.reference, signal)
    got = ideal.targets.get(0, phantom).image
    assert torch.allclose(got, expected, atol=1e-6)
    other = played.targets.get(0, played.phantoms[0]).image
    assert float((other - got).abs().max()) > 1e-3 * float(got.abs().max())


def test_the_final_checkpoint_states_its_held_out_errors(tmp_path):
    """A bundle exported from the final checkpoint states its error on phantoms training never saw
    (the shipped-bundle scans compare against it); intermediate checkpoints do not have it yet."""
    rec = recipe(
        FROM_ZERO,
        held_out={"kind": "brain", "slice": 5},
        optimizer={**FROM_ZERO["optimizer"], "iterations": 2},
    )
    result = Trainer(parse_recipe(rec), tmp_path, progress=False).run()
    provenance = load_checkpoint(result.final_checkpoint).metadata["provenance"]
    assert provenance["held_out_error"] == pytest.approx(result.held_out_error)
    held = provenance["held_out"]
    assert held["spec"]["kind"] == "brain" and held["spec"]["slice"] == 5
    assert held["error"] == pytest.approx(result.held_out_error) and "err_k0-4" in held
    assert "held_out" not in load_checkpoint(tmp_path / "checkpoint.pt").metadata["provenance"]
