"""Scans the MRzero pipelines cannot reconstruct get a clear error over the real socket, and their raw
data are journaled all the same: unknown signature, unknown bundle name, head weights that no
longer load, a trajectory whose length disagrees with the data, no bundle store."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import ismrmrd.xsd as xsd
import pytest
import torch
from twin_scans import scan_of

from mrzero.client import stream
from mrzero.core.bundles import SIGNATURE_PARAMETER
from mrzero.core.heads import build_head
from mrzero.pipelines import registry
from mrzero.pipelines.base import Context, PipelineError
from mrzero.pipelines.offline import read_acquisitions
from mrzero.sequences.builder_scan import build_sequence
from mrzero.sequences.bundle import deploy_bundle, write_bundle
from mrzero.sequences.checkpoint import Checkpoint
from mrzero.twin_demo import stream_scan

HEAD_CONFIG = {"kind": "mlp", "n_in": 1, "hidden": [4], "scale": 1.0}


def newest_journal(server) -> Path:
    return max(server.settings.data_dir.glob("*.h5"), key=lambda p: p.stat().st_mtime_ns)


def assert_failed_but_journaled(reply, server, expected: str, n_acquisitions: int) -> None:
    assert not reply.images and reply.closed
    assert any(expected in e for e in reply.errors), reply.texts
    assert sum(1 for _ in read_acquisitions(newest_journal(server))) == n_acquisitions


def with_signature(xml_header: xsd.ismrmrdHeader, signature: str) -> str:
    header = copy.deepcopy(xml_header)
    header.userParameters.userParameterString[0] = xsd.userParameterStringType(
        name=SIGNATURE_PARAMETER, value=signature
    )
    return xsd.ToXML(header)


def test_unknown_signature_is_refused_and_journaled(server, builder_bundles):
    scan = scan_of(builder_bundles["flash"])
    reply = stream(
        scan.acquisitions,
        with_signature(scan.header, "0" * 32),
        host=server.address[0],
        port=server.address[1],
        config="adjoint",
    )
    assert_failed_but_journaled(reply, server, f"Pulseq signature {'0' * 32}", len(scan.acquisitions))
    assert "mrzero deploy" in reply.errors[0]


def test_malformed_signature_and_unknown_name_are_refused(server, builder_bundles):
    scan = scan_of(builder_bundles["flash"])
    reply = stream(
        scan.acquisitions,
        with_signature(scan.header, "../../etc"),
        host=server.address[0],
        port=server.address[1],
        config="adjoint",
    )
    assert_failed_but_journaled(reply, server, "invalid Pulseq signature", len(scan.acquisitions))
    reply = stream_scan(scan, *server.address, parameters={"bundle": "no_such_bundle"})
    assert_failed_but_journaled(reply, server, "bundle 'no_such_bundle'", len(scan.acquisitions))


def test_trajectory_length_disagreeing_with_the_data_is_refused(server, builder_bundles):
    scan = scan_of(builder_bundles["flash"])
    short = scan.acquisitions[:-1]
    reply = stream(short, scan.header_xml, host=server.address[0], port=server.address[1], config="adjoint")
    assert_failed_but_journaled(reply, server, "trajectory's length disagrees with the data", len(short))
    extra = [*scan.acquisitions, scan.acquisitions[-1]]
    reply = stream(extra, scan.header_xml, host=server.address[0], port=server.address[1], config="adjoint")
    assert_failed_but_journaled(reply, server, "more samples than bundle test_flash's trajectory", len(extra))


@pytest.fixture(scope="module")
def head_bundles(tmp_path_factory, store) -> dict[str, Path]:
    """A FLASH (TE 4 ms, its own signature) with a tiny MLP head deployed as ``test_head``, and the same
    deployed as ``test_head_broken`` whose weights were damaged in the store after deployment."""
    root = tmp_path_factory.mktemp("head_bundles")
    seq = build_sequence("gre", 16, 0.2, te=4e-3)
    torch.manual_seed(0)
    head = build_head(HEAD_CONFIG).state_dict()
    meta = {"head_config": HEAD_CONFIG, "head_output": {"quantity": "ratio", "units": "1"}}
    deployed = {}
    for name in ("test_head", "test_head_broken"):
        write_bundle(Checkpoint(seq, head, meta), root / name, name=name, pipeline="mrzero_head")
        deployed[name] = deploy_bundle(root / name, store)
    (deployed["test_head_broken"] / "head.safetensors").write_bytes(b"not safetensors at all")
    return deployed


def test_head_applies_and_says_what_its_maps_are(server, builder_bundles, head_bundles):
    scan = scan_of(builder_bundles["flash"])
    reply = stream_scan(scan, *server.address, config="mrzero_head", parameters={"bundle": "test_head"})
    assert reply.errors == [] and len(reply.images) == 1, reply.texts
    image = reply.images[0]
    meta = image.meta
    assert (meta["DataRole"], meta["Quantity"], meta["Units"]) == ("Quantitative", "ratio", "1")
    assert image.data.dtype.name == "float32" and image.data.shape == (1, 1, 16, 16)


def test_head_weights_that_fail_to_load_are_refused_and_journaled(server, builder_bundles, head_bundles):
    scan = scan_of(builder_bundles["flash"])
    reply = stream_scan(
        scan, *server.address, config="mrzero_head", parameters={"bundle": "test_head_broken"}
    )
    assert_failed_but_journaled(
        reply, server, "bundle test_head_broken: the head weights fail to load", len(scan.acquisitions)
    )


def test_bundle_without_head_is_refused_by_mrzero_head(server, builder_bundles):
    scan = scan_of(builder_bundles["flash"])
    reply = stream_scan(scan, *server.address, config="mrzero_head")
    assert_failed_but_journaled(
        reply, server, "bundle test_flash has no reconstruction head", len(scan.acquisitions)
    )


def test_a_signed_scan_without_a_store_says_so(builder_bundles):
    scan = scan_of(builder_bundles["flash"])
    ctx = Context(header=scan.header, parameters={}, pipeline_name="adjoint")
    with pytest.raises(PipelineError, match="no bundle store"):
        list(registry.get("adjoint").run(iter(scan.acquisitions), ctx))


def test_bad_parameters_are_named(builder_bundles, store):
    scan = scan_of(builder_bundles["flash"])
    for parameters, message in (
        ({"iterations": 0}, "iterations: expected a number >= 1 and <= 500, got 0"),
        ({"density": "voronoi"}, "density: expected 'none' | 'pipe' | null, got 'voronoi'"),
        ({"method": "magic"}, "method: expected 'iterative' | 'cg' | null, got 'magic'"),
        ({"device": "tpu"}, "device: expected text matching cpu|cuda"),
        ({"bundle": 3}, "bundle: expected str | null, got 3"),
        ({"iteration": 3}, "unknown JSON parameter 'iteration' (= 3); accepted: "),
    ):
        ctx = Context(
            header=scan.header, parameters=parameters, pipeline_name="iterative_adjoint", bundle_store=store
        )
        with pytest.raises(PipelineError) as err:
            list(registry.get("iterative_adjoint").run(iter(scan.acquisitions), ctx))
        assert message in str(err.value)


def test_broken_deployed_copy_does_not_hide_others(tmp_path, builder_bundles):
    """A store entry without its deployment record is skipped, the valid bundle is still found."""
    store = tmp_path / "store"
    target = deploy_bundle(builder_bundles["flash"], store)
    broken = target.parent / ("f" * 32)
    shutil.copytree(target, broken)
    (broken / "deployment.json").unlink()
    scan = scan_of(builder_bundles["flash"])
    ctx = Context(
        header=scan.header, parameters={"output": "float"}, pipeline_name="adjoint", bundle_store=store
    )
    assert len(list(registry.get("adjoint").run(iter(scan.acquisitions), ctx))) == 1
