"""Fixtures of the scanner tests: a bundle store, a real server on 127.0.0.1 that searches it, and
digital-twin scans simulated once per session (the simulation is the expensive part).

Torch runs single-threaded here, as the server's workers do on this shared 2-core host.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from twin_scans import SHIPPED

from mrzero.sequences.builder_scan import build_sequence
from mrzero.sequences.bundle import deploy_bundle, write_bundle
from mrzero.sequences.checkpoint import Checkpoint
from mrzero.sequences.digital_twin import SHIPPED_BUNDLES
from mrzero.server.limits import MB, Limits, Settings
from mrzero.server.listener import Server

LIMITS = Limits(
    max_message_bytes=16 * MB,
    pipeline_timeout_s=60.0,
    memory_limit_bytes=2048 * MB,
    max_connections=4,
    idle_timeout_s=60.0,
)


@pytest.fixture(autouse=True)
def _single_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def builder_bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small bundles exported from builder sequences: a 16x16 FLASH (adjoint) and a 32x32 radial GRE
    with 1 deg flips (iterative_adjoint), for the error and radial tests."""
    root = tmp_path_factory.mktemp("bundles")
    flash = build_sequence("gre", 16, 0.2)
    radial = build_sequence("radial", 32, 0.2, spokes=64, flip=math.radians(1.0))
    write_bundle(Checkpoint(flash), root / "flash", name="test_flash", pipeline="adjoint")
    write_bundle(Checkpoint(radial), root / "radial", name="test_radial", pipeline="iterative_adjoint")
    return {"flash": root / "flash", "radial": root / "radial"}


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory, builder_bundles: dict[str, Path]) -> Path:
    """A bundle store holding the shipped bundles and the builder bundles."""
    root = tmp_path_factory.mktemp("store")
    for name in SHIPPED:
        deploy_bundle(SHIPPED_BUNDLES / name, root)
    for path in builder_bundles.values():
        deploy_bundle(path, root)
    return root


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, store: Path) -> Iterator[Server]:
    srv = Server(
        Settings(
            port=0,
            data_dir=tmp_path_factory.mktemp("journal"),
            limits=LIMITS,
            bundle_store=store,
            pipeline_threads=1,
        )
    ).start()
    yield srv
    srv.stop()
