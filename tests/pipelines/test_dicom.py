"""DICOM export: read back with pydicom, every pixel's value and patient position match the MRD image;
quantitative maps carry a real-world value mapping with UCUM units; dicom3tools' validator finds no error."""

import shutil
import subprocess

import ismrmrd
import numpy as np
import pydicom
import pytest

from mrzero.pipelines.dicom import DicomSeriesWriter, stored_pixels, ucum, write_dicom
from mrzero.pipelines.mrd_header import parse_header

NX, NY = 6, 4
FOV = (12.0, 16.0, 5.0)  # mm: pixels 2 x 4 mm, 5 mm thick
READ, PHASE = np.array([0.0, 0.6, 0.8]), np.array([0.0, 0.8, -0.6])
HEADER = parse_header(
    """<?xml version="1.0"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
    <subjectInformation><patientName>Doe^Jane</patientName><patientID>P42</patientID></subjectInformation>
    <measurementInformation><measurementID>123_45_6</measurementID><patientPosition>HFS</patientPosition>
    <protocolName>t1_mapping</protocolName></measurementInformation>
    <acquisitionSystemInformation><systemVendor>SIEMENS</systemVendor>
    <systemFieldStrength_T>2.89</systemFieldStrength_T></acquisitionSystemInformation>
    <experimentalConditions><H1resonanceFrequency_Hz>123000000</H1resonanceFrequency_Hz></experimentalConditions>
    <encoding><encodedSpace><matrixSize><x>6</x><y>4</y><z>1</z></matrixSize>
    <fieldOfView_mm><x>12</x><y>16</y><z>5</z></fieldOfView_mm></encodedSpace>
    <reconSpace><matrixSize><x>6</x><y>4</y><z>1</z></matrixSize>
    <fieldOfView_mm><x>12</x><y>16</y><z>5</z></fieldOfView_mm></reconSpace>
    <encodingLimits/><trajectory>cartesian</trajectory></encoding>
    <sequenceParameters><TR>8.5</TR><TE>3.1</TE><flipAngle_deg>12</flipAngle_deg></sequenceParameters>
    </ismrmrdHeader>"""
)


def _image(data: np.ndarray, series: int = 1, **meta: str) -> ismrmrd.Image:
    image = ismrmrd.Image.from_array(data, image_series_index=series, image_index=1, field_of_view=FOV)
    image.position[:] = (10.0, -20.0, 30.0)
    image.read_dir[:], image.phase_dir[:], image.slice_dir[:] = READ, PHASE, np.cross(READ, PHASE)
    values = ismrmrd.Meta()
    for key, value in meta.items():
        values[key] = value
    image.attribute_string = values.serialize()
    return image


def _t1_map() -> tuple[ismrmrd.Image, np.ndarray]:
    """A uint16 T1 map with its slope (s per count), as ``{"output": "uint16"}`` maps leave the server."""
    counts = np.arange(NX * NY, dtype=np.uint16).reshape(1, 1, NY, NX) * 150
    slope = 4.0 / 4095
    image = _image(
        counts,
        series=2,
        DataRole="Quantitative",
        Quantity="T1",
        Units="s",
        RescaleSlope=repr(slope),
        RescaleIntercept="0.0",
        WindowCenter="1500",
        WindowWidth="2000",
        SequenceDescriptionAdditional="T1 map",
    )
    return image, counts * slope


def test_pixels_and_geometry_read_back(tmp_path):
    values = np.linspace(-0.5, 123.4, NX * NY, dtype=np.float32).reshape(1, 1, NY, NX)
    image = _image(values, SequenceDescriptionAdditional="adjoint", WindowCenter="60", WindowWidth="100")
    (path,) = write_dicom([image], tmp_path, "scan", HEADER, "adjoint")
    assert path.name == "scan_s001_000.dcm"
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == pydicom.uid.MRImageStorage
    assert (ds.Rows, ds.Columns) == (NY, NX)
    mapping = ds.RealWorldValueMappingSequence[0]  # a float image is quantised: the mapping restores it
    restored = ds.pixel_array * mapping.RealWorldValueSlope + mapping.RealWorldValueIntercept
    np.testing.assert_allclose(restored, values[0, 0], atol=mapping.RealWorldValueSlope / 2 + 1e-9)
    # pixel (row r, column c) sits (c - nx//2) pixels along read and (r - ny//2) along phase from the centre
    row_dir, col_dir = np.array(ds.ImageOrientationPatient[:3]), np.array(ds.ImageOrientationPatient[3:])
    np.testing.assert_allclose(row_dir, READ)
    np.testing.assert_allclose(col_dir, PHASE)
    assert [float(v) for v in ds.PixelSpacing] == [4.0, 2.0]  # row spacing (phase), column spacing (read)
    assert float(ds.SliceThickness) == 5.0
    for r, c in [(0, 0), (3, 5), (2, 3)]:
        dicom_xyz = (
            np.array(ds.ImagePositionPatient, dtype=float)
            + c * ds.PixelSpacing[1] * row_dir
            + r * ds.PixelSpacing[0] * col_dir
        )
        mrd_xyz = np.array([10.0, -20.0, 30.0]) + (c - NX // 2) * 2.0 * READ + (r - NY // 2) * 4.0 * PHASE
        np.testing.assert_allclose(dicom_xyz, mrd_xyz, atol=1e-5)
    assert ds.SeriesNumber == 1 and ds.SeriesDescription == "t1_mapping_adjoint"
    assert (ds.PatientName, ds.PatientID, ds.PatientPosition) == ("Doe^Jane", "P42", "HFS")
    assert (float(ds.RepetitionTime), float(ds.EchoTime), float(ds.FlipAngle)) == (8.5, 3.1, 12.0)
    # the window (60 +- 50 in values) in stored pixels
    low = (float(ds.WindowCenter) - float(ds.WindowWidth) / 2) * mapping.RealWorldValueSlope
    assert low + mapping.RealWorldValueIntercept == pytest.approx(10.0, abs=1e-3)


def test_quantitative_map_keeps_its_integers_slope_and_units(tmp_path):
    image, seconds = _t1_map()
    (path,) = write_dicom([image], tmp_path, "map", HEADER)
    ds = pydicom.dcmread(path)
    np.testing.assert_array_equal(ds.pixel_array, image.data[0, 0])  # integers untouched
    mapping = ds.RealWorldValueMappingSequence[0]
    np.testing.assert_allclose(ds.pixel_array * mapping.RealWorldValueSlope, seconds[0, 0], rtol=1e-12)
    unit = mapping.MeasurementUnitsCodeSequence[0]
    assert (unit.CodeValue, unit.CodingSchemeDesignator) == ("s", "UCUM")
    assert mapping.LUTLabel == "T1" and list(ds.ImageType) == ["DERIVED", "PRIMARY", "T1 MAP"]
    assert float(ds.WindowCenter) == 1500 and ds.SeriesNumber == 2


def test_units_map_to_ucum():
    assert ucum("1/s") == ("/s", "per second")
    assert ucum("ms") == ("ms", "millisecond")
    assert ucum("a.u. (mean first echo = 1)")[0] == "1"


def test_series_share_study_and_frame_but_not_series_uids(tmp_path):
    writer = DicomSeriesWriter(HEADER)
    image = _image(np.ones((1, 2, NY, NX), dtype=np.float32))  # a 3D image: one file per z
    paths = writer.write([image, _t1_map()[0]], tmp_path, "scan")
    assert [p.name for p in paths] == ["scan_s001_000_z0.dcm", "scan_s001_000_z1.dcm", "scan_s002_001.dcm"]
    first, second, third = (pydicom.dcmread(p) for p in paths)
    assert (
        first.StudyInstanceUID == third.StudyInstanceUID
        and first.FrameOfReferenceUID == third.FrameOfReferenceUID
    )
    assert first.SeriesInstanceUID == second.SeriesInstanceUID != third.SeriesInstanceUID
    step = np.array(second.ImagePositionPatient, dtype=float) - np.array(
        first.ImagePositionPatient, dtype=float
    )
    np.testing.assert_allclose(step, 2.5 * np.cross(READ, PHASE), atol=1e-6)  # 5 mm / 2 slices
    # the same scan written again is the same study
    assert DicomSeriesWriter(HEADER).study_uid == writer.study_uid


def test_complex_images_leave_as_magnitude():
    data = (np.full((1, 1, NY, NX), 3 + 4j)).astype(np.complex64)
    pixels, slope, intercept = stored_pixels(_image(data))
    np.testing.assert_allclose(pixels * slope + intercept, 5.0)


@pytest.mark.skipif(
    shutil.which("dciodvfy") is None, reason="needs dicom3tools (apt-get install dicom3tools)"
)
def test_dciodvfy_finds_no_error(tmp_path):
    image = _image(np.linspace(0, 1, NX * NY, dtype=np.float32).reshape(1, 1, NY, NX))
    for path in write_dicom([image, _t1_map()[0]], tmp_path, "scan", HEADER):
        report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True).stderr
        assert "MRImage" in report
        assert [line for line in report.splitlines() if line.startswith("Error")] == [], report
