"""End to end over a real socket: a digital-twin mGRE scan streamed to the MRD server with the
config name ``roar`` comes back as echo images and S0/R2* maps, equal to the offline pipeline's."""

import ismrmrd
import numpy as np
import pytest

from pipelines.base import Context
from pipelines.registry import get
from pipelines.roar.synthetic import brain_anatomy, make_subject
from server.client import stream
from server.limits import MB, Limits, Settings
from server.listener import Server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    limits = Limits(
        max_message_bytes=16 * MB, pipeline_timeout_s=600.0, idle_timeout_s=600.0, max_connections=2
    )
    srv = Server(
        Settings(port=0, data_dir=tmp_path_factory.mktemp("journal"), limits=limits, pipeline_threads=1)
    ).start()
    yield srv
    srv.stop()


def test_mgre_scan_through_the_server_gives_the_offline_maps(server, mgre_scan):
    subject = make_subject(brain_anatomy(64), index=202, seed=5)
    header, acqs = mgre_scan(subject.clean()[:, [3]], n_coils=4, noise_std=0.01, seed=1)
    xml = ismrmrd.xsd.ToXML(header)
    host, port = server.address
    reply = stream(iter(acqs), xml, host=host, port=port, config="roar", timeout_s=600)
    assert reply.errors == [] and reply.closed, reply.texts
    offline = list(get("roar").run(iter(acqs), Context(header=header)))
    assert [im.image_series_index for im in reply.images] == [im.image_series_index for im in offline]
    assert sorted({im.image_series_index for im in reply.images}) == [1, 2, 3]
    for a, b in zip(reply.images, offline, strict=True):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-4, atol=1e-4)
    r2 = next(im for im in reply.images if im.image_series_index == 3)
    assert ismrmrd.Meta.deserialize(r2.attribute_string)["Units"] == "1/s"
    inside = r2.data[0, 0][subject.mask[3].numpy()]
    assert 10.0 < float(np.median(inside)) < 25.0
