"""The external gadget driven as Gadgetron drives it returns exactly the images the MRD server
returns for the same data and pipeline (Debian's C++ Shepp-Logan generator as an independent
source)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from mrzero.client import open_mrd, send_file
from mrzero.server.framing import header_message, serialized
from mrzero.server.gadgetron.peer import config_message, configuration, opening, run_chain
from mrzero.server.limits import Settings
from mrzero.server.listener import Server

pytestmark = [pytest.mark.needs_ismrmrd_tools]


@pytest.fixture(scope="module")
def mrd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(Settings(port=0, data_dir=tmp_path_factory.mktemp("journal"), pipeline_threads=1)).start()
    yield server
    server.stop()


@pytest.mark.parametrize("pipeline", ["cartesian", "adjoint", "iterative_adjoint"])
def test_images_equal_those_of_the_mrd_server(gadget, mrd_server, shepp_logan, pipeline):
    reference = send_file(
        shepp_logan,
        host=mrd_server.address[0],
        port=mrd_server.address[1],
        config=pipeline,
        progress=False,
        timeout_s=120,
    )
    assert reference.closed and not reference.errors and reference.images

    mrd = open_mrd(shepp_logan)
    answer = run_chain(gadget.address, opening({"pipeline": pipeline}, mrd.header_xml), mrd.items)

    assert answer.closed and answer.errors == [] and answer.illegal is None
    assert len(answer.images) == len(reference.images)
    for ours, theirs in zip(answer.images, reference.images, strict=True):
        assert bytes(ours.getHead()) == bytes(theirs.getHead())
        assert ours.data.dtype == theirs.data.dtype and np.array_equal(ours.data, theirs.data)
        assert ours.attribute_string == theirs.attribute_string
    assert answer.images[0].data.max() > 0  # an image, not an empty frame


def test_properties_are_the_pipelines_parameters(gadget, shepp_logan):
    """``output=float`` reaches the Cartesian pipeline as its JSON parameter does."""
    mrd = open_mrd(shepp_logan)
    answer = run_chain(
        gadget.address, opening({"pipeline": "cartesian", "output": "float"}, mrd.header_xml), mrd.items
    )
    assert answer.closed and answer.errors == []
    assert answer.images and all(image.data.dtype == np.float32 for image in answer.images)


def test_json_text_parameters_are_taken_too(gadget, shepp_logan):
    """Gadgetron sends no text messages, but a JSON text (as FIRE's) is read, not a stream end."""
    mrd = open_mrd(shepp_logan)
    start = (
        config_message(configuration({"pipeline": "cartesian"}))
        + serialized('{"parameters": {"output": "float"}}')
        + header_message(mrd.header_xml)
    )
    answer = run_chain(gadget.address, start, mrd.items)
    assert answer.closed and answer.errors == []
    assert answer.images and all(image.data.dtype == np.float32 for image in answer.images)
