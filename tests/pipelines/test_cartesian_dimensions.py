"""Multi-slice 2D in any slice order, 3D, averages, repetitions, contrasts and sets through the
``cartesian`` chain: each image with its own geometry, one series per contrast, averages
combined, images numbered as scanners number them."""

import ismrmrd
import numpy as np
import pytest
from cartesian_scans import header_xml, image_data, line, nrmse, truth
from coil_phantoms import multicoil_kspace

from mrzero.pipelines.base import Context, PipelineError
from mrzero.pipelines.cartesian import cartesian
from mrzero.pipelines.mrd_header import parse_header

LAST = ismrmrd.ACQ_LAST_IN_SLICE


def _run(xml, lines, **parameters):
    ctx = Context(
        header=parse_header(xml),
        parameters={"output": "float", "prewhiten": False, **parameters},
        pipeline_name="cartesian",
    )
    return list(cartesian(iter(lines), ctx))


def test_multislice_in_shuffled_order_gives_each_slice_its_geometry_and_number():
    order = [3, 0, 4, 2, 1]  # interleaved acquisition order, slice counters by position
    kspaces = {s: multicoil_kspace(4, (1, 32, 32), seed=s)[0] * (1 + s) for s in order}
    xml = header_xml(32, 32, coils=4, counters={"slice": 5, "repetition": 2})
    lines = [
        line(
            kspaces[s],
            0,
            ky,
            slice=s,
            repetition=r,
            position=(0.0, 0.0, 4.0 * s - 8.0),
            flags=[LAST] if ky == 31 else [],
        )
        for r in (0, 1)
        for ky in range(32)
        for s in order
    ]
    images = _run(xml, lines)
    # emitted as each slice completes (acquisition order), numbered by slice then repetition
    assert [(im.slice, im.repetition) for im in images] == [(s, r) for r in (0, 1) for s in order]
    assert [im.image_index for im in images] == [1 + s + 5 * r for r in (0, 1) for s in order]
    assert {im.image_series_index for im in images} == {1}
    for im in images:
        assert tuple(im.position) == (0.0, 0.0, 4.0 * im.slice - 8.0)
        assert tuple(im.slice_dir) == (0.0, 0.0, 1.0)
        assert nrmse(image_data(im)[0], truth(kspaces[im.slice])[0]) < 1e-5


def test_one_series_per_contrast():
    echoes = [multicoil_kspace(4, (1, 32, 32), seed=e)[0] * np.exp(-e / 2) for e in range(3)]
    xml = header_xml(32, 32, coils=4, counters={"contrast": 3, "slice": 2})
    lines = [
        line(echoes[e], 0, ky, contrast=e, slice=s, flags=[LAST] if (ky, e) == (31, 2) else [])
        for s in (0, 1)
        for ky in range(32)
        for e in range(3)
    ]
    images = _run(xml, lines, series_index=10)
    assert sorted((im.image_series_index, im.contrast, im.image_index, im.slice) for im in images) == [
        (10 + e, e, 1 + s, s) for e in range(3) for s in (0, 1)
    ]
    for im in images:
        assert nrmse(image_data(im)[0], truth(echoes[im.contrast])[0]) < 1e-5
    meta = ismrmrd.Meta.deserialize(images[0].attribute_string)
    assert meta["ImageProcessingHistory"] == ["MRZERO", "CARTESIAN", "RSS"]


def test_averages_are_combined_into_one_image_per_slice():
    # Every average pass ends with ACQ_LAST_IN_SLICE (as scanners set it); the image is emitted
    # after the header's last average, the mean of the passes.
    clean, _, _ = multicoil_kspace(4, (1, 32, 32))
    passes = [multicoil_kspace(4, (1, 32, 32), noise=0.05, seed=10 + a)[0] for a in range(4)]
    xml = header_xml(32, 32, coils=4, counters={"average": 4})
    lines = [
        line(passes[a], 0, ky, average=a, flags=[LAST] if ky == 31 else [])
        for a in range(4)
        for ky in range(32)
    ]
    (image,) = _run(xml, lines)
    (single,) = _run(header_xml(32, 32, coils=4), [line(passes[0], 0, ky) for ky in range(32)])
    mean = sum(passes) / 4
    assert nrmse(image_data(image)[0], truth(mean)[0]) < 1e-5
    assert nrmse(image_data(image)[0], truth(clean)[0]) < 0.6 * nrmse(image_data(single)[0], truth(clean)[0])


def test_sets_and_phases_are_numbered_within_the_series():
    kspace, _, _ = multicoil_kspace(4, (1, 16, 16))
    xml = header_xml(16, 16, coils=4, counters={"set": 2, "phase": 3})
    lines = [
        line(kspace * (1 + t + p), 0, ky, set=t, phase=p)
        for t in (0, 1)
        for p in range(3)
        for ky in range(16)
    ]
    images = _run(xml, lines, trigger="none")
    assert sorted((im.set, im.phase, im.image_index) for im in images) == [
        (t, p, 1 + p + 3 * t) for t in (0, 1) for p in range(3)
    ]


def test_3d_volume_is_one_image_with_the_slab_geometry():
    kspace, _, _ = multicoil_kspace(4, (8, 16, 16))
    xml = header_xml(16, 16, 8, coils=4)
    # partition-wise ACQ_LAST_IN_SLICE (as some converters set it) does not split a 3D volume
    lines = [
        line(kspace, kz, ky, position=(1.0, 2.0, 3.0), flags=[LAST] if ky == 15 else [])
        for kz in range(8)
        for ky in range(16)
    ]
    (image,) = _run(xml, lines)
    assert image.data.shape == (1, 8, 16, 16) and tuple(image.position) == (1.0, 2.0, 3.0)
    assert nrmse(image_data(image), truth(kspace)) < 1e-5


def test_counters_outside_the_header_limits_are_numbered_in_arrival_order():
    kspace, _, _ = multicoil_kspace(2, (1, 8, 8))
    lines = [
        line(kspace, 0, ky, slice=s, flags=[LAST] if ky == 7 else []) for s in (0, 1, 2) for ky in range(8)
    ]
    images = _run(header_xml(8, 8, coils=2), lines)  # the header has no slice limits
    assert [im.image_index for im in images] == [1, 2, 3]
    with pytest.raises(PipelineError, match="already emitted"):
        _run(header_xml(8, 8, coils=2), [*lines[:8], line(kspace, 0, 3, slice=0)])
