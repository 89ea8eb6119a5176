"""PNG figures: a title naming pipeline, series and slice; maps in colour with their units on a colour bar
and the background masked; pixels drawn as squares; names shared with the DICOM files."""

import ismrmrd
import matplotlib.image
import numpy as np

from mrzero.pipelines.image_files import preview_figure, write_pngs


def image(rows: int, cols: int, **meta: str) -> ismrmrd.Image:
    data = np.arange(rows * cols, dtype=np.float32).reshape(1, 1, rows, cols)
    result = ismrmrd.Image.from_array(data, image_series_index=3, image_index=2)
    result.slice = 1
    values = ismrmrd.Meta()
    for key, value in meta.items():
        values[key] = value
    values["ImageProcessingHistory"] = ["MRZERO", "ADJOINT"]
    result.attribute_string = values.serialize()
    return result


def test_images_carry_pipeline_series_and_slice_in_the_title(tmp_path):
    figure = preview_figure(image(16, 8))
    (ax,) = figure.axes  # no colour bar for an image
    assert ax.get_title() == "adjoint\nseries 3, slice 1, image 2"
    (png,) = write_pngs([image(16, 8)], tmp_path, "scan")
    assert png.name == "scan_s003_000.png"
    picture = matplotlib.image.imread(png)
    assert picture.shape[0] >= 256  # a 16-row image drawn large, pixels as squares


def test_maps_have_a_colour_bar_with_units_and_a_masked_background():
    t1 = image(8, 8, DataRole="Quantitative", Quantity="T1", Units="s", RescaleSlope="0.5")
    figure = preview_figure(t1)
    ax, bar = figure.axes
    assert bar.get_ylabel() == "T1 [s]"
    shown = ax.get_images()[0].get_array()
    assert shown.mask[0, 0] and not shown.mask[0, 1]  # the zero pixel is background
    assert shown[0, 1] == 0.5  # values, not counts: 1 count x 0.5 s
