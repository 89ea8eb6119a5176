"""The EPI readout trapezoid of a twix protocol as an MRD ``trajectoryDescription``.

Siemens EPI sequences state their ramp-sampling (regridding) parameters in the ``Meas`` protocol
buffer (twixtools' ``hdr["Meas"]``), one value per readout type, in microseconds:
``alRegridRampupTime``, ``alRegridFlattopTime``, ``alRegridRampdownTime``,
``alRegridDelaySamplesTime`` (ADC start after the start of the ramp up), ``alRegridDestSamples``
(ADC samples per readout) and ``aflRegridADCDuration``. siemens_to_ismrmrd writes them as a
``ConventionalEPI`` trajectory description (``userParameterLong`` rampUpTime, flatTopTime,
rampDownTime, acqDelayTime, numSamples; ``userParameterDouble`` dwellTime = ADC duration / samples),
which is what ``pipelines/stages/epi.py`` reads; this module writes the same.
"""

from __future__ import annotations

import ismrmrd.xsd as xsd

from mrzero.pipelines.twix.protocol_fields import Protocol

#: MRD parameter name -> Siemens regridding field.
REGRID_FIELDS = {
    "rampUpTime": "alRegridRampupTime",
    "flatTopTime": "alRegridFlattopTime",
    "rampDownTime": "alRegridRampdownTime",
    "acqDelayTime": "alRegridDelaySamplesTime",
    "numSamples": "alRegridDestSamples",
}
ADC_DURATION_FIELD = "aflRegridADCDuration"


def regrid_value(prot: Protocol, name: str) -> float | None:
    """The first value of the regridding field ``name`` (``Meas`` buffer, else ``MeasYaps``)."""
    for buffer in ("Meas", "MeasYaps"):
        value = prot.get(f"{buffer}.{name}")
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def missing_regrid_fields(prot: Protocol) -> list[str]:
    """The regridding fields the protocol lacks (empty: the description can be written)."""
    names = [*REGRID_FIELDS.values(), ADC_DURATION_FIELD]
    return [name for name in names if regrid_value(prot, name) is None]


def epi_trajectory_description(prot: Protocol) -> xsd.trajectoryDescriptionType | None:
    """The ``ConventionalEPI`` description of the protocol's readout, or None if a field is missing."""
    if missing_regrid_fields(prot):
        return None
    values = {name: regrid_value(prot, field) for name, field in REGRID_FIELDS.items()}
    samples = int(values["numSamples"])
    if samples <= 0:
        return None
    dwell_us = regrid_value(prot, ADC_DURATION_FIELD) / samples
    return xsd.trajectoryDescriptionType(
        identifier="ConventionalEPI",
        userParameterLong=[
            xsd.userParameterLongType(name=name, value=int(round(value))) for name, value in values.items()
        ],
        userParameterDouble=[xsd.userParameterDoubleType(name="dwellTime", value=dwell_us)],
    )
