"""The server's ``--dicom-dir``: every image a scan returns, also written as DICOM (``pipelines/dicom.py``).

The server calls :func:`dicom_folder` when a scan's pipeline starts and ``add`` for each image it
sends back; pydicom is imported only where a site asked for DICOM.
"""

from __future__ import annotations

import datetime
import logging
from pathlib import Path

import ismrmrd

from mrzero.pipelines.image_geometry import warn_without_geometry
from mrzero.pipelines.mrd_header import HeaderError, parse_header

log = logging.getLogger(__name__)


def dicom_folder(root: Path | None, header_xml: str | None, pipeline: str, scan: str) -> DicomFolder | None:
    """The DICOM writer of one scan under ``root``, None when the server writes no DICOM."""
    if root is None:
        return None
    try:
        header = parse_header(header_xml) if header_xml else None
    except HeaderError as exc:
        log.warning("DICOM folder: the scan's header does not parse (%s); patient and study left empty", exc)
        header = None
    return DicomFolder(root, header, pipeline, scan)


class DicomFolder:
    """The server's ``--dicom-dir``: every image a scan returns, written as it leaves, into
    ``ROOT/<date>-<time>-<scan>/`` (one folder per connection). A failure to write is logged and
    never stops the scan: the images still reach the scanner."""

    def __init__(
        self, root: str | Path, header: ismrmrd.xsd.ismrmrdHeader | None, pipeline: str, scan: str
    ) -> None:
        from mrzero.pipelines.dicom import DicomSeriesWriter

        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.directory = Path(root) / f"{stamp}-{scan}"
        self.stem = pipeline or "mrzero"
        self.writer = DicomSeriesWriter(header, pipeline)
        self.count = 0

    def add(self, image: ismrmrd.Image) -> None:
        """Write one returned image."""
        try:
            warn_without_geometry([image], f"DICOM {self.directory.name}")
            self.writer.write_image(image, self.count, self.directory, self.stem)
        except (OSError, ValueError) as exc:
            log.error("DICOM folder %s: image %d not written: %s", self.directory, self.count, exc)
        self.count += 1
