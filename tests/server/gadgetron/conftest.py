"""Fixtures of the Gadgetron external-gadget tests: one external gadget on a free 127.0.0.1
port per module (with the test-only pipelines), and Debian's Shepp-Logan raw data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mrzero.server.gadgetron.listener import ExternalServer
from mrzero.server.limits import MB, Limits, Settings
from mrzero.shepp_logan_demo import generate_shepp_logan

TEST_LIMITS = Limits(
    max_message_bytes=16 * MB,
    pipeline_timeout_s=30.0,
    memory_limit_bytes=1024 * MB,
    max_connections=4,
    idle_timeout_s=30.0,
)


@pytest.fixture(scope="module")
def gadget() -> Iterator[ExternalServer]:
    srv = ExternalServer(
        Settings(
            port=0, limits=TEST_LIMITS, pipeline_threads=1, pipeline_modules=("gadgetron_test_pipelines",)
        )
    ).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def shepp_logan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 x 64, 4 coils, with a noise-adjust scan (Debian's ismrmrd_generate_cartesian_shepp_logan)."""
    return generate_shepp_logan(tmp_path_factory.mktemp("raw") / "shepp_logan.h5", matrix=64, coils=4)
