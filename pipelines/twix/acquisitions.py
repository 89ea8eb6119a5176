"""Siemens measurement data blocks (twixtools ``Mdb``) as MRD acquisitions.

The Siemens headers of a measurement's readouts are read into one numpy table
(:func:`header_table`) and turned into MRD acquisition headers column by column
(:func:`acquisition_headers`), which is several times faster than field-by-field access
through ctypes for scans with tens of thousands of readouts.

Counters map one to one (line -> kspace_encode_step_1, partition -> kspace_encode_step_2,
slice, echo -> contrast, repetition, set, average, segment, phase; the free counters
Ida..Ide -> user[0..4]). Siemens evaluation flags map to MRD flags; the first/last flags of
the encode-step and repetition loops, which Siemens does not write, are derived from the
counters of the imaging readouts (:func:`loop_flags`). Geometry comes from the readout's
quaternion, or from the protocol's slice array when a readout has none (noise readouts).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import ismrmrd
import numpy as np
from ismrmrd.hdf5 import acquisition_header_dtype
from twixtools import mdh_def

from mrzero.pipelines.twix.geometry import directions_from_quaternions, directions_from_slice
from mrzero.pipelines.twix.protocol_fields import Protocol

#: Siemens flag -> MRD flag, where one implies the other.
_SIMPLE_FLAGS = {
    "NOISEADJSCAN": ismrmrd.ACQ_IS_NOISE_MEASUREMENT,
    "PHASCOR": ismrmrd.ACQ_IS_PHASECORR_DATA,
    "REFLECT": ismrmrd.ACQ_IS_REVERSE,
    "FIRSTSCANINSLICE": ismrmrd.ACQ_FIRST_IN_SLICE,
    "LASTSCANINSLICE": ismrmrd.ACQ_LAST_IN_SLICE,
    "LASTSCANINMEAS": ismrmrd.ACQ_LAST_IN_MEASUREMENT,
    "RTFEEDBACK": ismrmrd.ACQ_IS_RTFEEDBACK_DATA,
    "HPFEEDBACK": ismrmrd.ACQ_IS_HPFEEDBACK_DATA,
}
#: Pairs where the first Siemens flag, if set, wins over the second: (flag, MRD flag) each.
_EXCLUSIVE_FLAGS = (
    (
        ("PATREFANDIMASCAN", ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING),
        ("PATREFSCAN", ismrmrd.ACQ_IS_PARALLEL_CALIBRATION),
    ),
    (
        ("REFPHASESTABSCAN", ismrmrd.ACQ_IS_PHASE_STABILIZATION_REFERENCE),
        ("PHASESTABSCAN", ismrmrd.ACQ_IS_PHASE_STABILIZATION),
    ),
)

#: MRD idx field -> Siemens counter.
COUNTERS = {
    "kspace_encode_step_1": "Lin",
    "kspace_encode_step_2": "Par",
    "average": "Ave",
    "slice": "Sli",
    "contrast": "Eco",
    "phase": "Phs",
    "repetition": "Rep",
    "set": "Set",
    "segment": "Seg",
}
_USER_COUNTERS = ("Ida", "Idb", "Idc", "Idd", "Ide")

#: Loops whose first/last readouts get MRD flags: counters that identify one pass of the loop.
_LOOPS: tuple[tuple[tuple[str, ...], int, int], ...] = (
    (
        ("Sli", "Par", "Eco", "Phs", "Rep", "Set", "Ave"),
        ismrmrd.ACQ_FIRST_IN_ENCODE_STEP1,
        ismrmrd.ACQ_LAST_IN_ENCODE_STEP1,
    ),
    (
        ("Sli", "Eco", "Phs", "Rep", "Set", "Ave"),
        ismrmrd.ACQ_FIRST_IN_ENCODE_STEP2,
        ismrmrd.ACQ_LAST_IN_ENCODE_STEP2,
    ),
    (("Rep",), ismrmrd.ACQ_FIRST_IN_REPETITION, ismrmrd.ACQ_LAST_IN_REPETITION),
)


def mrd_bit(flag: int) -> np.uint64:
    """The bit of MRD flag number ``flag`` (1-based) in ``AcquisitionHeader.flags``."""
    return np.uint64(1) << np.uint64(flag - 1)


def header_table(mdbs: Sequence[Any]) -> np.ndarray:
    """The Siemens headers of ``mdbs`` as one structured array (fields as in twixtools' ``mdh_def``)."""
    if not mdbs:
        return np.empty(0, dtype=np.dtype(mdh_def.Scan_header))
    dtype = np.dtype(type(mdbs[0].mdh))
    return np.frombuffer(b"".join(bytes(m.mdh) for m in mdbs), dtype=dtype)


def _siemens_set(table: np.ndarray, name: str) -> np.ndarray:
    return (table["EvalInfoMask"] >> np.uint64(mdh_def.mask_dict[name])) & np.uint64(1) == 1


def siemens_flags(table: np.ndarray) -> np.ndarray:
    """Per readout: the MRD flag bits that its own Siemens flags imply."""
    bits = np.zeros(len(table), dtype=np.uint64)
    for name, flag in _SIMPLE_FLAGS.items():
        bits[_siemens_set(table, name)] |= mrd_bit(flag)
    for (first, first_flag), (second, second_flag) in _EXCLUSIVE_FLAGS:
        wins = _siemens_set(table, first)
        bits[wins] |= mrd_bit(first_flag)
        bits[~wins & _siemens_set(table, second)] |= mrd_bit(second_flag)
    return bits


def _first_and_last(keys: Iterable[Hashable]) -> tuple[set[int], set[int]]:
    first: dict[Hashable, int] = {}
    last: dict[Hashable, int] = {}
    for index, key in enumerate(keys):
        first.setdefault(key, index)
        last[key] = index
    return set(first.values()), set(last.values())


def loop_flags(table: np.ndarray, imaging: np.ndarray) -> np.ndarray:
    """Per readout (in acquisition order): first/last-in-loop flag bits.

    Only the readouts where ``imaging`` is true (twixtools' ``is_image_scan``: not noise,
    phase correction, feedback, phase stabilisation or calibration-only) take part.
    """
    bits = np.zeros(len(table), dtype=np.uint64)
    rows = np.flatnonzero(imaging)
    counters = table["Counter"][rows]
    for names, first_flag, last_flag in _LOOPS:
        first, last = _first_and_last(zip(*(counters[n].tolist() for n in names), strict=True))
        bits[rows[sorted(first)]] |= mrd_bit(first_flag)
        bits[rows[sorted(last)]] |= mrd_bit(last_flag)
    return bits


def sample_time_us(prot: Protocol) -> float:
    """ADC dwell time in microseconds (MRD's unit): the protocol's dwell is per image pixel."""
    dwell_ns = prot.number("MeasYaps.sRXSPEC.alDwellTime.0")
    if dwell_ns is None:
        return 0.0
    oversampling = prot.number("Meas.flReadoutOSFactor") or prot.number("Dicom.flReadoutOSFactor") or 2.0
    return dwell_ns / 1000.0 / oversampling


def slice_array_geometry(prot: Protocol, index: int) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Position and (read, phase, slice) of slice ``index`` of the protocol's slice array."""
    entry = f"MeasYaps.sSliceArray.asSlice.{index}"
    if prot.get(entry) is None:
        entry = "MeasYaps.sSliceArray.asSlice.0"
    axes = ("Sag", "Cor", "Tra")
    position = np.array([prot.number(f"{entry}.sPosition.d{axis}", 0.0) for axis in axes])
    normal = [prot.number(f"{entry}.sNormal.d{axis}", 0.0) for axis in axes]
    if not any(normal):
        normal = [0.0, 0.0, 1.0]
    return position, directions_from_slice(normal, prot.number(f"{entry}.dInPlaneRot", 0.0))


def acquisition_headers(table: np.ndarray, flags: np.ndarray, dwell_us: float, prot: Protocol) -> np.ndarray:
    """MRD acquisition headers (``ismrmrd.hdf5.acquisition_header_dtype``) for the readouts of ``table``."""
    n = len(table)
    heads = np.zeros(n, dtype=acquisition_header_dtype)
    heads["version"] = 1
    heads["flags"] = flags
    heads["measurement_uid"] = table["MeasUID"]
    heads["scan_counter"] = table["ScanCounter"]
    heads["acquisition_time_stamp"] = table["TimeStamp"]
    heads["physiology_time_stamp"][:, 0] = table["PMUTimeStamp"]
    heads["number_of_samples"] = table["SamplesInScan"]
    heads["available_channels"] = heads["active_channels"] = table["UsedChannels"]
    channels = table["UsedChannels"].astype(np.int64)
    for word in range(heads["channel_mask"].shape[1]):
        in_word = np.clip(channels - 64 * word, 0, 64)
        heads["channel_mask"][:, word] = np.where(
            in_word == 64, np.uint64(2**64 - 1), (np.uint64(1) << in_word.astype(np.uint64)) - np.uint64(1)
        )
    heads["discard_pre"] = table["CutOff"]["Pre"]
    heads["discard_post"] = table["CutOff"]["Post"]
    heads["center_sample"] = table["CenterCol"]
    heads["sample_time_us"] = dwell_us
    counters = table["Counter"]
    for field, name in COUNTERS.items():
        heads["idx"][field] = counters[name]
    for k, name in enumerate(_USER_COUNTERS):
        heads["idx"]["user"][:, k] = counters[name]
    if "PTABPosX" in table.dtype.names:  # VD/VE only; Siemens writes micrometres, MRD uses millimetres
        heads["patient_table_position"] = np.stack([table[f"PTABPos{a}"] for a in "XYZ"], axis=1) / 1000.0

    slice_data = table["SliceData"]
    read, phase, normal, valid = directions_from_quaternions(slice_data["Quaternion"])
    position = np.stack([slice_data["SlicePos"][a] for a in ("Sag", "Cor", "Tra")], axis=1).astype(float)
    for index in np.unique(counters["Sli"][~valid]):
        rows = ~valid & (counters["Sli"] == index)
        position[rows], (read[rows], phase[rows], normal[rows]) = slice_array_geometry(prot, int(index))
    heads["position"], heads["read_dir"] = position, read
    heads["phase_dir"], heads["slice_dir"] = phase, normal
    return heads
