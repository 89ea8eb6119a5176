"""MRD images as DICOM files (MR Image Storage), one file per 2D plane, for PACS and viewers.

Each plane of each image (channel, slice) becomes one MR Image Storage object. The patient
geometry comes from the MRD image header (MRD and DICOM share LPS patient coordinates):
``ImageOrientationPatient`` is the read then the phase direction, ``ImagePositionPatient`` the
centre of the first (top-left) pixel, where pixel ``i`` of ``n`` sits ``(i - n // 2)`` pixels from
the image's ``position`` (``image_geometry``); ``PixelSpacing`` (row spacing, then column spacing)
and ``SliceThickness`` are the field of view over the matrix. ``SeriesNumber`` is the MRD
``image_series_index``; ``SeriesDescription`` the protocol name and the image's
``SequenceDescriptionAdditional``; the window comes from ``WindowCenter``/``WindowWidth``.

Pixels are unsigned 16-bit integers: integer MRD images keep theirs, real (float) images are
quantised with a step of a power of ten (at most 65535 steps over the data's range), complex
images leave as their magnitude. A ``RealWorldValueMappingSequence`` (``value = pixel * slope +
intercept``, with UCUM units) carries the values of quantitative maps (``DataRole``
``Quantitative``, ``RescaleSlope``/``RescaleIntercept``/``Units`` meta, e.g. T1 in s, R2* in 1/s)
and of every quantised image. Images without patient geometry get the identity orientation, with
a warning.
"""

from __future__ import annotations

import datetime
import logging
import math
from collections.abc import Iterable
from pathlib import Path

import ismrmrd
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, MRImageStorage, generate_uid

from mrzero.pipelines.image_files import plane_name
from mrzero.pipelines.image_geometry import image_axes, vector, voxel_spacing, warn_without_geometry
from mrzero.pipelines.images import meta_text, read_meta, rescale

log = logging.getLogger(__name__)

#: Largest stored pixel value.
_UINT16_MAX = 65535
#: MRD/FIRE units -> (UCUM code, meaning) for the real-world value mapping.
UCUM_UNITS = {
    "s": ("s", "second"),
    "ms": ("ms", "millisecond"),
    "1/s": ("/s", "per second"),
    "hz": ("Hz", "hertz"),
    "mm": ("mm", "millimeter"),
    "mm2/s": ("mm2/s", "square millimeter per second"),
    "a.u.": ("1", "no units"),
    "": ("1", "no units"),
}
#: DICOM ``ImageType`` value 3 (MR Image module defined terms) for quantities that have one.
_MAP_TYPES = {"T1": "T1 MAP", "T2": "T2 MAP", "PD": "DENSITY MAP", "S0": "DENSITY MAP"}


def ucum(units: str) -> tuple[str, str]:
    """(UCUM code, meaning) for an MRD ``Units`` text; unknown units keep their text as meaning."""
    key = units.strip().lower()
    for known, code in UCUM_UNITS.items():
        if key == known or (known and key.startswith(known + " ")):
            return code
    log.warning("units %r have no UCUM code here; written as 'no units'", units)
    return "1", f"no units ({units})"[:64]


def _step(low: float, high: float) -> float:
    """The smallest power of ten that spans ``[low, high]`` in at most 65535 steps."""
    span = high - low
    if span <= 0:
        return 1.0
    step = 10.0 ** math.ceil(math.log10(span / _UINT16_MAX))
    return step * 10 if span / step > _UINT16_MAX else step


def stored_pixels(image: ismrmrd.Image) -> tuple[np.ndarray, float, float]:
    """(uint16 pixels ``[channel, z, y, x]``, slope, intercept) with ``value = pixel * slope + intercept``."""
    data = np.abs(image.data) if np.iscomplexobj(image.data) else image.data
    slope, intercept = rescale(image)
    if (
        np.issubdtype(data.dtype, np.integer)
        and data.min(initial=0) >= 0
        and data.max(initial=0) <= _UINT16_MAX
    ):
        return data.astype(np.uint16), slope, intercept
    values = data.astype(np.float64) * slope + intercept
    low, high = min(0.0, float(values.min(initial=0.0))), float(values.max(initial=0.0))
    step = _step(low, high)
    offset = math.floor(low / step) * step
    pixels = np.clip(np.rint((values - offset) / step), 0, _UINT16_MAX).astype(np.uint16)
    return pixels, step, offset


def _text(value: object, limit: int = 64) -> str:
    return str(value)[:limit] if value is not None else ""


def _header_fields(header: ismrmrd.xsd.ismrmrdHeader | None) -> dict[str, object]:
    """The patient, study, equipment and sequence fields the MRD header knows."""
    fields: dict[str, object] = {}
    if header is None:
        return fields
    subject, study, measurement = (
        header.subjectInformation,
        header.studyInformation,
        header.measurementInformation,
    )
    system, sequence = header.acquisitionSystemInformation, header.sequenceParameters
    if subject is not None:
        fields["PatientName"] = _text(subject.patientName)
        fields["PatientID"] = _text(subject.patientID)
        fields["PatientSex"] = _text(getattr(subject.patientGender, "value", subject.patientGender) or "")
    if study is not None:
        fields["StudyInstanceUID"] = _text(study.studyInstanceUID)
        fields["StudyDate"] = str(study.studyDate or "").replace("-", "")
        fields["StudyID"] = _text(study.studyID, 16)
        fields["StudyDescription"] = _text(study.studyDescription)
    if measurement is not None:
        fields["FrameOfReferenceUID"] = _text(measurement.frameOfReferenceUID)
        fields["ProtocolName"] = _text(measurement.protocolName)
        fields["PatientPosition"] = str(getattr(measurement.patientPosition, "value", "") or "")
        fields["measurementID"] = _text(measurement.measurementID)
    if system is not None:
        fields["Manufacturer"] = _text(system.systemVendor)
        fields["ManufacturerModelName"] = _text(system.systemModel)
        fields["InstitutionName"] = _text(system.institutionName)
        fields["MagneticFieldStrength"] = system.systemFieldStrength_T
    if sequence is not None:
        fields["RepetitionTime"] = sequence.TR[0] if sequence.TR else None
        fields["EchoTimes"] = list(sequence.TE or [])
        fields["InversionTime"] = sequence.TI[0] if sequence.TI else None
        fields["FlipAngle"] = sequence.flipAngle_deg[0] if sequence.flipAngle_deg else None
    return {k: v for k, v in fields.items() if v not in (None, "")}


def _valid_uid(uid: object) -> str | None:
    text = str(uid or "")
    return text if text and len(text) <= 64 and all(part.isdigit() for part in text.split(".")) else None


class DicomSeriesWriter:
    """Writes the images of one scan as DICOM, sharing study, frame of reference and series UIDs."""

    def __init__(self, header: ismrmrd.xsd.ismrmrdHeader | None, pipeline: str = "") -> None:
        self.fields = _header_fields(header)
        scan_key = [self.fields.get("measurementID", ""), self.fields.get("StudyInstanceUID", "")]
        seeded = any(scan_key)  # the same scan gets the same study however often it is written
        self.study_uid = _valid_uid(self.fields.get("StudyInstanceUID")) or (
            generate_uid(entropy_srcs=["study", *scan_key]) if seeded else generate_uid()
        )
        self.frame_uid = _valid_uid(self.fields.get("FrameOfReferenceUID")) or generate_uid(
            entropy_srcs=["frame", self.study_uid]
        )
        self.pipeline = pipeline
        self.series_uids: dict[int, str] = {}
        self.now = datetime.datetime.now()

    def write(self, images: Iterable[ismrmrd.Image], directory: str | Path, stem: str) -> list[Path]:
        """One ``{stem}_s{series:03d}_{n:03d}[_c{c}][_z{z}].dcm`` per plane in ``directory``; the paths."""
        images = list(images)
        warn_without_geometry(images, f"DICOM {stem}")
        return [
            path
            for number, image in enumerate(images)
            for path in self.write_image(image, number, directory, stem)
        ]

    def write_image(self, image: ismrmrd.Image, number: int, directory: str | Path, stem: str) -> list[Path]:
        """The files of one image (``number`` in the scan's order); each appears complete or not at all."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        pixels, slope, intercept = stored_pixels(image)
        written = []
        for c in range(pixels.shape[0]):
            for z in range(pixels.shape[1]):
                dataset = self.dataset(image, pixels[c, z], slope, intercept, z)
                path = directory / f"{plane_name(stem, image, number, c, z)}.dcm"
                partial = path.with_name(f".{path.name}.part")  # a folder watcher never sees half a file
                dataset.save_as(partial, enforce_file_format=True)
                partial.replace(path)
                written.append(path)
        return written

    def dataset(
        self, image: ismrmrd.Image, plane: np.ndarray, slope: float, intercept: float, z: int
    ) -> Dataset:
        """The MR Image Storage dataset of one plane ``[y, x]`` of ``image`` (slice ``z`` of a 3D image)."""
        meta = read_meta(image)
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = generate_uid()
        self._patient_study_series(ds, image, meta)
        self._geometry(ds, image, z)
        self._pixels(ds, plane, image, meta, slope, intercept)
        self._mr(ds, image, meta)
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        return ds

    def _patient_study_series(self, ds: Dataset, image: ismrmrd.Image, meta: ismrmrd.Meta) -> None:
        f, date, time = self.fields, self.now.strftime("%Y%m%d"), self.now.strftime("%H%M%S")
        ds.PatientName = f.get("PatientName", "ANONYMOUS^")
        ds.PatientID = f.get("PatientID", "MRZERO")
        ds.PatientBirthDate = ""
        ds.PatientSex = f.get("PatientSex", "") if f.get("PatientSex") in ("M", "F", "O") else ""
        ds.StudyInstanceUID = self.study_uid
        ds.StudyDate, ds.StudyTime = f.get("StudyDate", date), time
        ds.ReferringPhysicianName = ""
        ds.StudyID = f.get("StudyID", "")
        ds.AccessionNumber = ""
        if f.get("StudyDescription"):
            ds.StudyDescription = f["StudyDescription"]
        series = int(image.image_series_index)
        ds.Modality = "MR"
        ds.Laterality = ""
        ds.SeriesInstanceUID = self.series_uids.setdefault(series, generate_uid())
        ds.SeriesNumber = series
        ds.SeriesDescription = self.series_description(meta, series)
        ds.PatientPosition = f.get("PatientPosition", "")
        ds.FrameOfReferenceUID = self.frame_uid
        ds.PositionReferenceIndicator = ""
        ds.Manufacturer = f.get("Manufacturer", "")
        for key in ("ManufacturerModelName", "InstitutionName", "ProtocolName"):
            if key in f:
                setattr(ds, key, f[key])
        ds.SoftwareVersions = "mrzero-server"
        ds.InstanceNumber = int(image.image_index) or 1
        ds.ContentDate, ds.ContentTime = date, time
        ds.AcquisitionNumber = int(image.repetition) + 1
        comment = meta_text(meta, "ImageComments")
        if comment:
            ds.ImageComments = comment

    def series_description(self, meta: ismrmrd.Meta, series: int) -> str:
        """Protocol name and the image's ``SequenceDescriptionAdditional`` (at most 64 characters)."""
        parts = [self.fields.get("ProtocolName", ""), meta_text(meta, "SequenceDescriptionAdditional")]
        text = "_".join(p for p in parts if p) or f"{self.pipeline or 'mrzero'} series {series}"
        return text[:64]

    @staticmethod
    def _geometry(ds: Dataset, image: ismrmrd.Image, z: int) -> None:
        axes, spacing = image_axes(image), voxel_spacing(image)
        size = [int(n) for n in image.matrix_size]
        offset = np.array([-(size[0] // 2), -(size[1] // 2), z - size[2] // 2], dtype=float) * spacing
        corner = vector(image.position) + axes @ offset
        ds.ImagePositionPatient = [round(float(v), 6) for v in corner]
        ds.ImageOrientationPatient = [round(float(v), 8) for v in (*axes[:, 0], *axes[:, 1])]
        ds.PixelSpacing = [round(float(spacing[1]), 6), round(float(spacing[0]), 6)]
        ds.SliceThickness = round(float(spacing[2]), 6)
        ds.SliceLocation = round(float(corner @ axes[:, 2]), 6)

    @staticmethod
    def _pixels(
        ds: Dataset,
        plane: np.ndarray,
        image: ismrmrd.Image,
        meta: ismrmrd.Meta,
        slope: float,
        intercept: float,
    ) -> None:
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = plane.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.ascontiguousarray(plane, dtype="<u2").tobytes()
        ds.SmallestImagePixelValue, ds.LargestImagePixelValue = int(plane.min()), int(plane.max())
        centre, width = _window(image, meta)
        if width is not None:  # MRD windows are in MRD pixel units; DICOM windows in stored pixels
            mrd_slope, mrd_intercept = rescale(image)
            ds.WindowCenter = round((centre * mrd_slope + mrd_intercept - intercept) / slope, 4)
            ds.WindowWidth = round(max(width * mrd_slope / slope, 1.0), 4)
        quantitative = meta_text(meta, "DataRole") == "Quantitative"
        if quantitative or (slope, intercept) != (1.0, 0.0):
            units = meta_text(meta, "Units", "a.u." if not quantitative else "")
            code, meaning = ucum(units)
            label = meta_text(meta, "Quantity", "value" if not quantitative else "map")
            mapping = Dataset()
            mapping.LUTExplanation = f"{label} [{units or meaning}]"[:64]
            mapping.LUTLabel = label[:16]
            mapping.RealWorldValueFirstValueMapped = 0
            mapping.RealWorldValueLastValueMapped = _UINT16_MAX
            mapping.RealWorldValueSlope = float(slope)
            mapping.RealWorldValueIntercept = float(intercept)
            unit = Dataset()
            unit.CodeValue, unit.CodingSchemeDesignator, unit.CodeMeaning = code, "UCUM", meaning
            mapping.MeasurementUnitsCodeSequence = [unit]
            ds.RealWorldValueMappingSequence = [mapping]

    def _mr(self, ds: Dataset, image: ismrmrd.Image, meta: ismrmrd.Meta) -> None:
        f = self.fields
        quantity = meta_text(meta, "Quantity")
        if meta_text(meta, "DataRole") == "Quantitative":
            ds.ImageType = ["DERIVED", "PRIMARY", _MAP_TYPES.get(quantity, "OTHER")]
        else:
            ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        ds.ScanningSequence = "RM"  # research mode: a learned or Pulseq sequence
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "3D" if int(image.matrix_size[2]) > 1 else "2D"
        ds.RepetitionTime = f.get("RepetitionTime", "")
        echoes = f.get("EchoTimes", [])
        ds.EchoTime = echoes[int(image.contrast)] if int(image.contrast) < len(echoes) else ""
        ds.EchoTrainLength = ""
        if "InversionTime" in f:
            ds.InversionTime = f["InversionTime"]
        if "FlipAngle" in f:
            ds.FlipAngle = f["FlipAngle"]
        if "MagneticFieldStrength" in f:
            ds.MagneticFieldStrength = f["MagneticFieldStrength"]
        ds.ImagedNucleus = "1H"


def _window(image: ismrmrd.Image, meta: ismrmrd.Meta) -> tuple[float, float | None]:
    """(centre, width) of the MRD meta in MRD pixel units; width None when absent."""
    try:
        return float(meta_text(meta, "WindowCenter")), float(meta_text(meta, "WindowWidth"))
    except ValueError:
        return 0.0, None


def write_dicom(
    images: Iterable[ismrmrd.Image],
    directory: str | Path,
    stem: str,
    header: ismrmrd.xsd.ismrmrdHeader | None = None,
    pipeline: str = "",
) -> list[Path]:
    """Write ``images`` (one scan; ``header`` its MRD header, if known) as DICOM files in ``directory``."""
    return DicomSeriesWriter(header, pipeline).write(images, directory, stem)
