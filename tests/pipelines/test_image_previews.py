"""PNG previews: small matrices are enlarged by whole pixels, large ones are written as they are."""

import ismrmrd
import matplotlib.image
import numpy as np

from mrzero.pipelines.image_files import write_pngs


def image(rows: int, cols: int) -> ismrmrd.Image:
    data = np.arange(rows * cols, dtype=np.float32).reshape(1, 1, rows, cols)
    return ismrmrd.Image.from_array(data)


def test_small_images_are_enlarged_without_interpolation(tmp_path):
    (png,) = write_pngs([image(16, 8)], tmp_path)
    grey = matplotlib.image.imread(png)[..., 0]
    assert grey.shape == (128, 64)  # 8x: each pixel an 8x8 block
    block = grey[8:16, 16:24]
    assert np.all(block == block[0, 0])
    assert grey[0, 0] < grey[-1, -1]  # orientation kept: first pixel top-left


def test_large_images_keep_their_size(tmp_path):
    (png,) = write_pngs([image(160, 160)], tmp_path)
    assert matplotlib.image.imread(png).shape[:2] == (160, 160)
