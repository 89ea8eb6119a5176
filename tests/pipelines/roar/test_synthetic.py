"""Synthetic mGRE subjects: truth ranges, determinism, noise level, normalisation, split."""

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
