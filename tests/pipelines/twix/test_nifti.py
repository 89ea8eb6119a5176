"""NIfTI files from MRD images: the affine puts every voxel at the patient position the MRD geometry
gives it (checked by hand-computed corners), slices and echoes stack, and odd series fall back."""

import ismrmrd
import nibabel as nib
import numpy as np
import pytest

from mrzero.pipelines.nifti import lps_affine, ras_affine, write_nifti

NX, NY = 4, 6
FOV = (8.0, 18.0, 3.0)  # mm: pixel 2 x 3 mm, 3 mm thick


def _image(position, read=(1, 0, 0), phase=(0, 1, 0), normal=(0, 0, 1), contrast=0, value=0.0, series=1):
    data = np.arange(NX * NY, dtype=np.float32).reshape(1, 1, NY, NX) + value
    image = ismrmrd.Image.from_array(data, image_series_index=series, field_of_view=FOV)
    image.position[:], image.read_dir[:] = position, read
    image.phase_dir[:], image.slice_dir[:] = phase, normal
    image.contrast = contrast
    return image


def _lps(affine_ras: np.ndarray, i: int, j: int, k: int = 0) -> np.ndarray:
    return (affine_ras @ [i, j, k, 1])[:3] * [-1, -1, 1]


def test_axis_aligned_corners_by_hand():
    image = _image((10, 20, 30))
    affine = ras_affine(image)
    # pixel i of n sits (i - n // 2) pixels from the centre: x spacing 2 mm, y spacing 3 mm
    np.testing.assert_allclose(_lps(affine, 0, 0), (10 - 2 * 2, 20 - 3 * 3, 30))
    np.testing.assert_allclose(_lps(affine, 3, 5), (10 + 2 * 1, 20 + 3 * 2, 30))
    np.testing.assert_allclose(affine[:3, :3], np.diag([-2.0, -3.0, 3.0]))  # LPS -> RAS flips x and y


def test_oblique_geometry_by_hand():
    read, phase = np.array([0, 0.6, 0.8]), np.array([0, 0.8, -0.6])
    normal = np.cross(phase, read)
    affine = lps_affine(_image((1, 2, 3), read, phase, normal))
    voxel = affine @ [3, 1, 0, 1]
    np.testing.assert_allclose(voxel[:3], np.array([1, 2, 3]) + (3 - 2) * 2 * read + (1 - 3) * 3 * phase)


def test_slices_and_echoes_stack_into_one_4d_volume(tmp_path):
    images = [
        _image((0, 0, z), contrast=c, value=100 * k)
        for k, (z, c) in enumerate([(5.0, 1), (0.0, 0), (5.0, 0), (0.0, 1)])
    ]
    (path,) = write_nifti(images, tmp_path, "stack")
    assert path.name == "stack_s001.nii.gz"
    nifti = nib.load(path)
    assert nifti.shape == (NX, NY, 2, 2)
    assert int(nifti.header["qform_code"]) == 1 and int(nifti.header["sform_code"]) == 1
    data = np.asarray(nifti.dataobj)
    by_key = {(float(im.position[2]), im.contrast): im.data[0, 0].T for im in images}
    for k, z in enumerate((0.0, 5.0)):  # sorted along the slice normal
        for c in (0, 1):
            np.testing.assert_array_equal(data[:, :, k, c], by_key[(z, c)])
    # the z spacing comes from the slice positions (5 mm), not from the 3 mm thickness
    np.testing.assert_allclose(_lps(nifti.affine, 2, 3, 1), (0, 0, 5.0))


def test_unevenly_spaced_slices_are_written_one_file_each(tmp_path):
    images = [_image((0, 0, z)) for z in (0.0, 4.0, 10.0)]
    paths = write_nifti(images, tmp_path, "uneven")
    assert [p.name for p in paths] == [f"uneven_s001_{k:03d}.nii.gz" for k in range(3)]
    for path, image in zip(paths, images, strict=True):
        np.testing.assert_allclose(_lps(nib.load(path).affine, 2, 3), image.position[:])


def test_image_without_geometry_gets_the_identity_and_a_warning(tmp_path, caplog):
    image = _image((5, 6, 7), read=(0, 0, 0), phase=(0, 0, 0), normal=(0, 0, 0))
    (path,) = write_nifti([image], tmp_path, "nogeo")
    assert "no patient geometry" in caplog.text
    np.testing.assert_allclose(nib.load(path).affine[:3, :3], np.diag([-2.0, -3.0, 3.0]))
    np.testing.assert_array_equal(np.asarray(nib.load(path).dataobj)[..., 0], image.data[0, 0].T)


def test_integer_maps_keep_slope_intercept_and_units(tmp_path):
    counts = np.arange(NX * NY, dtype=np.uint16).reshape(1, 1, NY, NX) + 2188
    image = _image((0, 0, 0))
    image = ismrmrd.Image(head=image.getHead(), data=counts)
    meta = ismrmrd.Meta()
    meta["Quantity"], meta["Units"], meta["RescaleSlope"], meta["RescaleIntercept"] = (
        "T1",
        "s",
        "0.001",
        "0.5",
    )
    image.attribute_string = meta.serialize()
    (path,) = write_nifti([image], tmp_path, "t1")
    nifti = nib.load(path)
    assert nifti.get_data_dtype() == np.uint16
    assert (nifti.dataobj.slope, nifti.dataobj.inter) == pytest.approx((0.001, 0.5))
    np.testing.assert_allclose(nifti.get_fdata()[..., 0], counts[0, 0].T * 0.001 + 0.5, rtol=1e-6)
    assert nifti.header["descrip"].item().decode() == "T1 [s]"
