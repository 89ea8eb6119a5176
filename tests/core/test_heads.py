"""MRzero heads: shapes, PD invariance of the pixel MLP, the CNN's identity start, safe loading."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from mrzero.core.heads import HeadError, ImageCNN, PixelMLP, build_head, load_head


def test_pixel_mlp_maps_signal_evolutions_to_one_value_per_pixel_independent_of_pd():
    torch.manual_seed(0)
    head = PixelMLP(n_in=10, hidden=(16, 16, 16), scale=2.0)
    images = torch.randn(10, 5, 6, dtype=torch.complex64)
    out = head(images)
    assert out.shape == (1, 5, 6)
    scaled = head(images * 7.0)  # a brighter voxel (more PD) with the same evolution
    assert torch.allclose(out, scaled, atol=1e-5)
    pixel = head(images[:, 2:3, 4:5])  # pixel-wise: one pixel alone gives the same value
    assert torch.allclose(pixel[0, 0, 0], out[0, 2, 4], atol=1e-6)


def test_cnn_starts_as_the_magnitude_image_and_is_trainable():
    head = ImageCNN(n_in=1, channels=4, layers=2)
    img = torch.randn(1, 8, 8, dtype=torch.complex64)
    assert torch.allclose(head(img), img.abs())
    head(img).sum().backward()
    assert head.net[-1].weight.grad is not None and float(head.net[-1].weight.grad.abs().sum()) > 0


def test_wrong_inputs_are_refused():
    with pytest.raises(ValueError, match="expects 10 contrast images"):
        PixelMLP(10)(torch.zeros(3, 4, 4))
    with pytest.raises(HeadError, match="kind"):
        build_head({"kind": "transformer"})
    with pytest.raises(HeadError, match="hidden"):
        build_head({"kind": "mlp", "n_in": 3, "hidden": []})


def test_heads_load_from_safetensors_and_torch_files(tmp_path):
    config = {"kind": "mlp", "n_in": 4, "hidden": [8, 8, 8]}
    head = build_head(config)
    state = {k: v.contiguous() for k, v in head.state_dict().items()}
    save_file(state, str(tmp_path / "h.safetensors"))
    torch.save(state, tmp_path / "h.pt")
    x = torch.rand(4, 3, 3)
    for name in ("h.safetensors", "h.pt"):
        loaded = load_head(config, tmp_path / name)
        assert torch.allclose(loaded(x), head(x))
        assert not loaded.training


class Payload:
    """Any pickled object: weights_only loading must refuse to build it."""


def test_unsafe_or_mismatched_weights_are_refused(tmp_path):
    config = {"kind": "cnn", "n_in": 1, "channels": 4, "layers": 2}

    torch.save({"x": Payload()}, tmp_path / "evil.pt")  # a pickled object, not tensors
    with pytest.raises(HeadError, match="not a safe weights file"):
        load_head(config, tmp_path / "evil.pt")
    with pytest.raises(HeadError, match="do not fit"):
        load_head(config, build_head({"kind": "cnn", "n_in": 1, "channels": 8, "layers": 2}).state_dict())
    with pytest.raises(HeadError, match="no such"):
        load_head(config, tmp_path / "missing.safetensors")


def test_complex_features_keep_the_sign_of_the_recovery_and_drop_pd_and_phase():
    torch.manual_seed(0)
    head = PixelMLP(n_in=4, hidden=(8, 8, 8), features="complex")
    signal = torch.tensor([-0.8, -0.3, 0.2, 0.6], dtype=torch.complex64)[:, None, None]  # inversion recovery
    out = head(signal)
    rotated = signal * 3.0 * torch.exp(torch.tensor(0.7j))  # more PD, another receiver/B0 phase
    assert torch.allclose(head(rotated), out, atol=1e-5)
    features = head.pixel_features(signal)
    assert features.shape == (1, 8)
    assert torch.allclose(features[0, :4], torch.tensor([1.0, 0.375, -0.25, -0.75]))  # vs the strongest
    folded = head.pixel_features(signal.abs().to(torch.complex64))  # what a magnitude head would see
    assert not torch.allclose(folded, features)
    with pytest.raises(ValueError, match="features"):
        PixelMLP(n_in=4, features="phase")
