"""The raw-data journal: what it holds, that it reads with ismrmrd, and that replaying it with
``mrzero send`` gives the same images."""

from __future__ import annotations

import json

import h5py
import ismrmrd
import numpy as np
from scans_for_tests import header_xml, scan

from mrzero.cli import main as mrzero
from mrzero.client import stream
from mrzero.pipelines.image_files import read_images_h5, write_images_h5


def only_journal(server):
    assert server.wait_idle(120)
    files = sorted(server.settings.data_dir.glob("*.h5"))
    assert files, "no journal written"
    return files[-1]


def waveform(stamp: int) -> ismrmrd.Waveform:
    wav = ismrmrd.Waveform.from_array(np.arange(12, dtype=np.uint32).reshape(3, 4) + stamp)
    wav.time_stamp = stamp
    wav.waveform_id = 1
    return wav


def test_journal_replays_to_the_same_images(server, tmp_path):
    acqs, xml = scan(seed=11), header_xml()
    params = json.dumps({"parameters": {"config": "test_rss", "site": "test"}})
    host, port = server.address
    items = acqs[:10] + [waveform(0)] + acqs[10:]
    first = stream(items, xml, host=host, port=port, config="", texts=[params])
    assert first.errors == [] and len(first.images) == 1
    path = only_journal(server)
    with h5py.File(path, "r") as f:
        group = f["dataset"]
        assert group.attrs["config"] == "" and json.loads(group.attrs["texts"]) == [params]
        assert group.attrs["pipeline"] == "test_rss" and group.attrs["ended"] == "close"
        assert group["data"].shape == (32,) and group["waveforms"].shape == (1,)
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=False) as dset:
        assert dset.read_xml_header().decode() == xml
        assert np.array_equal(dset.read_acquisition(31).data, acqs[31].data)
        assert dset.read_acquisition(31).idx.kspace_encode_step_1 == 31
        assert np.array_equal(dset.read_waveform(0).data, waveform(0).data)

    out = tmp_path / "replay.h5"
    assert mrzero(["send", str(path), "--host", host, "--port", str(port), "-o", str(out)]) == 0
    replayed = read_images_h5(out)
    assert len(replayed) == 1
    assert np.array_equal(replayed[0].data, first.images[0].data)


def test_images_sent_to_the_server_are_journaled(server, tmp_path):
    images = []
    for n in range(3):
        image = ismrmrd.Image.from_array((np.arange(64, dtype=np.float32).reshape(8, 8) + n), transpose=False)
        image.image_series_index, image.image_index = 2, n
        image.attribute_string = ismrmrd.Meta({"ImageComments": f"n={n}"}).serialize()
        images.append(image)
    source = write_images_h5(images, tmp_path / "images.h5", header_xml=header_xml())
    host, port = server.address
    assert mrzero(["send", str(source), "--config", "savedataonly", "--port", str(port), "--host", host]) == 0
    with ismrmrd.Dataset(str(only_journal(server)), "dataset", create_if_needed=False) as dset:
        assert dset.number_of_images("images_received") == 3
        back = dset.read_image("images_received", 2)
        assert np.array_equal(back.data, images[2].data)
        assert back.image_index == 2
        assert ismrmrd.Meta.deserialize(back.attribute_string)["ImageComments"] == "n=2"


def test_savedataonly_keeps_every_acquisition_without_a_worker(server, caplog):
    """A journal-only pipeline starts no worker process: the journal is the whole result."""
    acqs, xml = scan(seed=12), header_xml()
    host, port = server.address
    with caplog.at_level("INFO", logger="mrzero.server"):
        result = stream(acqs, xml, host=host, port=port, config="savedataonly")
    assert result.errors == [] and result.images == []
    assert any("pipeline savedataonly: 32 acquisitions" in text for text in result.texts)
    assert "pipeline 'savedataonly' (config 'savedataonly'); journal only, no worker" in caplog.text
    path = only_journal(server)
    with h5py.File(path, "r") as f:
        assert f["dataset"].attrs["pipeline"] == "savedataonly" and f["dataset"].attrs["ended"] == "close"
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=False) as dset:
        assert dset.number_of_acquisitions() == 32
        assert np.array_equal(dset.read_acquisition(17).data, acqs[17].data)
