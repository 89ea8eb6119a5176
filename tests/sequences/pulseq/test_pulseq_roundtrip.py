"""Digital twin: simulating the exported-then-imported file gives the internal sequence's signal."""

from __future__ import annotations

import dataclasses
import math

import ismrmrd
import numpy as np
import pypulseq as pp
import pytest
import torch
from pulseq_samples import disc_phantom

from mrzero.core.bundles import BundleError, DeployedBundle
from mrzero.pipelines.base import Context, PipelineError
from mrzero.pipelines.learned.recon import ReconSettings
from mrzero.sequences.builders import BUILDERS
from mrzero.sequences.bundle import check_bundle, write_bundle
from mrzero.sequences.checkpoint import load_checkpoint
from mrzero.sequences.pulseq.export import ExportOptions, export
from mrzero.sequences.pulseq.import_ import import_seq
from mrzero.sequences.pulseq.system import hardware
from mrzero.sequences.simulate import simulate
from mrzero.sequences.training import Trainer, load_recipe
from mrzero.sequences.training.recipe import ReconSpec as RecipeRecon

#: Each builder at a test size; the sinc variants need pulses the default B1 limit allows.
CASES = [
    ("gre", dict(matrix=16), "block"),
    ("gre", dict(matrix=16), "sinc"),
    ("radial", dict(matrix=16, spokes=12), "block"),
    ("radial", dict(matrix=16, spokes=12), "sinc"),
    ("rare", dict(matrix=16), "block"),
    ("t1", dict(matrix=16, ti=(0.05, 0.4), trec=0.1), "block"),
    ("mgre", dict(matrix=16, n_echoes=3), "block"),
]


def nrmse(reference: torch.Tensor, other: torch.Tensor) -> float:
    return float((reference - other).abs().norm() / reference.abs().norm())


@pytest.mark.parametrize("builder, kwargs, shape", CASES, ids=[f"{b}-{s}" for b, _, s in CASES])
def test_builder_sequence_survives_the_file(tmp_path, builder, kwargs, shape):
    seq = BUILDERS[builder](**kwargs)
    result = export(seq, tmp_path / f"{builder}.seq", options=ExportOptions(rf_shape=shape))
    assert result.stretches == []
    # pypulseq's own k-space of the file is the internal trajectory, sample for sample.
    written = pp.Sequence()
    written.read(str(result.path))
    k_adc = written.calculate_kspace()[0]
    np.testing.assert_allclose(k_adc.T * np.array(seq.fov), seq.trajectory().numpy(), atol=1e-3)
    twin = import_seq(result.path).sequence
    phantom = disc_phantom(16)
    error = nrmse(simulate(seq, phantom), simulate(twin, phantom))
    assert error < 0.02, f"{builder}/{shape}: the file's signal differs by {100 * error:.2f} % NRMSE"


def test_a_modified_learned_sequence_survives_the_file(tmp_path):
    """A 'learned' FLASH as training leaves it: random flips, every event's moment perturbed
    (so each readout has a different moment per sample and needs a shaped gradient)."""
    seq = BUILDERS["gre"](matrix=8)
    generator = torch.Generator().manual_seed(3)
    seq.flip = seq.flip * (1 + 2 * torch.rand(seq.n_rep, generator=generator))
    noise = torch.randn(seq.moment.shape, generator=generator)
    scale = torch.where(seq.adc[..., None], 0.05, 0.3) * torch.tensor([1.0, 1.0, 0.0])
    seq.moment = seq.moment + scale * noise
    result = export(seq, tmp_path / "learned.seq")
    assert result.n_blocks == 4 * seq.n_rep and result.stretches == []  # RF, gap, readout, gap
    written = pp.Sequence()
    written.read(str(result.path))
    k_adc = written.calculate_kspace()[0]
    np.testing.assert_allclose(k_adc.T * np.array(seq.fov), seq.trajectory().numpy(), atol=1e-3)
    twin = import_seq(result.path).sequence
    phantom = disc_phantom(8)
    assert nrmse(simulate(seq, phantom), simulate(twin, phantom)) < 0.02
    np.testing.assert_allclose(np.degrees(twin.flip.numpy()), np.degrees(seq.flip.numpy()), atol=1e-3)
    assert twin.sar_proxy().item() == pytest.approx(result.sar_proxy, rel=1e-5)
    assert not math.isnan(result.mean_rf_power)


def test_a_readout_starting_a_hair_above_a_whole_ramp_rounds_the_ramp_up(tmp_path):
    """A 64x64 run from zero crashed in the hardware projection: a shaped readout's first gradient
    needed 2.0000002 raster times of ramp at the slew limit, the ramp was rounded down to 2 and
    pypulseq refused the 2e-7 excess (its tolerance is 1e-9). The ramp must round up."""
    seq = BUILDERS["gre"](matrix=8, dtype=torch.float64)
    limits = hardware()
    slew = limits.axis_limits(1)[1]  # Hz/m/s; the readout plays x only
    dwell = float(seq.duration[0, 1])
    amplitude = slew * 2 * limits.grad_raster_time * (1 + 2e-7)  # Hz/m
    moment = seq.moment.clone()
    ramp = torch.linspace(1.0, 1.05, 8, dtype=torch.float64)  # a different moment per sample: shaped
    moment[:, 1:9, 0] = amplitude * dwell * seq.fov[0] * ramp
    seq.moment = moment
    result = export(seq, tmp_path / "edge.seq")
    written = pp.Sequence()
    written.read(str(result.path))
    waveforms = written.waveforms_and_times()[0]
    t, g = waveforms[0]  # x: time (s), amplitude (Hz/m)
    assert np.max(np.abs(np.diff(g) / np.diff(t))) <= slew * (1 + 1e-9)


def test_a_bundle_reconstructs_as_its_training_did(tmp_path):
    """A sequence trained through CG with Pipe-Menon weights: its bundle's protocol carries that
    reconstruction, the server's iterative-adjoint settings read it back, and the adjoint pipeline,
    which would reconstruct something else, is refused at export and at the server."""
    recipe = dataclasses.replace(
        load_recipe("gre_from_zero"), matrix=8, recon=RecipeRecon(method="cg", iterations=7, density="pipe")
    )
    trained = Trainer(recipe, tmp_path / "run", iterations=1, progress=False).run()
    checkpoint = load_checkpoint(trained.final_checkpoint)
    with pytest.raises(BundleError, match="trained through the cg reconstruction.*use iterative_adjoint"):
        write_bundle(checkpoint, tmp_path / "adjoint", pipeline="adjoint")
    protocol = write_bundle(checkpoint, tmp_path / "bundle", pipeline="iterative_adjoint")
    assert protocol["recon"] == {"method": "cg", "iterations": 7, "density": "pipe"}
    conditions = ismrmrd.xsd.experimentalConditionsType(H1resonanceFrequency_Hz=123200000)
    header = ismrmrd.xsd.ismrmrdHeader(experimentalConditions=conditions)
    deployed = DeployedBundle(tmp_path / "bundle", protocol, "now")
    settings = ReconSettings.from_context(Context(header, device="cpu"), deployed, iterative=True)
    assert (settings.method, settings.iterations, settings.density) == ("cg", 7, "pipe")
    adjoint = Context(header, device="cpu", pipeline_name="adjoint")  # a client naming the wrong pipeline
    with pytest.raises(PipelineError, match="trained through the cg reconstruction.*adjoint pipeline"):
        ReconSettings.from_context(adjoint, deployed, iterative=False)


def test_a_trained_gre_from_zero_survives_bundle_and_file(tmp_path):
    """The real trainer's output (two iterations of the shipped gre_from_zero recipe, 8x8) goes
    through mrzero export's bundle and back into the simulation unchanged."""
    recipe = dataclasses.replace(load_recipe("gre_from_zero"), matrix=8)
    trained = Trainer(recipe, tmp_path / "run", iterations=2, progress=False).run()
    checkpoint = load_checkpoint(trained.final_checkpoint)
    protocol = write_bundle(checkpoint, tmp_path / "bundle", pipeline="adjoint")  # not on the grid yet
    assert check_bundle(tmp_path / "bundle") == protocol and protocol["stretched_events"] == []
    twin = import_seq(tmp_path / "bundle" / "sequence.seq").sequence
    phantom = disc_phantom(8)
    assert nrmse(simulate(checkpoint.sequence, phantom), simulate(twin, phantom)) < 0.02
