"""MRD image output: geometry from the centre acquisition, FOV, counters, FIRE meta, uint16."""

import ismrmrd
import numpy as np
import pytest
from mrd_builders import acquisition, context, header

from mrzero.pipelines.cartesian import cartesian
from mrzero.pipelines.images import make_image, to_uint16, window


def _centre_line_fields(e1):
    """Geometry that differs per line, so a test can tell which line an image copied."""
    return dict(
        position=(1.0 * e1, 2.0, 3.0),
        read_dir=(0.0, 1.0, 0.0),
        phase_dir=(1.0, 0.0, 0.0),
        slice_dir=(0.0, 0.0, 1.0),
        patient_table_position=(0.0, 0.0, -10.0 * e1),
        acquisition_time_stamp=100 + e1,
    )


def test_to_uint16_rounds_and_clips_and_window_spans_the_values():
    data = np.array([[-3.0, 0.4, 0.6, 70000.0]])
    np.testing.assert_array_equal(to_uint16(data), np.array([[3, 0, 1, 65535]], np.uint16))
    assert window(np.array([[2.0, 10.0]])) == (6.0, 8.0)
    assert window(np.zeros((2, 2))) == (0.0, 1.0)


def test_make_image_copies_geometry_counters_and_writes_fire_meta():
    hdr = header(rec_fov_mm=(300.0, 280.0, 5.0))
    ref = acquisition(
        np.zeros((1, 16)), e1=4, slice=2, contrast=1, repetition=3, set=1, phase=0, **_centre_line_fields(4)
    )
    image = make_image(
        np.arange(12, dtype=np.float32).reshape(3, 4),
        ref,
        hdr,
        series=7,
        index=5,
        role="Quantitative",
        comment="hello",
        history=("A", "B"),
        description="desc",
    )
    head = image.getHead()
    assert tuple(head.matrix_size) == (4, 3, 1)
    assert tuple(head.position) == (4.0, 2.0, 3.0) and tuple(head.read_dir) == (0.0, 1.0, 0.0)
    assert tuple(head.phase_dir) == (1.0, 0.0, 0.0) and tuple(head.slice_dir) == (0.0, 0.0, 1.0)
    assert tuple(head.patient_table_position) == (0.0, 0.0, -40.0)
    assert tuple(head.field_of_view) == pytest.approx((300.0, 280.0, 5.0))
    assert (head.slice, head.contrast, head.repetition, head.set) == (2, 1, 3, 1)
    assert (head.image_series_index, head.image_index, head.acquisition_time_stamp) == (7, 5, 104)
    assert head.image_type == ismrmrd.IMTYPE_MAGNITUDE
    # the meta survives the wire format
    meta = ismrmrd.Meta.deserialize(ismrmrd.Image.from_bytes(image.to_bytes()).attribute_string)
    assert meta["DataRole"] == "Quantitative" and meta["ImageComments"] == "hello"
    assert meta["ImageProcessingHistory"] == ["A", "B"] and meta["SequenceDescriptionAdditional"] == "desc"
    assert (float(meta["WindowCenter"]), float(meta["WindowWidth"])) == (5.5, 11.0)
    assert [float(v) for v in meta["ImageRowDir"]] == [0.0, 1.0, 0.0]
    assert [float(v) for v in meta["ImageColumnDir"]] == [1.0, 0.0, 0.0]
    cplx = make_image(np.ones((1, 2, 2), np.complex64), ref, hdr, series=1, index=1)
    assert cplx.image_type == ismrmrd.IMTYPE_COMPLEX and cplx.data.dtype == np.complex64
    with pytest.raises(ValueError, match="image data must be"):
        make_image(np.zeros(3), ref, hdr, series=1, index=1)


def test_pipeline_images_are_uint16_numbered_and_take_the_centre_line_geometry():
    hdr = header(enc=(8, 8, 1), rec=(8, 8, 1), enc_fov_mm=(300, 300, 5))
    rng = np.random.default_rng(0)
    lines = [
        acquisition(rng.standard_normal((2, 8)) + 1j, e1=e1, slice=s, **_centre_line_fields(e1))
        for s in (0, 1)
        for e1 in range(8)
    ]
    images = list(cartesian(lines, context(hdr, series_index=3)))
    assert [(im.slice, im.image_index, im.image_series_index) for im in images] == [(0, 1, 3), (1, 2, 3)]
    for im in images:
        assert im.data.dtype == np.uint16 and im.data_type == ismrmrd.DATATYPE_USHORT
        assert tuple(im.position) == (4.0, 2.0, 3.0)  # line e1 = 4 = matrix centre
        meta = ismrmrd.Meta.deserialize(im.attribute_string)
        assert float(meta["WindowWidth"]) == float(im.data.max()) - float(im.data.min())
        assert meta["ImageProcessingHistory"] == ["MRZERO", "CARTESIAN", "RSS"]
    # auto scale: the 99th percentile of the first image lands at 2048
    assert np.percentile(images[0].data, 99) == pytest.approx(2048, abs=40)
