"""Small MRD headers, acquisitions and contexts built in memory for the Cartesian pipeline tests."""

from __future__ import annotations

import ismrmrd
import numpy as np

from mrzero.pipelines.base import Context
from mrzero.pipelines.mrd_header import parse_header


def header(**kwargs) -> ismrmrd.xsd.ismrmrdHeader:
    """A one-encoding Cartesian header, parsed (arguments of ``header_xml``)."""
    return parse_header(header_xml(**kwargs))


def header_xml(
    enc=(16, 8, 1),
    rec=(8, 8, 1),
    enc_fov_mm=(600.0, 300.0, 5.0),
    rec_fov_mm=(300.0, 300.0, 5.0),
    center_e1: int | None = None,
    bandwidth: float | None = None,
) -> str:
    """The XML of a one-encoding Cartesian header (matrices as x, y, z)."""

    def xyz(tag, v):
        return f"<{tag}><x>{v[0]}</x><y>{v[1]}</y><z>{v[2]}</z></{tag}>"

    limits = "<encodingLimits></encodingLimits>"
    if center_e1 is not None:
        limits = (
            f"<encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>{enc[1] - 1}"
            f"</maximum><center>{center_e1}</center></kspace_encoding_step_1></encodingLimits>"
        )
    system = (
        f"<acquisitionSystemInformation><relativeReceiverNoiseBandwidth>{bandwidth}"
        f"</relativeReceiverNoiseBandwidth></acquisitionSystemInformation>"
        if bandwidth
        else ""
    )
    return (
        f'<?xml version="1.0"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">{system}'
        f"<experimentalConditions><H1resonanceFrequency_Hz>63500000</H1resonanceFrequency_Hz>"
        f"</experimentalConditions><encoding>"
        f"<encodedSpace>{xyz('matrixSize', enc)}{xyz('fieldOfView_mm', enc_fov_mm)}</encodedSpace>"
        f"<reconSpace>{xyz('matrixSize', rec)}{xyz('fieldOfView_mm', rec_fov_mm)}</reconSpace>"
        f"{limits}<trajectory>cartesian</trajectory></encoding></ismrmrdHeader>"
    )


def acquisition(
    data: np.ndarray,
    e1: int = 0,
    e2: int = 0,
    flags=(),
    center: int | None = None,
    dwell_us: float = 5.0,
    **fields,
) -> ismrmrd.Acquisition:
    """An acquisition of ``data`` ``[coil, samples]``; ``fields`` set counters (``slice=1``) or
    header fields (``position=(...)``)."""
    data = np.asarray(data, dtype=np.complex64)
    acq = ismrmrd.Acquisition.from_array(
        data, center_sample=data.shape[1] // 2 if center is None else center, sample_time_us=dwell_us
    )
    acq.idx.kspace_encode_step_1, acq.idx.kspace_encode_step_2 = e1, e2
    for name, value in fields.items():
        if hasattr(acq.idx, name):
            setattr(acq.idx, name, value)
        else:
            setattr(acq, name, value)
    for flag in flags:
        acq.set_flag(flag)
    return acq


def context(hdr: ismrmrd.xsd.ismrmrdHeader | None = None, **parameters) -> Context:
    return Context(
        header=hdr if hdr is not None else header(), parameters=parameters, pipeline_name="cartesian"
    )


def centered_dft(n: int) -> np.ndarray:
    """The orthonormal encoding matrix of ``core/units.py`` written out:
    ``E[k, x] = exp(-2 pi i k x) / sqrt(n)`` with k index ``i - n//2`` and x ``(j - n//2)/n``."""
    k = np.arange(n) - n // 2
    x = (np.arange(n) - n // 2) / n
    return np.exp(-2j * np.pi * np.outer(k, x)) / np.sqrt(n)
