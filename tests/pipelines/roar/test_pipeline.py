"""The inline ``roar`` pipeline on a digital-twin mGRE scan (MRD acquisitions, 4 coils, 2 slices)."""

import ismrmrd
import numpy as np
import pytest
import torch

from mrzero.pipelines.base import Context, PipelineError
from mrzero.pipelines.registry import get
from mrzero.pipelines.roar.synthetic import brain_anatomy, make_subject
from mrzero.pipelines.roar.train import relative_error

SLICES = [2, 5]


@pytest.fixture(scope="module")
def scan(mgre_scan):
    subject = make_subject(brain_anatomy(64), index=101, seed=5)
    truth = {name: getattr(subject, name)[SLICES] for name in ("s0", "r2s", "mask")}
    clean = subject.clean()[:, SLICES]
    header, acqs = mgre_scan(clean, n_coils=4, noise_std=0.01)
    return header, acqs, truth, clean


def _run(header, acqs, **parameters):
    return list(get("roar").run(iter(acqs), Context(header=header, parameters=parameters)))


def test_roar_returns_echo_s0_and_r2star_series_with_units(scan):
    header, acqs, truth, clean = scan
    images = _run(header, acqs)
    series = {}
    for im in images:
        series.setdefault(im.image_series_index, []).append(im)
    assert sorted(series) == [1, 2, 3] and len(series[1]) == 20 and len(series[2]) == len(series[3]) == 2
    r2_images = sorted(series[3], key=lambda im: im.image_index)
    meta = ismrmrd.Meta.deserialize(r2_images[0].attribute_string)
    assert meta["Units"] == "1/s" and meta["RoarMap"] == "r2star" and meta["DataRole"] == "Quantitative"
    assert r2_images[0].data.dtype == np.float32
    assert ismrmrd.Meta.deserialize(series[2][0].attribute_string)["RoarMap"] == "s0"
    # maps land on the right slices and are accurate inside the brain
    r2 = torch.from_numpy(np.stack([im.data[0, 0] for im in r2_images]))
    mask = truth["mask"] & (r2 > 0)
    assert mask.sum() > 0.9 * truth["mask"].sum()
    assert relative_error(r2[None], truth["r2s"][None], mask[None]).item() < 0.2


def test_roar_refuses_other_echo_times(scan):
    header, acqs, _, _ = scan
    changed = ismrmrd.xsd.CreateFromDocument(ismrmrd.xsd.ToXML(header))
    changed.sequenceParameters.TE = [5.0 + 5 * i for i in range(10)]
    with pytest.raises(PipelineError, match="echo times"):
        _run(changed, acqs)


def test_roar_skips_maps_of_incomplete_slices(scan):
    header, acqs, _, _ = scan
    notes = []
    partial = [a for a in acqs if not (a.idx.slice == 1 and a.idx.contrast == 9)]
    images = list(get("roar").run(iter(partial), Context(header=header, notify=notes.append)))
    assert {im.image_series_index for im in images if im.image_series_index > 1} == {2, 3}
    assert sum(im.image_series_index == 3 for im in images) == 1
    assert any("slices [1]" in n for n in notes)


def test_bad_parameters_are_named(scan):
    header, acqs, _, _ = scan
    with pytest.raises(PipelineError, match="mask_threshold"):
        _run(header, acqs[:10], mask_threshold=3)
