"""Table 1 / Figure 4 machinery and ``mrzero roar eval`` end to end on a tiny split."""

import json
import math

import pytest
import torch

from mrzero.cli import main
from mrzero.pipelines.roar.evaluate import (
    TableResult,
    constant_slice_method,
    constant_tissue_method,
    network_method,
    nlls_method,
    table,
    training_maps,
)
from mrzero.pipelines.roar.signal_model import echo_times
from mrzero.pipelines.roar.train import DataConfig, TrainConfig, _jsonable
from mrzero.pipelines.roar.unet import RoarUNet, UNetConfig
from mrzero.pipelines.roar.weights_file import save_weights


def test_nlls_row_shrinks_with_snr_and_ci_is_reported(anatomy):
    result = table(
        [(anatomy, [0, 1])], {"NLLS with F": nlls_method(echo_times())}, snrs=(5, 15), seeds=3, progress=False
    )
    summ = result.summary()["NLLS with F"]
    # the error of the VSF-estimated F (two slices of 32 x 32: one-sided z differences) sets a floor
    assert summ[15.0][0] < summ[5.0][0] - 10
    assert all(h > 0 and not math.isnan(h) for _, h in summ.values())
    md = result.markdown()
    assert "NLLS with F (paper 46.6 / 23.8 / 15.8)" in md and "±" in md


def test_constant_baselines_are_the_training_means(anatomy):
    """Per-tissue and per-slice constants: the mean true R2* of the training subjects, checked by
    hand from the subjects' own maps; the maps are constant per tissue / per slice and masked."""
    from mrzero.pipelines.roar.synthetic import make_slice_set, make_subject

    maps = training_maps(anatomy, [0, 1])
    subjects = [make_subject(anatomy, i) for i in (0, 1)]
    wm = torch.cat([s.r2s[s.mask & (s.tissue == 1)] for s in subjects])
    assert math.isclose(float(maps.per_tissue[1]), float(wm.double().mean()), rel_tol=1e-5)
    top = torch.cat([s.r2s[1][s.mask[1]] for s in subjects])
    assert math.isclose(float(maps.per_slice[1]), float(top.double().mean()), rel_tol=1e-5)
    data = make_slice_set(anatomy, [2], [10.0])
    tissue_map = constant_tissue_method(maps)(data, 0)
    slice_map = constant_slice_method(maps)(data, 0)
    assert (tissue_map[~data.mask] == 0).all() and (slice_map[~data.mask] == 0).all()
    sel = data.mask & (data.tissue == 0)
    assert torch.allclose(tissue_map[sel], maps.per_tissue[0].expand(int(sel.sum())))
    assert set(slice_map[1][data.mask[1]].unique().tolist()) == {float(maps.per_slice[1])}


def test_confidence_interval_is_student_t():
    r = TableResult({"X": {5.0: [0.10, 0.12, 0.14]}})
    mean, half = r.summary()["X"][5.0]
    assert mean == 12.0 and abs(half - 4.303 * 2.0 / math.sqrt(3)) < 1e-2


def test_mrzero_roar_eval_writes_table_and_figure(tmp_path, capsys):
    data = DataConfig(size=32, subjects=3, val=1, test=1)
    cfg = TrainConfig(data=data, model=UNetConfig(width=4, depth=2))
    torch.manual_seed(0)
    weights = tmp_path / "w.safetensors"
    save_weights(RoarUNet(cfg.model), weights, echo_times(), {"mode": "denoise", "config": _jsonable(cfg)})
    out = tmp_path / "eval"
    args = ["roar", "eval", "--roar", str(weights), "--supervised", str(weights), "--seeds", "2"]
    assert main([*args, "--snr", "5", "15", "--out", str(out), "--no-progress"]) == 0
    tables = json.loads((out / "table1.json").read_text())
    assert set(tables) == {"held-out", "warped"}
    values = tables["held-out"]
    assert set(values) == {
        "NLLS with F",
        "NLLS without F",
        "ARLO with F",
        "constant per tissue",
        "constant per slice",
        "RoAR",
        "Supervised",
    }
    assert set(values["RoAR"]) == {"5.0", "15.0"} and len(values["RoAR"]["5.0"]) == 2
    assert values["RoAR"] == values["Supervised"]  # same weights, same noise
    assert tables["warped"]["RoAR"] != values["RoAR"]  # other subjects
    assert (out / "figure4.png").stat().st_size > 10_000
    assert "| RoAR (paper 22.0 / 17.1 / 14.9) |" in capsys.readouterr().out


def test_network_method_masks_its_map(anatomy):
    from mrzero.pipelines.roar.synthetic import make_slice_set

    data = make_slice_set(anatomy, [0], [10.0])
    r2 = network_method([RoarUNet(UNetConfig(width=4, depth=2))])(data, 0)
    assert r2.shape == data.r2s.shape and (r2[~data.mask] == 0).all()


def test_mrzero_roar_eval_compares_networks_on_one_test_split_only(tmp_path):
    """Weights trained with another F or SNR range are tested on the same subjects and are accepted;
    weights whose split differs (another data seed, another scan of the subjects) would be scored on
    other data: refused. Weights from before the scan choice (no ``scan`` key) were trained on the
    slice scan; encoded weights are evaluated on the encoded scan."""

    def weights(name: str, data: DataConfig, drop_scan: bool = False) -> str:
        cfg = TrainConfig(data=data, model=UNetConfig(width=4, depth=2))
        config = _jsonable(cfg)
        if drop_scan:
            del config["data"]["scan"]
        path = tmp_path / f"{name}.safetensors"
        save_weights(RoarUNet(cfg.model), path, echo_times(), {"mode": "denoise", "config": config})
        return str(path)

    base = weights("vsf", DataConfig(size=32, subjects=3, val=1, test=1))
    oracle = weights("oracle", DataConfig(size=32, subjects=3, val=1, test=1, f="generating", snr=(8.0, 9.0)))
    other = weights("other", DataConfig(size=32, subjects=3, val=1, test=1, seed=5))
    common = ["--seeds", "1", "--snr", "10", "--no-progress"]
    args = ["roar", "eval", "--roar", base, "--supervised", oracle, *common, "--out", str(tmp_path / "a")]
    assert main(args) == 0
    with pytest.raises(SystemExit, match="the test split would differ"):
        main(["roar", "eval", "--roar", base, "--supervised", other, *common, "--out", str(tmp_path / "b")])
    legacy = weights("legacy", DataConfig(size=32, subjects=3, val=1, test=1), drop_scan=True)
    assert (
        main(["roar", "eval", "--roar", legacy, "--supervised", base, *common, "--out", str(tmp_path / "c")])
        == 0
    )
    encoded = weights("encoded", DataConfig(size=32, subjects=3, val=1, test=1, scan="encoded"))
    with pytest.raises(SystemExit, match="the test split would differ"):
        main(["roar", "eval", "--roar", base, "--supervised", encoded, *common, "--out", str(tmp_path / "d")])
    assert main(["roar", "eval", "--roar", encoded, *common, "--out", str(tmp_path / "e")]) == 0
    nlls = {
        name: json.loads((tmp_path / name / "table1.json").read_text())["held-out"]["NLLS with F"]
        for name in ("a", "c", "e")
    }
    assert nlls["a"] == nlls["c"] and nlls["a"] != nlls["e"]
