"""RoAR bundles: the shipped one is valid, ``write_roar_bundle`` makes checked bundles, and the
pipeline's choice of network (JSON name, Pulseq signature, default name, shipped fallback)."""

import json
import shutil

import ismrmrd
import pytest
import torch

from mrzero.cli import main
from mrzero.core.bundles import HEAD_FILE, BundleError, file_sha256
from mrzero.pipelines.base import Context, PipelineError
from mrzero.pipelines.roar.bundle import (
    DEFAULT_NAME,
    SHIPPED_BUNDLE,
    RoarModelSource,
    scan_source,
)
from mrzero.pipelines.roar.pipeline import load_model
from mrzero.pipelines.roar.unet import RoarUNet, UNetConfig
from mrzero.pipelines.roar.weights_file import load_weights, save_weights
from mrzero.roar_bundle import write_roar_bundle
from mrzero.sequences.builder_scan import build_sequence
from mrzero.sequences.bundle import check_bundle, deploy_bundle, write_bundle
from mrzero.sequences.checkpoint import Checkpoint

TE = torch.arange(1, 11) * 4e-3


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """Weights of a tiny U-Net (width 4, depth 1) with the protocol's echo times."""
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    torch.manual_seed(0)
    save_weights(RoarUNet(UNetConfig(width=4, depth=1)), path, TE, {"config": {"mode": "denoise"}})
    return path


@pytest.fixture(scope="module")
def tiny_bundle(tiny_weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles") / "roar_tiny"
    write_roar_bundle(tiny_weights, out, name="roar_tiny", matrix=16)
    return out


def _ctx(store=None, signature=None, **parameters):
    conditions = ismrmrd.xsd.experimentalConditionsType(H1resonanceFrequency_Hz=123_000_000)
    header = ismrmrd.xsd.ismrmrdHeader(experimentalConditions=conditions)
    if signature:
        header.userParameters = ismrmrd.xsd.userParametersType(
            userParameterString=[ismrmrd.xsd.userParameterStringType(name="PulseqSignature", value=signature)]
        )
    return Context(header=header, parameters=parameters, bundle_store=store, pipeline_name="roar")


def test_the_shipped_bundle_is_valid_and_describes_its_network():
    protocol = check_bundle(SHIPPED_BUNDLE)
    model, te, info = load_weights(SHIPPED_BUNDLE / HEAD_FILE)
    head = protocol["head"]
    assert protocol["name"] == DEFAULT_NAME and protocol["pipeline"] == "roar"
    assert head["sha256"] == file_sha256(SHIPPED_BUNDLE / HEAD_FILE)
    assert head["config"]["te_ms"] == pytest.approx((te * 1e3).tolist(), abs=1e-6)
    assert head["config"]["width"] == model.config.width and head["config"]["kind"] == "roar_unet"
    assert [o["units"] for o in head["output"]] == ["a.u. (mean first echo = 1)", "1/s"]
    assert protocol["provenance"]["training"]["config"] == info["config"]
    assert any("mrzero roar train" in c for c in protocol["provenance"]["rebuild"])
    assert protocol["encoding"]["matrix"][:2] == [64, 64] and protocol["te_ms"] == pytest.approx(
        4.0, abs=1e-3
    )


def test_written_bundle_is_checked_and_a_changed_head_is_refused(tiny_bundle, tmp_path):
    assert check_bundle(tiny_bundle)["encoding"]["n_readouts"] == 16 * 10
    copy = tmp_path / "copy"
    shutil.copytree(tiny_bundle, copy)
    data = bytearray((copy / HEAD_FILE).read_bytes())
    data[-1] ^= 0xFF
    (copy / HEAD_FILE).write_bytes(bytes(data))
    with pytest.raises(BundleError, match="SHA-256"):
        check_bundle(copy)


def test_unequal_echo_spacing_cannot_be_bundled(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights(RoarUNet(UNetConfig(width=4, depth=1)), path, TE**1.2, {})
    with pytest.raises(BundleError, match="equally spaced"):
        write_roar_bundle(path, tmp_path / "b", matrix=16)


def test_cli_bundles_deploys_and_checks(tiny_weights, tmp_path, capsys):
    out, store = tmp_path / "cli_bundle", tmp_path / "store"
    assert (
        main(["roar", "bundle", str(tiny_weights), "-o", str(out), "--name", "roar_cli", "--matrix", "16"])
        == 0
    )
    assert main(["bundle", "check", str(out)]) == 0
    assert main(["deploy", str(out), "--store", str(store)]) == 0
    assert "roar_cli" in capsys.readouterr().out
    assert (store / "bundles" / "roar_cli").is_dir()
    assert main(["roar", "bundle", str(tiny_weights), "-o", str(out)]) == 1  # not empty any more


def test_source_follows_name_then_signature_then_default_then_shipped(tiny_bundle, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    assert scan_source(_ctx()).weights == SHIPPED_BUNDLE / HEAD_FILE
    assert scan_source(_ctx(store)).weights == SHIPPED_BUNDLE / HEAD_FILE
    assert scan_source(_ctx(None, bundle=DEFAULT_NAME)).weights == SHIPPED_BUNDLE / HEAD_FILE
    tiny = deploy_bundle(tiny_bundle, store)
    protocol = json.loads((tiny_bundle / "protocol.json").read_text())
    assert scan_source(_ctx(store, bundle="roar_tiny")).weights == tiny / HEAD_FILE
    assert scan_source(_ctx(store, signature=protocol["signature"])).weights == tiny / HEAD_FILE
    # a signature the store does not hold: the default name, here the shipped bundle
    assert scan_source(_ctx(store, signature="0" * 32)).weights == SHIPPED_BUNDLE / HEAD_FILE
    default = deploy_bundle(SHIPPED_BUNDLE, store)
    assert scan_source(_ctx(store)).weights == default / HEAD_FILE
    source = scan_source(_ctx(store, bundle="roar_tiny"))
    model, te = load_model(source, "cpu")
    assert model.config.width == 4 and torch.allclose(te, TE)


def test_unknown_or_foreign_bundles_are_named(tmp_path):
    store = tmp_path / "store"
    write_bundle(
        Checkpoint(build_sequence("gre", 16, 0.2)), tmp_path / "flash", name="flash", pipeline="adjoint"
    )
    deploy_bundle(tmp_path / "flash", store)
    with pytest.raises(PipelineError, match="'nothing_here' is deployed in the bundle store") as err:
        scan_source(_ctx(store, bundle="nothing_here"))
    assert str(store) not in str(err.value)  # error texts go to clients: no server paths
    with pytest.raises(PipelineError, match="no bundle store"):
        scan_source(_ctx(None, bundle="roar_other"))
    with pytest.raises(PipelineError, match="'adjoint' pipeline, not roar"):
        scan_source(_ctx(store, bundle="flash"))
    with pytest.raises(PipelineError, match="JSON parameter bundle: expected text matching"):
        scan_source(_ctx(store, bundle="../../etc"))
    with pytest.raises(PipelineError, match=r"JSON parameter bundle: expected str \| null, got 3"):
        scan_source(_ctx(store, bundle=3))


def test_weights_that_are_missing_or_do_not_load_are_named(tmp_path):
    with pytest.raises(PipelineError, match="weights of bundle gone are missing"):
        load_model(RoarModelSource(tmp_path / "gone.safetensors", None, "bundle gone"), "cpu")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(PipelineError, match="weights of bundle junk do not load"):
        load_model(RoarModelSource(garbage, None, "bundle junk"), "cpu")
