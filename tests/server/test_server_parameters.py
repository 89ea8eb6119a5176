"""Declared pipeline parameters over a real socket: a client's unknown or invalid JSON parameter
ends its scan with an error text naming the parameter, the value and what is allowed; FIRE's
keys and valid values reconstruct."""

from __future__ import annotations

import json

import pytest
from scans_for_tests import header_xml, scan

from mrzero.client import Reply, stream
from mrzero.pipelines.parameters import SERIES_INDEX_MAX


def _scan(server, parameters: dict, config: str | None = "cartesian") -> Reply:
    host, port = server.address
    text = json.dumps({"parameters": parameters})  # as FIRE sends them
    return stream(scan(), header_xml(), host=host, port=port, config=config, texts=[text], timeout_s=120)


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        (
            {"combine": "sos"},
            "pipeline 'cartesian': JSON parameter combine: expected one of 'rss', 'adaptive', got 'sos'",
        ),
        (
            {"series_index": 70000},
            f"pipeline 'cartesian': JSON parameter series_index: expected a number >= 0 and "
            f"<= {SERIES_INDEX_MAX}, got 70000",
        ),
        ({"prewhiten": "yes"}, "pipeline 'cartesian': JSON parameter prewhiten: expected bool, got 'yes'"),
        (
            {"combin": "rss"},
            "pipeline 'cartesian': unknown JSON parameter 'combin' (= 'rss'); accepted: adaptive_kernel, "
            "bundle,",
        ),
        (  # a roar parameter sent to the pipeline that FIRE's customconfig selects
            {"customconfig": "adjoint", "mask_threshold": 0.2},
            "pipeline 'adjoint': unknown JSON parameter 'mask_threshold' (= 0.2)",
        ),
    ],
)
def test_a_bad_parameter_ends_the_scan_with_its_name_value_and_what_is_allowed(server, parameters, message):
    reply = _scan(server, parameters)
    assert reply.closed and reply.images == [], reply.texts
    assert len(reply.errors) == 1 and message in reply.errors[0], reply.errors


def test_fire_keys_and_valid_parameters_reconstruct(server):
    reply = _scan(
        server,
        {
            "config": "cartesian",
            "customconfig": "",
            "output": "float",
            "series_index": 7,
            "combine": "adaptive",
        },
        config=None,
    )
    assert reply.errors == [] and reply.closed, reply.texts
    assert len(reply.images) == 1
    image = reply.images[0]
    assert image.image_series_index == 7 and image.data.dtype.name == "float32"
