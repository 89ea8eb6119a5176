"""Bundles: export from a checkpoint, validation, deployment into a store, lookup, and the CLI."""

from __future__ import annotations

import json
import logging
import re
import shutil

import numpy as np
import pytest
import torch
from pulseq_samples import cartesian_gre, radial_gre

from mrzero.cli import main
from mrzero.core.bundles import BundleError, find_bundle
from mrzero.sequences.builders import BUILDERS
from mrzero.sequences.bundle import check_bundle, deploy_bundle, write_bundle
from mrzero.sequences.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from mrzero.sequences.pulseq.import_ import echo_and_repetition_time
from mrzero.sequences.pulseq.signature import verified_signature


@pytest.fixture
def bundle(tmp_path):
    seq = BUILDERS["gre"](matrix=8)
    head = {"layer.weight": torch.randn(4, 2), "layer.bias": torch.zeros(4)}
    meta = {"pipeline": "cartesian", "provenance": {"loss": 0.5}}
    path = save_checkpoint(tmp_path / "run.pt", seq, head=head, metadata=meta, figure_png=b"\x89PNG")
    out = tmp_path / "bundle"
    write_bundle(load_checkpoint(path), out, name="flash8", source=path)
    return out


def test_written_bundle_holds_everything_and_checks(bundle):
    protocol = check_bundle(bundle)
    assert protocol["name"] == "flash8" and protocol["pipeline"] == "cartesian"
    assert protocol["signature"] == verified_signature(bundle / "sequence.seq")
    assert protocol["te_ms"] == pytest.approx(3.0, abs=1e-3)
    assert protocol["tr_ms"] == pytest.approx(20.0, abs=1e-3)
    assert protocol["encoding"]["matrix"] == [8, 8, 1] and protocol["encoding"]["n_samples"] == 64
    assert protocol["provenance"]["loss"] == 0.5 and protocol["provenance"]["checkpoint"].endswith("run.pt")
    trajectory = np.load(bundle / "trajectory.npy")
    assert trajectory.shape == (64, 3) and trajectory.dtype == np.float32
    assert (bundle / "sequence.testreport.txt").is_file()
    assert (bundle / "training.png").read_bytes() == b"\x89PNG"


def test_check_lists_every_problem(bundle):
    text = (bundle / "sequence.seq").read_text()
    (bundle / "sequence.seq").write_text(text.replace("Name flash", "Name flish"))
    trajectory = np.load(bundle / "trajectory.npy")
    np.save(bundle / "trajectory.npy", trajectory + 0.25)
    (bundle / "head.safetensors").write_bytes(b"garbage")
    protocol = json.loads((bundle / "protocol.json").read_text())
    protocol["pipeline"] = "no_such_pipeline"
    (bundle / "protocol.json").write_text(json.dumps(protocol))
    with pytest.raises(BundleError) as err:
        check_bundle(bundle)
    message = str(err.value)
    assert "edited after it was signed" in message
    assert "trajectory differs from the file's k-space by up to 0.2500 cycles/FOV" in message
    assert "do not load as safetensors" in message
    assert "pipeline 'no_such_pipeline' is not a bundle pipeline" in message
    with pytest.raises(BundleError, match="no protocol.json"):
        check_bundle(bundle / "missing")
    (bundle / "protocol.json").write_text(json.dumps({**protocol, "files": ["sequence.seq"], "name": 3}))
    with pytest.raises(BundleError, match=r"protocol\.json: name: expected str, got 3$"):
        check_bundle(bundle)
    (bundle / "protocol.json").write_text(json.dumps({**protocol, "files": ["sequence.seq"]}))
    with pytest.raises(
        BundleError, match=r"protocol\.json: files: expected a mapping of keys, got \['sequence.seq'\]"
    ):
        check_bundle(bundle)
    (bundle / "protocol.json").write_text(
        json.dumps({**protocol, "encoding": {**protocol["encoding"], "nx": 8}})
    )
    with pytest.raises(
        BundleError, match=r"protocol\.json: unknown protocol key 'encoding\.nx'; encoding accepts: "
    ):
        check_bundle(bundle)
    (bundle / "protocol.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        check_bundle(bundle)


def test_export_refusals_name_the_problem(tmp_path, bundle):
    checkpoint = Checkpoint(BUILDERS["gre"](matrix=8))
    with pytest.raises(BundleError, match="exists and is not empty"):
        write_bundle(checkpoint, bundle)
    with pytest.raises(BundleError, match="unknown pipeline 'nope'"):
        write_bundle(checkpoint, tmp_path / "a", pipeline="nope")
    with pytest.raises(BundleError, match="is not Cartesian: name its reconstruction pipeline"):
        write_bundle(Checkpoint(radial_gre()), tmp_path / "b")


def test_deploy_then_find_by_name_or_signature(tmp_path, bundle):
    store = tmp_path / "store"
    target = deploy_bundle(bundle, store)
    protocol = check_bundle(bundle)
    assert target == store / "bundles" / "flash8" / protocol["signature"]
    by_name = find_bundle(store, name="flash8")
    by_signature = find_bundle(store, signature=protocol["signature"].upper())
    assert by_name.path == by_signature.path == target
    assert deploy_bundle(bundle, store) == target  # redeploying replaces the copy
    assert find_bundle(store, name="flash8").deployed_at > by_name.deployed_at
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no staging left behind
    assert by_name.pipeline == "cartesian"
    np.testing.assert_array_equal(by_name.trajectory(), np.load(bundle / "trajectory.npy"))
    assert set(by_name.head_weights()) == {"layer.weight", "layer.bias"}
    # A retrained sequence under the same name: the latest deployment wins the name lookup.
    newer = tmp_path / "newer"
    seq = BUILDERS["gre"](matrix=8, flip=0.2)
    write_bundle(Checkpoint(seq, metadata={"name": "flash8"}), newer)
    deploy_bundle(newer, store)
    assert find_bundle(store, name="flash8").signature == check_bundle(newer)["signature"]
    assert find_bundle(store, name="flash8", signature=protocol["signature"]).path == target
    assert find_bundle(store, name="other") is None
    assert find_bundle(store, signature="0" * 32) is None


def test_lookups_from_the_network_cannot_escape_the_store(tmp_path):
    with pytest.raises(BundleError, match="invalid bundle name '../etc'"):
        find_bundle(tmp_path, name="../etc")
    with pytest.raises(BundleError, match="invalid Pulseq signature"):
        find_bundle(tmp_path, signature="*")
    with pytest.raises(BundleError, match="needs a name or a signature"):
        find_bundle(tmp_path)


def test_invalid_bundle_is_not_deployed(tmp_path, bundle):
    np.save(bundle / "trajectory.npy", np.zeros((3, 3), dtype=np.float32))
    with pytest.raises(BundleError, match="trajectory has shape"):
        deploy_bundle(bundle, tmp_path / "store")
    assert find_bundle(tmp_path / "store", name="flash8") is None


def test_cli_export_check_deploy(tmp_path, caplog, capsys):
    out, store = tmp_path / "b", tmp_path / "store"
    assert main(["export", "--sequence", "gre", "--matrix", "8", "-o", str(out), "--hardware", "prisma"]) == 0
    assert "0 stretched event(s)" in capsys.readouterr().out
    assert main(["bundle", "check", str(out)]) == 0
    assert main(["deploy", str(out), "--store", str(store)]) == 0
    assert find_bundle(store, name="flash_8x8") is not None
    shutil.rmtree(out)
    caplog.set_level(logging.ERROR)
    assert main(["export", "--sequence", "gre", "--matrix", "8", "-o", str(out), "--max-grad", "2"]) == 1
    assert "exceeds max_grad 2.00 mT/m" in caplog.text
    assert main(["export", "-o", str(out)]) == 2
    assert main(["bundle", "check", str(tmp_path)]) == 1


def test_protocol_te_and_tr_are_the_written_files_not_the_models(tmp_path):
    """A prephaser too short for its moment is stretched by 1.03 ms: the protocol's TE says so,
    as pypulseq's test report of the written file does."""
    seq = cartesian_gre(n=16, te_fill=0.1e-3)
    protocol = write_bundle(Checkpoint(seq), tmp_path / "b", pipeline="cartesian")
    assert protocol["stretched_events"]
    report = (tmp_path / "b" / "sequence.testreport.txt").read_text()
    reported_te = float(re.search(r"^TE: ([0-9.]+) s", report, re.MULTILINE).group(1))
    assert protocol["te_ms"] == pytest.approx(1e3 * reported_te, abs=1e-3)
    assert protocol["te_ms"] > 1e3 * echo_and_repetition_time(seq)[0] + 1.0  # the model's TE is 0.74 ms
