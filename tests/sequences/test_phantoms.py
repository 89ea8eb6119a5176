"""Phantom sources: embedded brain, resampling, tissue mixing, NIfTI, arrays, sparse samples, coils."""

from __future__ import annotations

import pytest
import torch

from mrzero.core.brain_atlas import area_resample, area_weights
from mrzero.sequences.phantoms import (
    BRAIN_TISSUES_3T,
    N_BRAIN_SLICES,
    Tissue,
    brain_b0_dz,
    brain_phantom,
    brain_tissue_fractions,
    t2dash_from_t2star,
)
from mrzero.sequences.phantoms.tissue import mix_tissues


# ------------------------------------------------------------------ embedded brain
def test_brain_phantom_shapes_units_and_fov():
    p = brain_phantom((48, 40))
    assert p.shape == (48, 40)
    assert p.fov == pytest.approx((0.2, 0.2, 0.004))
    assert p.pd.dtype == torch.float32
    assert 0 < float(p.pd.max()) <= 1.0
    assert float(p.t1[p.mask()].min()) == pytest.approx(BRAIN_TISSUES_3T["wm"].t1, rel=1e-5)
    assert -100 < float(p.b0.min()) < float(p.b0.max()) < 100  # Hz, shimmed
    assert 0.7 < float(p.b1.min()) and float(p.b1.max()) < 1.3


def test_pure_tissue_voxels_carry_the_tissue_values():
    size = (100, 100)  # 2 mm pixels: many voxels hold one tissue only
    p = brain_phantom(size)
    f = brain_tissue_fractions(size)
    for name, tissue in BRAIN_TISSUES_3T.items():
        pure = f[name] > 0.999
        assert int(pure.sum()) > 20, name
        assert torch.allclose(p.pd[pure], torch.tensor(tissue.pd), atol=1e-4)
        assert torch.allclose(p.t1[pure], torch.tensor(tissue.t1), rtol=1e-4)
        assert torch.allclose(p.t2[pure], torch.tensor(tissue.t2), rtol=1e-4)
        assert torch.allclose(p.t2dash[pure], torch.tensor(tissue.t2dash), rtol=1e-4)


def test_partial_volume_fractions_are_continuous_and_sum_to_at_most_one():
    f = brain_tissue_fractions((64, 64), slice=5)
    total = f["gm"] + f["wm"] + f["csf"]
    assert float(total.max()) <= 1 + 1e-6 and float(total.min()) >= 0
    mixed = (total > 0.01) & (total < 0.99)  # the brain's edge
    assert int(mixed.sum()) > 50
    between = ((f["gm"] > 0.05) & (f["gm"] < 0.95)).sum()
    assert int(between) > 100  # GM/WM borders are partial, not binary


def test_resampling_conserves_pd_mass_and_tissue_volume():
    def mass(p):
        return float(p.pd.double().sum()) * p.fov[0] * p.fov[1] / p.pd.numel()

    reference = mass(brain_phantom((200, 200)))
    for size in [(32, 32), (64, 64), (37, 91), (128, 128)]:
        assert mass(brain_phantom(size)) == pytest.approx(reference, rel=1e-5), size
        f = brain_tissue_fractions(size, dtype=torch.float64)
        f_ref = brain_tissue_fractions((200, 200), dtype=torch.float64)
        for name in f:
            area = f[name].sum() / f[name].numel()
            assert float(area) == pytest.approx(float(f_ref[name].sum() / 200**2), rel=1e-9)


def test_slices_differ_and_out_of_range_slice_is_named():
    a, b = brain_phantom((32, 32), slice=0), brain_phantom((32, 32), slice=7)
    assert float((a.pd - b.pd).abs().max()) > 0.3
    assert brain_phantom((32, 32), slice=-1).name == b.name
    with pytest.raises(IndexError, match="slice 8 out of range"):
        brain_phantom(slice=N_BRAIN_SLICES)
    with pytest.raises(ValueError, match="size must be"):
        brain_phantom(size=(0, 4))


def test_b0_through_slice_gradient_is_a_smooth_map_in_hz_per_m():
    g = brain_b0_dz((32, 32), slice=0)
    assert g.shape == (32, 32)
    assert 100 < float(g.abs().max()) < 10_000  # frontal air-tissue gradients, Hz/m


def test_tissue_override_changes_only_that_tissue():
    slow_wm = Tissue(pd=0.7, t1=2.0, t2=0.08, t2star=0.05)
    f = brain_tissue_fractions((64, 64))
    p = brain_phantom((64, 64), tissues={"wm": slow_wm})
    assert torch.allclose(p.t1[f["wm"] > 0.999], torch.tensor(2.0), rtol=1e-2)
    assert torch.allclose(p.t1[f["gm"] > 0.999], torch.tensor(BRAIN_TISSUES_3T["gm"].t1), rtol=1e-2)


def test_brain_phantom_on_float64_and_device():
    p = brain_phantom((16, 16), dtype=torch.float64, device="cpu")
    assert p.t1.dtype == torch.float64 and p.b0.device.type == "cpu"


# ------------------------------------------------------------------ tissue maths and resampling
def test_t2dash_from_t2star_and_tissue_property():
    t2 = torch.tensor([0.1, 0.08, 0.05, 0.0])
    t2s = torch.tensor([0.05, 0.08, 0.0, 0.03])
    out = t2dash_from_t2star(t2, t2s)
    assert float(out[0]) == pytest.approx(0.1)  # 1/0.05 - 1/0.1 = 10 /s
    assert out[1:].tolist() == [0.0, 0.0, 0.0]  # no reversible decay / invalid input
    assert Tissue(1, 1, 0.1, 0.05).t2dash == pytest.approx(0.1)
    with pytest.raises(ValueError, match="cannot exceed T2"):
        Tissue(1, 1, 0.05, 0.1)


def test_mixing_averages_rates_weighted_by_proton_density():
    a, b = Tissue(1.0, 1.0, 0.1, 0.05), Tissue(0.5, 2.0, 0.2, 0.1)
    maps = mix_tissues(torch.tensor([[0.5], [0.5]], dtype=torch.float64), [a, b])
    assert float(maps["pd"][0]) == pytest.approx(0.75)
    w_a, w_b = 0.5 / 0.75, 0.25 / 0.75
    assert float(maps["t1"][0]) == pytest.approx(1 / (w_a / 1.0 + w_b / 2.0))
    empty = mix_tissues(torch.zeros(2, 1), [a, b])
    assert float(empty["pd"][0]) == 0 and float(empty["t1"][0]) == 1.0 and float(empty["t2dash"][0]) == 0


def test_area_weights_rows_are_averages_and_resample_keeps_constants():
    w = area_weights(7, 3)
    assert torch.allclose(w.sum(1), torch.ones(3, dtype=torch.float64))
    assert torch.allclose(
        area_resample(torch.full((5, 9), 2.5, dtype=torch.float64), (4, 3)),
        torch.full((4, 3), 2.5, dtype=torch.float64),
    )
    up = area_resample(torch.tensor([[1.0, 3.0]], dtype=torch.float64), (1, 4))
    assert up.tolist() == [[1.0, 1.0, 3.0, 3.0]]


# ------------------------------------------------------------------ arrays and NIfTI
def _write_nifti(path, quantities, units=None, shape=(6, 5, 4), zoom=2.0):
    """A small multi-parametric 5D NIfTI in RAS with an ASLDRO-style sidecar; returns the data."""
    import json

    import nibabel as nib
    import numpy as np

    rng = np.random.default_rng(1)
    data = np.zeros(shape + (1, len(quantities)))
    for i, q in enumerate(quantities):
        data[..., 0, i] = {"m0": 1.0, "t1": 1.2, "t2": 0.09, "t2_star": 0.045, "b0": 7.0}.get(q, 0.0)
        data[..., 0, i] *= 1 + 0.1 * rng.random(shape)
    affine = np.diag([zoom, zoom, zoom, 1.0])
    nib.save(nib.Nifti1Image(data, affine), str(path))
    side = {"quantities": quantities}
    if units is not None:
        side["units"] = units
    path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps(side))
    return data


def test_nifti_loader_reads_named_volumes_units_orientation_and_fov(tmp_path):
    from mrzero.sequences.phantoms.nifti import load_nifti_phantom

    f = tmp_path / "maps.nii.gz"
    q = ["t1", "t2", "t2_star", "m0", "b0"]
    data = _write_nifti(f, q, units=["ms", "s", "s", "", "Hz"])
    p = load_nifti_phantom(f, slice=1)
    assert p.shape == (5, 6)  # rows = y, columns = x
    assert p.fov == pytest.approx((0.012, 0.010, 0.002))
    # row 0 is the most anterior (largest y), column 0 the patient's right (largest x)
    assert float(p.pd[0, 0]) == pytest.approx(data[5, 4, 1, 0, 3])
    assert float(p.t1[0, 0]) == pytest.approx(data[5, 4, 1, 0, 0] * 1e-3)  # ms -> s
    expected_t2dash = 1 / (1 / data[5, 4, 1, 0, 2] - 1 / data[5, 4, 1, 0, 1])
    assert float(p.t2dash[0, 0]) == pytest.approx(expected_t2dash, rel=1e-5)
    assert float(p.b0[-1, -1]) == pytest.approx(data[0, 0, 1, 0, 4], rel=1e-6)
    small = load_nifti_phantom(f, slice=1, size=(2, 3))
    assert small.shape == (2, 3)
    assert float(small.pd.double().mean()) == pytest.approx(float(p.pd.double().mean()), rel=1e-6)


def test_nifti_loader_errors_name_file_and_problem(tmp_path):
    from mrzero.sequences.phantoms.nifti import NiftiPhantomError, load_nifti_phantom

    with pytest.raises(NiftiPhantomError, match="no such file"):
        load_nifti_phantom(tmp_path / "absent.nii.gz")
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(b"this is not a nifti file")
    with pytest.raises(NiftiPhantomError, match=r"junk\.nii\.gz: not a readable NIfTI"):
        load_nifti_phantom(junk)
    f = tmp_path / "no_t2.nii.gz"
    _write_nifti(f, ["t1", "m0"])
    with pytest.raises(NiftiPhantomError, match=r"no_t2\.nii\.gz: missing volume\(s\) t2; file has: t1, m0"):
        load_nifti_phantom(f)
    with pytest.raises(NiftiPhantomError, match="slice 9 out of range"):
        load_nifti_phantom(_ok(tmp_path), slice=9)
    g = tmp_path / "weird.nii.gz"
    _write_nifti(g, ["t1", "t2", "m0"], units=["furlong", "s", ""])
    with pytest.raises(NiftiPhantomError, match="t1 has unit 'furlong'"):
        load_nifti_phantom(g)
    with pytest.raises(NiftiPhantomError, match="volume index out of range"):
        load_nifti_phantom(_ok(tmp_path), volumes={"pd": 0, "t1": 1, "t2": 7})


def _ok(tmp_path):
    f = tmp_path / "ok.nii.gz"
    _write_nifti(f, ["m0", "t1", "t2"])
    return f


def test_phantom_from_arrays_defaults_and_errors():
    import numpy as np

    from mrzero.sequences.phantom import PhantomError
    from mrzero.sequences.phantoms.arrays import phantom_from_arrays

    pd = np.array([[0.0, 1.0], [0.5, 0.0]])
    p = phantom_from_arrays(
        pd, t1=np.where(pd > 0, 1.0, 0.0), t2=np.full((2, 2), 0.1), t2star=np.full((2, 2), 0.05)
    )
    assert float(p.t1[0, 0]) == 1.0  # empty voxel filled
    assert torch.allclose(p.t2dash, torch.full((2, 2), 0.1))
    assert torch.equal(p.b1, torch.ones(2, 2)) and torch.equal(p.b0, torch.zeros(2, 2))
    with pytest.raises(PhantomError, match="t2 has shape"):
        phantom_from_arrays(pd, t1=np.ones((2, 2)), t2=np.ones((3, 2)))
    with pytest.raises(PhantomError, match="t1 must be positive"):
        phantom_from_arrays(pd, t1=-np.ones((2, 2)), t2=np.ones((2, 2)))
    with pytest.raises(PhantomError, match="not both"):
        phantom_from_arrays(pd, pd, pd, t2dash=pd, t2star=pd)


# ------------------------------------------------------------------ sparse synthetic and coils
def test_sparse_synthetic_block_ranges_and_reproducibility():
    from mrzero.sequences.phantoms.sparse import sparse_synthetic

    a = sparse_synthetic(seed=3)
    assert a.shape == (32, 32)
    on = a.pd > 0
    ys, xs = on.nonzero(as_tuple=True)
    assert int(ys.max() - ys.min()) == 11 and int(xs.max() - xs.min()) == 11
    assert float(a.pd.max()) <= 1.5
    assert 0.3 <= float(a.t1[on].min()) and float(a.t1[on].max()) <= 6.1
    assert bool((a.t2[on] <= a.t1[on]).all()) and float(a.t2[on].min()) > 0
    assert -60 <= float(a.b0.min()) and float(a.b0.max()) <= 60
    assert torch.equal(sparse_synthetic(seed=3).pd, a.pd)
    assert not torch.equal(sparse_synthetic(seed=4).pd, a.pd)
    few = sparse_synthetic(block=(1, 1), n_blocks=5, seed=1)
    assert 1 <= int((few.pd > 0).sum()) <= 5
    with pytest.raises(ValueError, match="must fit inside"):
        sparse_synthetic(size=(8, 8), block=(12, 12))


def test_sparse_synthetic_blocks_of_one_tissue_with_spread():
    from mrzero.sequences.phantoms.sparse import sparse_synthetic

    iid = sparse_synthetic(size=(16, 16), block=(6, 6), seed=2)
    tissue = sparse_synthetic(size=(16, 16), block=(6, 6), seed=2, spread=0.1)
    for ph in (iid, tissue):
        on = ph.pd > 0
        assert int(on.sum()) == 36 and 0.3 <= float(ph.t1[on].min()) and float(ph.t1[on].max()) <= 6.1
    log_t1_std = [float(ph.t1[ph.pd > 0].log().std()) for ph in (iid, tissue)]
    assert log_t1_std[1] < 0.2 < log_t1_std[0]  # one tissue with 10 % spread vs independent voxels
    assert torch.equal(sparse_synthetic(size=(16, 16), block=(6, 6), seed=2).t1, iid.t1)  # default unchanged
    with pytest.raises(ValueError, match="spread"):
        sparse_synthetic(size=(8, 8), block=(2, 2), spread=-1.0)


@pytest.mark.parametrize("kind", ["loops", "gaussian"])
def test_coil_sensitivities_are_normalised_smooth_and_distinct(kind):
    from mrzero.sequences.phantoms.coils import coil_sensitivities

    c = coil_sensitivities((32, 32), n_coils=4, kind=kind)
    assert c.shape == (4, 32, 32) and c.dtype == torch.complex64
    assert torch.allclose((c.abs() ** 2).sum(0), torch.ones(32, 32), atol=1e-5)
    assert float(c[0, 0].abs().mean()) > float(c[0, -1].abs().mean())  # coil 0 at the top
    step = (c[:, 1:, :] - c[:, :-1, :]).abs().max()
    assert float(step) < 0.2  # smooth on a 32 grid
    p = brain_phantom((32, 32), coil_sens=c)
    assert p.n_coils == 4
    with pytest.raises(ValueError, match="coil kind"):
        coil_sensitivities((4, 4), kind="birdcage")
