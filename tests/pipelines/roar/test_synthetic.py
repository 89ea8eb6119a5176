"""Synthetic mGRE subjects: truth ranges, determinism, noise level, normalisation, split."""

import math
from pathlib import Path

import pytest
import torch

from mrzero.pipelines.roar.synthetic import SyntheticError, make_subject, normalise, split_indices


def test_subject_is_deterministic_and_subjects_differ(anatomy):
    a, b, c = make_subject(anatomy, 3), make_subject(anatomy, 3), make_subject(anatomy, 4)
    assert torch.equal(a.r2s, b.r2s) and torch.equal(a.f, b.f)
    assert not torch.equal(a.r2s, c.r2s)


def test_tissue_values_are_brain_like(anatomy):
    s = make_subject(anatomy, 0)
    r2 = s.r2s[s.mask]
    assert 8.0 < r2.median().item() < 25.0
    assert r2.min().item() >= 1.0 and r2.max().item() < 80.0
    assert (s.r2s[~s.mask] == 0).all() and (s.s0[~s.mask] == 0).all()
    assert (s.f >= 0).all() and (s.f <= 1).all()
    assert s.f.shape == (10, *s.r2s.shape)
    # F decays with echo time where there is a through-slice gradient, and is 1 at t -> 0
    assert (s.f[-1] <= s.f[0] + 1e-6).all() and s.f[-1][s.mask].min() < 0.95


def test_noise_level_follows_snr_and_normalisation_by_first_echo(anatomy):
    s = make_subject(anatomy, 1)
    g = torch.Generator().manual_seed(0)
    diff = s.noisy(10.0, g) - s.clean()
    sigma = diff[:, s.mask].std().item()
    assert sigma == pytest.approx(s.s0[s.mask].mean().item() / 10.0, rel=0.05)
    y, scale = normalise(s.clean(), s.mask)
    assert y[0][s.mask].mean().item() == pytest.approx(1.0, rel=1e-5)
    assert scale.item() == pytest.approx(s.clean()[0][s.mask].mean().item())


def test_split_is_subject_wise_and_seeded():
    a = split_indices(35, 4, 8, seed=1)
    assert len(a["train"]) == 23 and len(a["val"]) == 4 and len(a["test"]) == 8
    assert not set(a["train"]) & set(a["test"]) and not set(a["val"]) & set(a["test"])
    assert a == split_indices(35, 4, 8, seed=1) and a != split_indices(35, 4, 8, seed=2)


def test_bad_settings_are_named(anatomy):
    with pytest.raises(SyntheticError, match="cannot split"):
        split_indices(5, 2, 3)
    with pytest.raises(SyntheticError, match="SNR"):
        make_subject(anatomy, 0).noisy(0.0, torch.Generator())
    with pytest.raises(SyntheticError, match="mask is empty"):
        normalise(torch.ones(10, 1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.bool))


def test_heldout_anatomy_is_other_brain_than_the_training_slab():
    """The held-out slabs (ICBM z -30..+2 and +34..+66 mm) are brain, at the training matrix, and no
    slice of them equals a training slice (which are z +2..+34 mm of the same volume)."""
    from mrzero.pipelines.roar.synthetic import brain_anatomy, heldout_anatomy

    train = brain_anatomy(32).stack()
    for slab in ("inferior", "superior"):
        a = heldout_anatomy(32, slab).stack()
        assert a.shape == train.shape
        tissue = a.sum(0)
        assert (tissue > 0.5).sum((1, 2)).min() > 100  # every slice holds brain
        for k in range(a.shape[1]):
            assert min(float((a[:, k] - train[:, j]).abs().mean()) for j in range(train.shape[1])) > 0.02
    with pytest.raises(SyntheticError, match="slab"):
        heldout_anatomy(32, "cerebellum")


def test_slice_sets_carry_the_vsf_estimate_unless_the_oracle_is_asked_for(anatomy):
    """Training sees each subject's VSF F (what a scan allows); ``f="generating"`` (the diagnostic
    of docs/roar.md) carries the F that made the data instead. The two differ: the VSF F is an
    estimate from the noisy complex scan."""
    from mrzero.pipelines.roar.synthetic import make_slice_set

    s = make_subject(anatomy, 0)
    default = make_slice_set(anatomy, [0], [10.0])
    oracle = make_slice_set(anatomy, [0], [10.0], f="generating")
    assert torch.equal(default.f, s.f_vsf.transpose(0, 1))
    assert torch.equal(oracle.f, s.f.transpose(0, 1))
    assert not torch.equal(default.f, oracle.f)
    assert torch.equal(default.noisy, oracle.noisy)  # only F changes, not the data


def test_training_config_names_a_wrong_f_choice(tmp_path):
    from mrzero.core.config import ConfigError
    from mrzero.pipelines.roar.train import load_config

    path = tmp_path / "roar.yaml"
    path.write_text("data: {f: generating}\n")
    assert load_config(path).data.f == "generating"
    path.write_text("data: {f: true_f}\n")
    with pytest.raises(ConfigError, match="data.f"):
        load_config(path)
    path.write_text("data: {scan: radial}\n")
    with pytest.raises(ConfigError, match="data.scan"):
        load_config(path)


def test_experiment_configs_load():
    """Every config the docs' experiments name is a valid training config."""
    from mrzero.pipelines.roar import train as roar_train

    configs = sorted((Path(roar_train.__file__).parent / "experiments").glob("*.yaml"))
    assert len(configs) >= 7
    scans = {roar_train.load_config(path).data.scan for path in configs}
    assert scans == {"slice", "encoded"}


def test_encoded_scan_without_in_plane_field_variation_is_the_slice_model():
    """Band-limited refinement then k-space crop is the identity, so a field that does not vary in
    plane gives the slice model's images: object x sinc(df t) x exp(2 pi i b0 t) (closed form)."""
    from mrzero.pipelines.roar.synthetic import ENCODED_REFINE, _encoded_scan

    g = torch.Generator().manual_seed(0)
    magnitude = torch.rand(3, 2, 16, 16, generator=g)
    rx = torch.rand(2, 16, 16, generator=g)
    te = torch.tensor([4e-3, 8e-3, 12e-3])
    b0, df = torch.tensor([30.0, -50.0]).reshape(2, 1, 1), torch.tensor([20.0, 60.0]).reshape(2, 1, 1)
    fine = (2, 16 * ENCODED_REFINE, 16 * ENCODED_REFINE)
    t = te.reshape(-1, 1, 1, 1)
    expected = magnitude * torch.exp(1j * rx) * torch.sinc(df * t) * torch.exp(2j * math.pi * b0 * t)
    images = _encoded_scan(magnitude, rx, b0.expand(fine), df.expand(fine), te)
    assert torch.allclose(images, expected.to(torch.complex64), atol=1e-5)
    with pytest.raises(SyntheticError, match="finer"):
        _encoded_scan(magnitude, rx, b0.expand(2, 16, 16), df.expand(2, 16, 16), te)


def test_encoded_scan_in_plane_gradient_moves_the_echo_in_k_space():
    """Fourier shift theorem: a linear in-plane field multiplies the object by a phase ramp, which
    moves its k-space by G t N cycles/FOV. A smooth blob keeps its magnitude while the move stays
    inside the encoded window (3.2 cycles/FOV of 16) and is gone once it has left it (40 cycles/FOV);
    through-slice dephasing alone (the slice model) would lose nothing in either case."""
    from mrzero.pipelines.roar.synthetic import ENCODED_REFINE, _encoded_scan

    n = 32
    yy, xx = torch.meshgrid(torch.arange(n) - n / 2, torch.arange(n) - n / 2, indexing="ij")
    blob = torch.exp(-(xx**2 + yy**2) / (2 * 2.0**2)).expand(1, n, n)
    te = torch.tensor([1e-3, 12.5e-3])  # G t N = 3.2 and 40 cycles/FOV
    fine = n * ENCODED_REFINE
    x = torch.arange(fine) / ENCODED_REFINE - n / 2  # the refined grid's positions (voxels)
    b0 = (100.0 * x).expand(1, fine, fine)  # 100 Hz per voxel
    images = _encoded_scan(blob.expand(2, 1, n, n), torch.zeros(1, n, n), b0, torch.zeros_like(b0), te)
    assert torch.allclose(images[0].abs(), blob, atol=1e-4)
    assert float(images[1].abs().max()) < 1e-4


def test_encoded_subject_has_the_same_truth_and_a_vsf_f_that_matches_its_data():
    """The scan choice changes only the images: the truth maps are the slice subject's. On the
    encoded scan the VSF F has the data's tail (the 5 % quantile of F at 40 ms within 0.03), which it
    does not on the slice scan, whose data lack the in-plane encoding the VSF models."""
    from mrzero.pipelines.roar.synthetic import brain_anatomy

    anatomy = brain_anatomy(64)
    a, b = make_subject(anatomy, 3, scan="slice"), make_subject(anatomy, 3, scan="encoded")
    assert torch.equal(a.r2s, b.r2s) and torch.equal(a.s0, b.s0) and torch.equal(a.mask, b.mask)
    assert not torch.equal(a.f, b.f)
    q = {
        name: (s.f[-1][s.mask].quantile(0.05).item(), s.f_vsf[-1][s.mask].quantile(0.05).item())
        for name, s in (("slice", a), ("encoded", b))
    }
    assert abs(q["encoded"][0] - q["encoded"][1]) < 0.03
    assert abs(q["slice"][0] - q["slice"][1]) > 0.06, q
    with pytest.raises(SyntheticError, match="unknown synthetic scan"):
        make_subject(anatomy, 0, scan="radial")
