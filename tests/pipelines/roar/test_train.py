"""RoAR training: losses, schedule, config errors, a tiny run with checkpoint/resume and weights."""

import json
import re
from pathlib import Path

import pytest
import torch

from mrzero.core.config import ConfigError
from mrzero.pipelines.roar import train as roar_train
from mrzero.pipelines.roar.signal_model import echo_times
from mrzero.pipelines.roar.synthetic import make_slice_set, make_subject
from mrzero.pipelines.roar.train import (
    DataConfig,
    TrainConfig,
    evaluate_loss,
    learning_rate,
    load_config,
    loss_of,
    train,
)
from mrzero.pipelines.roar.unet import RoarUNet, UNetConfig, parameter_count
from mrzero.pipelines.roar.weights_file import load_weights


def test_published_unet_has_about_50m_parameters_and_keeps_image_size():
    assert 45e6 < parameter_count(RoarUNet()) < 52e6
    small = RoarUNet(UNetConfig(width=4, depth=2))
    assert small(torch.zeros(1, 10, 30, 22)).shape == (1, 2, 30, 22)
    with pytest.raises(ValueError, match="echoes"):
        small(torch.zeros(1, 9, 16, 16))


def test_published_schedule_scaled():
    assert learning_rate(8e-4, 5, 80) == pytest.approx(8e-4)
    assert learning_rate(8e-4, 6, 80) == pytest.approx(8e-4 / 1.5)
    assert learning_rate(8e-4, 79, 80) == pytest.approx(8e-4 / 18)
    assert learning_rate(8e-4, 10, 40) == pytest.approx(8e-4 / 4.5)  # epochs 3 and 10 of 40


def test_losses_vanish_at_the_truth(anatomy):
    data = make_slice_set(anatomy, [0], [10.0])
    truth = torch.stack([data.s0, data.r2s], dim=1)
    te = echo_times()
    # training's F is the VSF estimate: at the truth the denoising loss is the (small) F error only
    with_vsf_f = loss_of("denoise", truth, data, te, 20.0).item()
    assert 0 < with_vsf_f < 0.05 * (data.clean[data.mask.unsqueeze(1).expand_as(data.clean)] ** 2).mean()
    data.f = make_subject(anatomy, 0).f.transpose(0, 1)  # the F that made the data
    assert loss_of("denoise", truth, data, te, 20.0).item() < 1e-10
    assert loss_of("supervised", truth, data, te, 20.0).item() == 0.0
    # self-supervised: the residual is the noise, variance (mean S0 / SNR)^2 after normalisation
    sigma = (data.noisy - data.clean)[data.mask.unsqueeze(1).expand_as(data.noisy)].std()
    assert loss_of("self", truth, data, te, 20.0).item() == pytest.approx(sigma.item() ** 2, rel=0.1)


def test_config_errors_name_the_file_and_the_dotted_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("mode: denoise\ndata: {size: 32, colour: blue}\n")
    with pytest.raises(
        ConfigError, match=rf"^{re.escape(str(bad))}: unknown key 'data.colour'; data accepts: "
    ):
        load_config(bad)
    for text, message in (
        ("mode: dream\n", "mode: expected one of 'self', 'denoise', 'supervised', got 'dream'"),
        ("lr: abc\n", "lr: expected float, got 'abc'"),
        ("data: {snr: [20, 5]}\n", "data.snr: expected 0 < low <= high, got (20.0, 5.0)"),
        ("model: {width: 0}\n", "model: U-Net sizes must be positive"),
        ("epochs: 0\n", "epochs: expected a number >= 1, got 0"),
    ):
        bad.write_text(text)
        with pytest.raises(ConfigError) as err:
            load_config(bad)
        assert str(err.value).startswith(f"{bad}: {message}")


def test_shipped_config_loads():
    cfg = load_config(Path(roar_train.__file__).parent / "roar_small.yaml")
    assert cfg.data.snr == (5.0, 20.0) and cfg.model.width == 16 and cfg.epochs == 20
    sup = load_config(Path(roar_train.__file__).parent / "roar_small_supervised.yaml")
    assert sup.mode == "supervised" and sup.model == cfg.model and sup.data == cfg.data


def test_tiny_training_learns_saves_and_resumes(tmp_path):
    cfg = TrainConfig(
        mode="denoise",
        output=str(tmp_path / "run"),
        epochs=2,
        batch=4,
        lr=5e-3,
        data=DataConfig(size=32, subjects=3, val=1, test=1, copies=4),
        model=UNetConfig(width=4, depth=2, dropout=0.0),
    )
    summary = train(cfg, progress=False)
    out = tmp_path / "run"
    assert {"model.safetensors", "checkpoint.pt", "history.json", "loss.png"} <= {
        p.name for p in out.iterdir()
    }
    model, te, info = load_weights(out / "model.safetensors")
    assert info["mode"] == "denoise" and torch.allclose(te, echo_times())
    from mrzero.pipelines.roar.synthetic import brain_anatomy, split_indices

    val = make_slice_set(
        brain_anatomy(32), split_indices(3, 1, 1)["val"], (5.0, 20.0), seed=0, noise_seed=10_000
    )
    trained, trained_re = evaluate_loss(model, val, cfg, te, torch.device("cpu"))
    torch.manual_seed(0)
    untrained, untrained_re = evaluate_loss(RoarUNet(cfg.model), val, cfg, te, torch.device("cpu"))
    assert trained == pytest.approx(min(summary["history"]["val_loss"]), rel=1e-4)
    assert trained < 0.9 * untrained and trained_re < untrained_re
    cfg.epochs = 3
    resumed = train(cfg, progress=False)
    assert len(resumed["history"]["train_loss"]) == 3
    assert resumed["history"]["train_loss"][:2] == summary["history"]["train_loss"]
    assert json.loads((out / "history.json").read_text())["config"]["epochs"] == 3


def test_an_interrupted_run_resumes_exactly_as_an_uninterrupted_one(tmp_path):
    """Dropout on, a partial last minibatch: the epoch order and the RNG state come back on resume."""
    from mrzero.pipelines.roar.train import RoarTraining

    def config(name: str) -> TrainConfig:
        return TrainConfig(
            mode="self",
            output=str(tmp_path / name),
            epochs=3,
            batch=3,
            lr=5e-3,
            data=DataConfig(size=32, subjects=3, val=1, test=1, copies=4),
            model=UNetConfig(width=4, depth=2, dropout=0.2),
        )

    full = train(config("full"), progress=False)
    first = RoarTraining(config("split"), progress=False)
    first.iterations = 2 * first.per_epoch  # stopped after two of the three epochs
    first.train()
    resumed = train(config("split"), progress=False)
    assert resumed["history"] == full["history"]
    assert resumed["best_epoch"] == full["best_epoch"] and resumed["best_val_loss"] == full["best_val_loss"]
    weights = [
        load_weights(tmp_path / name / "model.safetensors")[0].state_dict() for name in ("full", "split")
    ]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


@pytest.mark.slow
def test_two_ranks_train_the_weights_of_one_process(tmp_path):
    """``torchrun --nproc-per-node 2 mrzero roar train``: minibatches of 5 split 3 + 2, no dropout;
    the same curves and weights as one process (float32 summation order: 1e-5)."""
    from torchrun_launch import MRZERO, TORCHRUN, torchrun_mrzero

    if not TORCHRUN.is_file() or not MRZERO.is_file():
        pytest.skip("needs torchrun and mrzero")
    config = {
        "mode": "self",
        "epochs": 2,
        "batch": 5,
        "lr": 5e-3,
        "device": "cpu",
        "data": {"size": 32, "subjects": 3, "val": 1, "test": 1, "copies": 4},
        "model": {"width": 4, "depth": 2, "dropout": 0.0},
    }
    for name in ("one", "two"):
        (tmp_path / f"{name}.yaml").write_text(json.dumps({**config, "output": str(tmp_path / name)}))
    one = train(load_config(tmp_path / "one.yaml"), progress=False)
    done = torchrun_mrzero("roar", "train", str(tmp_path / "two.yaml"), "--no-progress")
    assert done.stdout.count("best validation loss") == 1  # rank 0 alone reports
    two = json.loads((tmp_path / "two" / "history.json").read_text())
    for key in ("train_loss", "val_loss", "val_re", "lr"):
        assert two["history"][key] == pytest.approx(one["history"][key], rel=1e-5), key
    weights = [load_weights(tmp_path / name / "model.safetensors")[0].state_dict() for name in ("one", "two")]
    assert all(torch.allclose(weights[0][k], weights[1][k], atol=1e-5) for k in weights[0])


def test_an_unavailable_device_fails_naming_it(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    from mrzero.cli import main

    path = tmp_path / "c.yaml"
    path.write_text(json.dumps({"output": str(tmp_path / "out"), "epochs": 1}))
    assert main(["roar", "train", str(path), "--device", "cuda", "--no-progress"]) == 2
    assert "device 'cuda' asked for, but torch sees no CUDA device" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()
