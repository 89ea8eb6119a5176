"""Synthetic Siemens twix files written with twixtools' own writer, for the converter tests.

``synthetic_scan`` describes a multi-RAID file: a noise-adjust measurement, then a 2D GRE image
measurement with two slices, two echoes, R=2 undersampling with integrated GRAPPA reference
lines, and a phase-correction readout per slice. Noise and image readouts carry complex
Gaussian noise with a known channel covariance. Every readout's counters and Siemens flags are
returned alongside, so that the tests can check the MRD acquisitions against them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import twixtools
from scipy.spatial.transform import Rotation
from twixtools import mdh_def, twixprot
from twixtools.mdb import Mdb_local

CHANNELS = 4
BASE = 32  # image matrix; readouts are sampled with 2x oversampling
LINES = 32
ACS = range(12, 20)  # GRAPPA reference lines (integrated: the even ones are imaging lines too)
SLICE_POSITIONS = ((10.0, -20.0, 30.0), (10.0, -20.0, 36.0))  # 6 mm apart along z (sag, cor, tra)
FOV_MM = (220.0, 220.0, 5.0)
DWELL_NS = 10000
TE_US = (3000, 7000)
#: ADC channel and element name of each protocol coil entry; the data's channel c is the one
#: with the (c+1)-th smallest ADC channel.
COILS = ((3, "H3"), (1, "H1"), (4, "H4"), (2, "H2"))
#: (read, phase, slice) of the slices: an oblique axial slice, rotated 30 degrees in-plane.
_ANGLE = np.deg2rad(30.0)
READ = np.array([np.cos(_ANGLE), np.sin(_ANGLE), 0.0])
PHASE = np.array([-np.sin(_ANGLE), np.cos(_ANGLE), 0.0])
NORMAL = np.cross(PHASE, READ)  # Siemens: (phase, read, slice) is right-handed


def noise_covariance() -> np.ndarray:
    """The channel noise covariance of every readout (Hermitian, positive definite, correlated)."""
    a = np.array(
        [
            [1.0, 0.3 + 0.2j, 0.0, 0.1j],
            [0.0, 0.8, 0.25 - 0.1j, 0.0],
            [0.0, 0.0, 1.2, 0.4],
            [0.0, 0.0, 0.0, 0.6],
        ],
        dtype=np.complex128,
    )
    return a.conj().T @ a


def quaternion() -> np.ndarray:
    """Siemens' (w, x, y, z) quaternion of the rotation whose columns are (phase, read, slice)."""
    x, y, z, w = Rotation.from_matrix(np.stack([PHASE, READ, NORMAL], axis=1)).as_quat()
    return np.array([w, x, y, z])


def _xprot(params: dict[str, Any]) -> str:
    lines = ["<XProtocol>", "{"]
    for name, value in params.items():
        if isinstance(value, str):
            lines.append(f'<ParamString."{name}">  {{ "{value}"  }}')
        elif isinstance(value, float):
            lines.append(f'<ParamDouble."{name}">  {{ <Precision> 16  {value}  }}')
        else:
            lines.append(f'<ParamLong."{name}">  {{ {value}  }}')
    return "\n".join([*lines, "}", ""])


def _ascconv(params: dict[str, Any]) -> str:
    body = [
        f'{name}\t = \t""{value}""' if isinstance(value, str) else f"{name}\t = \t{value}"
        for name, value in params.items()
    ]
    return "\n".join(
        ["### ASCCONV BEGIN object=MrProtDataImpl@MrProtocolData ###", *body, "### ASCCONV END ###", ""]
    )


def header_bytes(buffers: dict[str, str]) -> np.ndarray:
    """A measurement header: length, buffer count, then (name NUL, length, text) per buffer."""
    body = b"".join(
        name.encode() + b"\x00" + struct.pack("<I", len(text) + 1) + text.encode("latin1") + b"\x00"
        for name, text in buffers.items()
    )
    length = 8 + len(body)
    length += -length % 32
    raw = struct.pack("<II", length, len(buffers)) + body
    return np.frombuffer(raw.ljust(length, b"\x00"), dtype="S1").copy()


def yaps(with_base_resolution: bool = True) -> dict[str, Any]:
    """The image measurement's MeasYaps (ASCCONV) protocol."""
    params: dict[str, Any] = {
        "tProtocolName": "synth_gre",
        "tSequenceFileName": "%SiemensSeq%\\gre",
        "sProtConsistencyInfo.flNominalB0": 2.89,
        "sTXSPEC.asNucleusInfo[0].lFrequency": 123200000,
        "sRXSPEC.alDwellTime[0]": DWELL_NS,
        "sKSpace.lPhaseEncodingLines": LINES,
        "sKSpace.ucDimension": 2,
        "sKSpace.ucTrajectory": 1,
        "sPat.lAccelFactPE": 2,
        "sPat.lRefLinesPE": len(ACS),
        "sPat.ucRefScanMode": 2,
        "sPrepPulses.ucInversion": 2,
        "alTI[0]": 500000,
        "alTR[0]": 20000,
        "lContrasts": 2,
        "adFlipAngleDegree[0]": 12.0,
        "sSliceArray.lSize": len(SLICE_POSITIONS),
    }
    if with_base_resolution:
        params["sKSpace.lBaseResolution"] = BASE
    for k, te in enumerate(TE_US):
        params[f"alTE[{k}]"] = te
    for k, pos in enumerate(SLICE_POSITIONS):
        prefix = f"sSliceArray.asSlice[{k}]"
        params.update(
            {
                f"{prefix}.dThickness": FOV_MM[2],
                f"{prefix}.dPhaseFOV": FOV_MM[1],
                f"{prefix}.dReadoutFOV": FOV_MM[0],
            }
        )
        for axis, p, n in zip(("Sag", "Cor", "Tra"), pos, NORMAL, strict=True):
            params.update({f"{prefix}.sPosition.d{axis}": p, f"{prefix}.sNormal.d{axis}": n})
    for k, (adc, name) in enumerate(COILS):
        prefix = f"sCoilSelectMeas.aRxCoilSelectData[0].asList[{k}]"
        params.update(
            {
                f"{prefix}.lElementSelected": 1,
                f"{prefix}.lADCChannelConnected": adc,
                f"{prefix}.sCoilElementID.tElement": name,
            }
        )
    return params


def parsed_yaps() -> dict[str, Any]:
    """``yaps()`` as twixtools parses it from a file (nested dicts and lists)."""
    return twixprot.parse_buffer(_ascconv(yaps()))


def buffers(protocol: dict[str, Any]) -> dict[str, str]:
    """Config/Dicom/Meas/MeasYaps buffers of a measurement with ASCCONV ``protocol``."""
    return {
        "Config": _xprot(
            {
                "PatientLOID": "6.0.1234",
                "Study": "6.0.5678",
                "MeasUID": 42,
                "SequenceDescription": "synth_gre",
                "chronSliceIndices": "0 1",
            }
        ),
        "Dicom": _xprot(
            {
                "Manufacturer": "SIEMENS",
                "ManufacturersModelName": "Synthetic",
                "flMagneticFieldStrength": 2.89,
                "lFrequency": 123200000,
                "DeviceSerialNumber": "777",
                "tScanningSequence": "GR",
                "SoftwareVersions": "syngo MR E11",
            }
        ),
        "Meas": _xprot({"tPatientPosition": "HFS", "flReadoutOSFactor": 2.0}),
        "MeasYaps": _ascconv(protocol),
    }


@dataclass
class Readout:
    """What a test expects of one readout: its counters and Siemens flags."""

    counters: dict[str, int]
    flags: list[str]
    slice_index: int = 0


@dataclass
class SyntheticScan:
    """The readouts written, per measurement, in file order."""

    noise: list[Readout] = field(default_factory=list)
    image: list[Readout] = field(default_factory=list)


def make_mdb(data: np.ndarray, readout: Readout, position: tuple[float, float, float] | None) -> Mdb_local:
    mdb = Mdb_local(data.astype(np.complex64))
    # twixtools' writer would share one channel header between channels: give each its own
    mdb.channel_hdr = [mdh_def.Channel_header(ChannelId=c) for c in range(data.shape[0])]
    mdb.mdh.MeasUID = 42
    mdb.mdh.CenterCol = data.shape[1] // 2
    mdb.mdh.CenterLin = LINES // 2
    for name, value in readout.counters.items():
        setattr(mdb.mdh.Counter, name, value)
    for flag in readout.flags:
        mdb.add_flag(flag)
    if position is not None:
        slice_pos = mdb.mdh.SliceData.SlicePos
        slice_pos.Sag, slice_pos.Cor, slice_pos.Tra = position
        mdb.mdh.SliceData.Quaternion[:] = quaternion()
    return mdb


def _acqend() -> Mdb_local:
    end = Mdb_local()
    end.add_flag("ACQEND")
    return end


def image_readouts() -> list[Readout]:
    """Readouts of the image measurement, in acquisition order."""
    lines = sorted(set(range(0, LINES, 2)) | set(ACS))
    readouts: list[Readout] = []
    for sli in range(len(SLICE_POSITIONS)):
        readouts.append(Readout({"Lin": LINES // 2, "Sli": sli}, ["PHASCOR"], sli))
        first = True
        for lin in lines:
            for eco in range(len(TE_US)):
                flags = ["REFLECT"] if eco == 1 else []
                if lin in ACS:
                    flags += ["PATREFSCAN", "PATREFANDIMASCAN"] if lin % 2 == 0 else ["PATREFSCAN"]
                if first:
                    flags.append("FIRSTSCANINSLICE")
                    first = False
                readouts.append(Readout({"Lin": lin, "Sli": sli, "Eco": eco, "Seg": lin % 2}, flags, sli))
        readouts[-1].flags.append("LASTSCANINSLICE")
    readouts[-1].flags.append("LASTSCANINMEAS")
    return readouts


def write_synthetic(
    path: Path,
    seed: int = 0,
    noise_readouts: int = 32,
    noise_samples: int = 256,
    with_base_resolution: bool = True,
) -> SyntheticScan:
    """Write the two-measurement file at ``path`` (which must not exist); returns what it holds."""
    rng = np.random.default_rng(seed)
    mix = np.linalg.cholesky(noise_covariance())

    def noise(samples: int) -> np.ndarray:
        white = rng.standard_normal((CHANNELS, samples)) + 1j * rng.standard_normal((CHANNELS, samples))
        return mix @ white / np.sqrt(2.0)

    scan = SyntheticScan()
    noise_mdbs = []
    for k in range(noise_readouts):
        readout = Readout({"Lin": k}, ["NOISEADJSCAN"])
        scan.noise.append(readout)
        noise_mdbs.append(make_mdb(noise(noise_samples), readout, None))
    image_mdbs = []
    for readout in image_readouts():
        scan.image.append(readout)
        image_mdbs.append(make_mdb(noise(2 * BASE), readout, SLICE_POSITIONS[readout.slice_index]))
    noise_protocol = {**yaps(), "tProtocolName": "AdjCoilSens"}
    twixtools.write_twix(
        [
            {"hdr_str": header_bytes(buffers(noise_protocol)), "mdb": [*noise_mdbs, _acqend()]},
            {"hdr_str": header_bytes(buffers(yaps(with_base_resolution))), "mdb": [*image_mdbs, _acqend()]},
        ],
        str(path),
    )
    return scan


def write_vb(path: Path, seed: int = 0) -> tuple[list[Readout], list[np.ndarray]]:
    """A VB (single-measurement) file written byte by byte: twixtools' writer cannot write VB.

    Layout: the measurement header at byte 0 (VB has no multi-RAID table; the header must be
    longer than 10000 bytes, which is how twixtools tells VB from VD/VE), then per readout and
    channel a 128-byte VB17 header followed by the samples, and a closing ACQEND header. Four
    noise-adjust readouts come first, then one slice of ``LINES`` lines. Returns the readouts
    and their ``[channel, sample]`` data.
    """
    rng = np.random.default_rng(seed)
    raw = header_bytes(buffers(yaps())).tobytes()
    length = max(len(raw), 16384)
    blocks = [struct.pack("<I", length) + raw[4:].ljust(length - 4, b"\x00")]
    readouts = [Readout({"Lin": k}, ["NOISEADJSCAN"]) for k in range(4)]
    for lin in range(LINES):
        readouts.append(
            Readout(
                {"Lin": lin}, ["FIRSTSCANINSLICE"] * (lin == 0) + ["LASTSCANINSLICE"] * (lin == LINES - 1)
            )
        )
    data = []
    for readout in readouts:
        samples = rng.standard_normal((CHANNELS, 2 * BASE)) + 1j * rng.standard_normal((CHANNELS, 2 * BASE))
        data.append(samples.astype(np.complex64))
        for c in range(CHANNELS):
            mdh = mdh_def.VB17_header(
                UsedChannels=CHANNELS,
                SamplesInScan=2 * BASE,
                ChannelId=c,
                CenterCol=BASE,
                CenterLin=LINES // 2,
            )
            for name, value in readout.counters.items():
                setattr(mdh.Counter, name, value)
            for flag in readout.flags:
                mdh_def.add_flag(mdh, flag)
            if "NOISEADJSCAN" not in readout.flags:
                mdh.SliceData.SlicePos.Tra = SLICE_POSITIONS[0][2]
                mdh.SliceData.Quaternion[:] = quaternion()
            blocks.append(bytes(mdh) + data[-1][c].tobytes())
    end = mdh_def.VB17_header()
    mdh_def.add_flag(end, "ACQEND")
    blocks.append(bytes(end))
    path.write_bytes(b"".join(blocks))
    return readouts, data
