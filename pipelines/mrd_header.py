"""Reading what a reconstruction needs from an MRD ``ismrmrdHeader``.

``parse_header`` accepts the header text as it arrives from files and clients (trailing NUL
bytes, and Debian's ISMRMRD 1.8 tools' ``<version>8</version>``, which is not an MRD v1 header
version: the element is optional, so it is dropped before the ``ismrmrd`` 1.15 parser sees
it). Elements the MRD v1 schema does not know (vendor or newer-schema additions), which that
parser rejects, are ignored with a warning; XML that is not well formed is an error.
``Geometry`` gathers one encoding's matrices and fields of view in SI units (metres;
the header stores millimetres).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import ismrmrd
from xsdata.exceptions import ParserError
from xsdata.formats.dataclass.parsers import XmlParser
from xsdata.formats.dataclass.parsers.config import ParserConfig

from mrzero.core.ops.prewhiten import DEFAULT_RECEIVER_NOISE_BANDWIDTH

#: ``<version>`` values of MRD v1 headers; anything else (Debian's tools write 8) is dropped.
MRD_V1_HEADER_VERSIONS = ("1", "2")
_VERSION = re.compile(r"\s*<version>\s*(\d+)\s*</version>")
log = logging.getLogger("mrzero.pipelines.mrd_header")


class HeaderError(ValueError):
    """The MRD header lacks or contradicts what the reconstruction needs."""


def fix_header_text(xml: str | bytes) -> str:
    """Header text ready for the ``ismrmrd`` parser: NULs stripped, non-v1 version dropped."""
    text = xml.decode("utf-8", errors="replace") if isinstance(xml, bytes) else xml
    text = text.strip("\x00").strip()
    match = _VERSION.search(text)
    if match and match.group(1) not in MRD_V1_HEADER_VERSIONS:
        text = text[: match.start()] + text[match.end() :]
    return text


def parse_header(xml: str | bytes) -> ismrmrd.xsd.ismrmrdHeader:
    """Parse an MRD header, with the fix-ups of ``fix_header_text``; ``HeaderError`` if malformed."""
    text = fix_header_text(xml)
    if not text:
        raise HeaderError("the MRD header is empty")
    try:
        return ismrmrd.xsd.CreateFromDocument(text)
    except ParserError as err:
        if "Unknown property" not in str(err):
            raise HeaderError(f"malformed MRD header: {err}") from err
        unknown = err
    except Exception as err:  # the parser raises several unrelated types for bad XML
        raise HeaderError(f"malformed MRD header: {err}") from err
    lenient = XmlParser(config=ParserConfig(fail_on_unknown_properties=False))
    try:
        header = lenient.from_string(text, ismrmrd.xsd.ismrmrdHeader)
    except Exception as err:
        raise HeaderError(f"malformed MRD header: {err}") from err
    log.warning("MRD header: ignored elements outside the MRD v1 schema (first: %s)", unknown)
    return header


def receiver_noise_bandwidth(header: ismrmrd.xsd.ismrmrdHeader) -> float:
    """Relative receiver noise bandwidth from the header, Gadgetron's 0.793 when absent."""
    system = header.acquisitionSystemInformation
    value = system.relativeReceiverNoiseBandwidth if system is not None else None
    return float(value) if value else DEFAULT_RECEIVER_NOISE_BANDWIDTH


@dataclass(frozen=True)
class Geometry:
    """One encoding's spaces: matrices as (x, y, z), fields of view in metres, k-space centres."""

    encoded_matrix: tuple[int, int, int]
    encoded_fov_m: tuple[float, float, float]
    recon_matrix: tuple[int, int, int]
    recon_fov_m: tuple[float, float, float]
    #: ``kspace_encode_step_1``/``_2`` value that is the k-space centre.
    center_e1: int
    center_e2: int

    @property
    def readout_without_oversampling(self) -> int:
        """Readout samples once the oversampling (encoded vs recon FOV in x) is removed."""
        ratio = self.recon_fov_m[0] / self.encoded_fov_m[0]
        return max(1, min(self.encoded_matrix[0], round(self.encoded_matrix[0] * ratio)))

    @property
    def has_readout_oversampling(self) -> bool:
        return self.readout_without_oversampling < self.encoded_matrix[0]

    @property
    def kspace_matrix(self) -> tuple[int, int, int]:
        """(x, y, z) of the zero-filled k-space: at least the encoded matrix (x without
        oversampling), enlarged where the recon matrix asks for a finer pixel than encoded."""
        enc = (self.readout_without_oversampling, *self.encoded_matrix[1:])
        fov = (self.recon_fov_m[0], *self.encoded_fov_m[1:])
        sizes = []
        for n_enc, f_enc, n_rec, f_rec in zip(enc, fov, self.recon_matrix, self.recon_fov_m, strict=True):
            finer = round(n_rec * f_enc / f_rec) if f_rec > 0 else n_enc
            sizes.append(max(n_enc, finer))
        return sizes[0], sizes[1], sizes[2]


def _triple(space, what: str, conv=int) -> tuple:
    node = getattr(space, what, None)
    if node is None or any(getattr(node, a, None) is None for a in "xyz"):
        raise HeaderError(f"the header's encoding lacks {what}")
    return conv(node.x), conv(node.y), conv(node.z)


def _center(limit, matrix_size: int) -> int:
    return int(limit.center) if limit is not None and limit.center is not None else matrix_size // 2


def geometry(header: ismrmrd.xsd.ismrmrdHeader, encoding: int = 0) -> Geometry:
    """The ``Geometry`` of encoding number ``encoding`` (an acquisition's ``encoding_space_ref``)."""
    if not header.encoding or encoding >= len(header.encoding):
        raise HeaderError(f"the header has no encoding number {encoding}")
    enc = header.encoding[encoding]
    if enc.encodedSpace is None or enc.reconSpace is None:
        raise HeaderError("the header's encoding lacks encodedSpace or reconSpace")
    e_mat = _triple(enc.encodedSpace, "matrixSize")
    r_mat = _triple(enc.reconSpace, "matrixSize")
    e_fov = tuple(v / 1000.0 for v in _triple(enc.encodedSpace, "fieldOfView_mm", float))
    r_fov = tuple(v / 1000.0 for v in _triple(enc.reconSpace, "fieldOfView_mm", float))
    if min(e_mat) < 1 or min(r_mat) < 1:
        raise HeaderError(f"matrix sizes must be positive: encoded {e_mat}, recon {r_mat}")
    if e_fov[0] <= 0 or r_fov[0] <= 0:
        raise HeaderError(
            f"readout fields of view must be positive: encoded {e_fov[0]} m, recon {r_fov[0]} m"
        )
    limits = enc.encodingLimits
    c1 = _center(limits.kspace_encoding_step_1 if limits else None, e_mat[1])
    c2 = _center(limits.kspace_encoding_step_2 if limits else None, e_mat[2])
    return Geometry(e_mat, e_fov, r_mat, r_fov, c1, c2)
