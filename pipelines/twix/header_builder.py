"""The MRD (ISMRMRD v1) header of a twix measurement, built from its Siemens protocol.

Encoded space: the acquired k-space matrix, including readout oversampling (Siemens samples
the readout twice as densely as the image needs) and phase/slice oversampling; its field of
view grows by the same factors. Recon space: the image the scanner would show. Encoding
limits come from the readouts' counters. MRD's own units apply here (mm, ms, degrees, T, Hz),
as the MRD standard defines them.
"""

from __future__ import annotations

import logging
import ntpath
from collections.abc import Sequence
from typing import Any

import ismrmrd

from mrzero.pipelines.twix.acquisitions import COUNTERS, header_table
from mrzero.pipelines.twix.epi_readout import epi_trajectory_description, missing_regrid_fields
from mrzero.pipelines.twix.protocol_fields import Protocol
from mrzero.pipelines.twix.reader import TwixError

xsd = ismrmrd.xsd
log = logging.getLogger(__name__)

#: Siemens' receiver noise bandwidth relative to the sampling bandwidth (the value MRD
#: converters use for Siemens systems).
SIEMENS_RELATIVE_NOISE_BANDWIDTH = 0.793

#: sKSpace.ucTrajectory -> MRD trajectory.
_TRAJECTORIES = {
    1: xsd.trajectoryType.CARTESIAN,
    2: xsd.trajectoryType.RADIAL,
    4: xsd.trajectoryType.SPIRAL,
    8: xsd.trajectoryType.OTHER,
}

#: sPrepPulses.ucInversion values that mean an inversion pulse is played (0x4 is "off").
_INVERSION_ON = (1, 2)

#: MRD counter name -> twixtools counter name, for the encoding limits.
LIMIT_COUNTERS = {name.replace("encode_step", "encoding_step"): key for name, key in COUNTERS.items()}


def _limit(values: Sequence[int], center: int = 0, at_least: int = 0) -> xsd.limitType:
    return xsd.limitType(
        minimum=min(values, default=0), maximum=max(max(values, default=0), at_least), center=center
    )


def _matrix(x: int, y: int, z: int) -> xsd.matrixSizeType:
    return xsd.matrixSizeType(x=int(x), y=int(y), z=int(z))


def _fov(x: float, y: float, z: float) -> xsd.fieldOfViewMm:
    return xsd.fieldOfViewMm(x=float(x), y=float(y), z=float(z))


def coil_names(prot: Protocol, channels: int) -> list[str]:
    """Element names of the receive channels, in data order (sorted by ADC channel)."""
    elements = prot.get("MeasYaps.sCoilSelectMeas.aRxCoilSelectData.0.asList") or []
    connected = [
        (e.get("lADCChannelConnected", k), e.get("sCoilElementID", {}).get("tElement", ""))
        for k, e in enumerate(elements)
        if isinstance(e, dict) and e.get("lElementSelected", 1)
    ]
    names = [str(name).strip('"') for _, name in sorted(connected, key=lambda item: item[0])]
    if len(names) != channels:
        names = [f"channel_{c}" for c in range(channels)]
    return names


def _encoding(prot: Protocol, data_mdbs: list[Any], refscan: bool, embedded: bool) -> xsd.encodingType:
    """Encoded/recon spaces and limits of the image scan."""
    why = "the matrix and field of view"
    base = int(prot.require("MeasYaps.sKSpace.lBaseResolution", why))
    lines = int(prot.require("MeasYaps.sKSpace.lPhaseEncodingLines", why))
    fov_read = prot.require("MeasYaps.sSliceArray.asSlice.0.dReadoutFOV", why)
    fov_phase = prot.require("MeasYaps.sSliceArray.asSlice.0.dPhaseFOV", why)
    thickness = prot.require("MeasYaps.sSliceArray.asSlice.0.dThickness", why)
    readout_os = prot.number("Meas.flReadoutOSFactor") or prot.number("Dicom.flReadoutOSFactor") or 2.0
    phase_os = 1.0 + (prot.number("MeasYaps.sKSpace.dPhaseOversamplingForDialog") or 0.0)
    slice_os = 1.0 + (prot.number("MeasYaps.sKSpace.dSliceOversamplingForDialog") or 0.0)
    is_3d = prot.number("MeasYaps.sKSpace.ucDimension", 2.0) == 4

    trajectory = _TRAJECTORIES.get(
        int(prot.number("MeasYaps.sKSpace.ucTrajectory", 1.0)), xsd.trajectoryType.OTHER
    )
    epi_factor = prot.number("MeasYaps.sFastImaging.lEPIFactor") or 1
    if trajectory == xsd.trajectoryType.CARTESIAN and epi_factor > 1:
        trajectory = xsd.trajectoryType.EPI
    epi_readout = epi_trajectory_description(prot) if trajectory == xsd.trajectoryType.EPI else None
    if trajectory == xsd.trajectoryType.EPI and epi_readout is None:
        log.warning(
            "%s: EPI protocol without the readout's regridding fields (%s); its ramp-sampled "
            "readouts cannot be reconstructed",
            prot.path,
            ", ".join(missing_regrid_fields(prot)),
        )

    table = header_table(data_mdbs)
    samples = int(table["SamplesInScan"].max())
    # EPI: ramp-sampled readouts hold more samples than the grid they are regridded to
    enc_x = round(base * readout_os) if epi_readout is not None else max(round(base * readout_os), samples)
    counters = {name: table["Counter"][key].tolist() for name, key in LIMIT_COUNTERS.items()}
    enc_y = int(prot.number("Meas.iNoOfFourierLines") or round(lines * phase_os))
    enc_y = max(enc_y, max(counters["kspace_encoding_step_1"]) + 1)
    recon_y = round(base * fov_phase / fov_read)
    if is_3d:
        partitions = int(prot.require("MeasYaps.sKSpace.lPartitions", "a 3D matrix"))
        enc_z = int(prot.number("Meas.iNoOfFourierPartitions") or round(partitions * slice_os))
        enc_z = max(enc_z, max(counters["kspace_encoding_step_2"]) + 1)
        recon_z = int(prot.number("MeasYaps.sKSpace.lImagesPerSlab") or partitions)
        enc_fov_z, recon_fov_z = thickness * slice_os, thickness
    else:
        enc_z = recon_z = 1
        enc_fov_z = recon_fov_z = thickness

    centre = data_mdbs[len(data_mdbs) // 2].mdh
    limits = xsd.encodingLimitsType(
        kspace_encoding_step_0=_limit([0], int(centre.CenterCol), enc_x - 1),
        kspace_encoding_step_1=_limit(counters["kspace_encoding_step_1"], int(centre.CenterLin), enc_y - 1),
        kspace_encoding_step_2=_limit(
            counters["kspace_encoding_step_2"], int(centre.CenterPar) if is_3d else 0, enc_z - 1
        ),
        **{name: _limit(values) for name, values in counters.items() if not name.startswith("kspace")},
    )
    encoding = xsd.encodingType(
        encodedSpace=xsd.encodingSpaceType(
            matrixSize=_matrix(enc_x, enc_y, enc_z),
            fieldOfView_mm=_fov(fov_read * enc_x / base, fov_phase * phase_os, enc_fov_z),
        ),
        reconSpace=xsd.encodingSpaceType(
            matrixSize=_matrix(base, recon_y, recon_z), fieldOfView_mm=_fov(fov_read, fov_phase, recon_fov_z)
        ),
        encodingLimits=limits,
        trajectory=trajectory,
        trajectoryDescription=epi_readout,
    )
    accel_pe = int(prot.number("MeasYaps.sPat.lAccelFactPE") or 1)
    accel_3d = int(prot.number("MeasYaps.sPat.lAccelFact3D") or 1)
    if accel_pe > 1 or accel_3d > 1 or refscan:
        mode = (
            xsd.calibrationModeType.EMBEDDED
            if embedded
            else xsd.calibrationModeType.SEPARATE
            if refscan
            else xsd.calibrationModeType.OTHER
        )
        encoding.parallelImaging = xsd.parallelImagingType(
            accelerationFactor=xsd.accelerationFactorType(
                kspace_encoding_step_1=accel_pe, kspace_encoding_step_2=accel_3d
            ),
            calibrationMode=mode,
        )
    train = prot.number("MeasYaps.sFastImaging.lTurboFactor") or epi_factor
    if train and train > 1:
        encoding.echoTrainLength = int(train)
    return encoding


def _sequence_parameters(prot: Protocol) -> xsd.sequenceParametersType:
    contrasts = int(prot.number("MeasYaps.lContrasts") or 1)
    params = xsd.sequenceParametersType()
    tr = prot.get("MeasYaps.alTR") or []
    te = prot.get("MeasYaps.alTE") or []
    ti = prot.get("MeasYaps.alTI") or []
    flip = prot.get("MeasYaps.adFlipAngleDegree") or []
    params.TR = [float(v) / 1000.0 for v in tr[:1] if isinstance(v, (int, float))]  # us -> ms
    params.TE = [float(v) / 1000.0 for v in te[:contrasts] if isinstance(v, (int, float))]
    if prot.number("MeasYaps.sPrepPulses.ucInversion") in _INVERSION_ON:
        params.TI = [float(v) / 1000.0 for v in ti[:1] if isinstance(v, (int, float))]
    params.flipAngle_deg = [float(v) for v in flip[:1] if isinstance(v, (int, float))]
    scanning = prot.first("Meas.tScanningSequence", "Dicom.tScanningSequence")
    if scanning:
        params.sequence_type = str(scanning)
    return params


def _measurement_information(prot: Protocol) -> xsd.measurementInformationType:
    serial = prot.number("Dicom.DeviceSerialNumber")
    patient = str(prot.get("Config.PatientLOID", prot.get("Config.Patient", "")))
    study = str(prot.get("Config.Study", ""))
    meas_uid = prot.number("Config.MeasUID")
    parts = [
        f"{serial:.0f}" if serial is not None else "",
        patient.split(".")[-1],
        study.split(".")[-1],
        f"{meas_uid:.0f}" if meas_uid is not None else "",
    ]
    position = prot.first("Meas.tPatientPosition", "Dicom.tPatientPosition", "Config.PatientPosition")
    if position not in xsd.patientPositionType.__members__:
        raise TwixError(
            prot.path,
            f"protocol lacks a patient position (Meas.tPatientPosition, got "
            f"{position!r}), which the MRD header requires",
        )
    info = xsd.measurementInformationType(
        measurementID="_".join(parts), patientPosition=xsd.patientPositionType[position]
    )
    protocol_name = prot.first("MeasYaps.tProtocolName", "Meas.tProtocolName", "Config.ProtocolName")
    if protocol_name:
        info.protocolName = str(protocol_name).strip('"')
    sequence = prot.first("MeasYaps.tSequenceFileName", "Meas.tSequenceFileName")
    if sequence:
        info.sequenceName = ntpath.basename(str(sequence).strip('"'))
    description = prot.get("Config.SequenceDescription")
    if description:
        info.seriesDescription = str(description)
    frame = prot.get("Meas.FrameOfReference")
    if frame:
        info.frameOfReferenceUID = str(frame)
    return info


def build_header(prot: Protocol, data_mdbs: list[Any]) -> xsd.ismrmrdHeader:
    """The MRD header of the image measurement whose imaging readouts are ``data_mdbs``."""
    if not data_mdbs:
        raise TwixError(prot.path, "the image measurement has no imaging readouts")
    refscan = any(m.is_flag_set("PATREFSCAN") or m.is_flag_set("PATREFANDIMASCAN") for m in data_mdbs)
    embedded = any(m.is_flag_set("PATREFANDIMASCAN") for m in data_mdbs)
    channels = int(data_mdbs[0].mdh.UsedChannels)

    system = xsd.acquisitionSystemInformationType(
        systemVendor=str(prot.first("Dicom.Manufacturer", "Meas.Manufacturer", default="SIEMENS")),
        relativeReceiverNoiseBandwidth=SIEMENS_RELATIVE_NOISE_BANDWIDTH,
        receiverChannels=channels,
        coilLabel=[
            xsd.coilLabelType(coilNumber=c, coilName=name)
            for c, name in enumerate(coil_names(prot, channels))
        ],
    )
    model = prot.first("Dicom.ManufacturersModelName", "Meas.ManufacturersModelName")
    if model:
        system.systemModel = str(model)
    field = prot.first(
        "Dicom.flMagneticFieldStrength",
        "Meas.flMagneticFieldStrength",
        "MeasYaps.sProtConsistencyInfo.flNominalB0",
    )
    if isinstance(field, (int, float)):
        system.systemFieldStrength_T = float(field)
    institution = prot.first("Dicom.InstitutionName", "Meas.InstitutionName")
    if institution:
        system.institutionName = str(institution)
    serial = prot.number("Dicom.DeviceSerialNumber")
    if serial is not None:
        system.deviceSerialNumber = f"{serial:.0f}"

    frequency = prot.first(
        "Dicom.lFrequency", "Meas.lFrequency", "MeasYaps.sTXSPEC.asNucleusInfo.0.lFrequency"
    )
    if not isinstance(frequency, (int, float)):
        raise TwixError(
            prot.path,
            "protocol lacks the Larmor frequency (Dicom.lFrequency or "
            "MeasYaps.sTXSPEC.asNucleusInfo.0.lFrequency), needed for the MRD header",
        )

    return xsd.ismrmrdHeader(
        version=1,
        measurementInformation=_measurement_information(prot),
        acquisitionSystemInformation=system,
        experimentalConditions=xsd.experimentalConditionsType(H1resonanceFrequency_Hz=int(frequency)),
        encoding=[_encoding(prot, data_mdbs, refscan, embedded)],
        sequenceParameters=_sequence_parameters(prot),
    )
