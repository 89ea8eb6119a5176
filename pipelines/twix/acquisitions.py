"""Siemens measurement data blocks (twixtools ``Mdb``) as MRD acquisitions.

Counters map one to one (line -> kspace_encode_step_1, partition -> kspace_encode_step_2,
slice, echo -> contrast, repetition, set, average, segment, phase; the free counters
Ida..Ide -> user[0..4]). Siemens evaluation flags map to MRD flags; the first/last flags of
the encode-step and repetition loops, which Siemens does not write, are derived from the
counters of the whole scan (:func:`loop_flags`). Geometry comes from the readout's quaternion,
or from the protocol's slice array when a readout has none (noise readouts).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any

import ismrmrd
import numpy as np

from pipelines.twix.geometry import directions_from_quaternion, directions_from_slice
from pipelines.twix.protocol import Protocol

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

#: MRD idx field -> Siemens counter.
COUNTERS = {
    "kspace_encode_step_1": "Lin", "kspace_encode_step_2": "Par", "average": "Ave", "slice": "Sli",
    "contrast": "Eco", "phase": "Phs", "repetition": "Rep", "set": "Set", "segment": "Seg",
}
_USER_COUNTERS = ("Ida", "Idb", "Idc", "Idd", "Ide")

#: Loops whose first/last readouts get MRD flags: counters that identify one pass of the loop.
_LOOPS: tuple[tuple[tuple[str, ...], int, int], ...] = (
    (("Sli", "Par", "Eco", "Phs", "Rep", "Set", "Ave"),
     ismrmrd.ACQ_FIRST_IN_ENCODE_STEP1, ismrmrd.ACQ_LAST_IN_ENCODE_STEP1),
    (("Sli", "Eco", "Phs", "Rep", "Set", "Ave"),
     ismrmrd.ACQ_FIRST_IN_ENCODE_STEP2, ismrmrd.ACQ_LAST_IN_ENCODE_STEP2),
    (("Rep",), ismrmrd.ACQ_FIRST_IN_REPETITION, ismrmrd.ACQ_LAST_IN_REPETITION),
)


def siemens_flags(mdb: Any) -> list[int]:
    """The MRD flags that the readout's own Siemens flags imply."""
    flags = [mrd for name, mrd in _SIMPLE_FLAGS.items() if mdb.is_flag_set(name)]
    if mdb.is_flag_set("PATREFANDIMASCAN"):
        flags.append(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)
    elif mdb.is_flag_set("PATREFSCAN"):
        flags.append(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)
    if mdb.is_flag_set("REFPHASESTABSCAN"):
        flags.append(ismrmrd.ACQ_IS_PHASE_STABILIZATION_REFERENCE)
    elif mdb.is_flag_set("PHASESTABSCAN"):
        flags.append(ismrmrd.ACQ_IS_PHASE_STABILIZATION)
    return flags


def _first_and_last(keys: Iterable[Hashable]) -> tuple[set[int], set[int]]:
    first: dict[Hashable, int] = {}
    last: dict[Hashable, int] = {}
    for index, key in enumerate(keys):
        first.setdefault(key, index)
        last[key] = index
    return set(first.values()), set(last.values())


def loop_flags(mdbs: list[Any]) -> list[list[int]]:
    """Per readout of ``mdbs`` (in acquisition order): its first/last-in-loop flags.

    Only imaging readouts (twixtools' ``is_image_scan``: not noise, phase correction, feedback,
    phase stabilisation or calibration-only) take part in the loops; the others get none.
    """
    flags: list[list[int]] = [[] for _ in mdbs]
    imaging = [k for k, m in enumerate(mdbs) if m.is_image_scan()]
    for counters, first_flag, last_flag in _LOOPS:
        keys = (tuple(getattr(mdbs[k].mdh.Counter, c) for c in counters) for k in imaging)
        first, last = _first_and_last(keys)
        for position in first:
            flags[imaging[position]].append(first_flag)
        for position in last:
            flags[imaging[position]].append(last_flag)
    return flags


def sample_time_us(prot: Protocol) -> float:
    """ADC dwell time in microseconds (MRD's unit): the protocol's dwell is per image pixel."""
    dwell_ns = prot.number("MeasYaps.sRXSPEC.alDwellTime.0")
    if dwell_ns is None:
        return 0.0
    oversampling = prot.number("Meas.flReadoutOSFactor") or prot.number("Dicom.flReadoutOSFactor") or 2.0
    return dwell_ns / 1000.0 / oversampling


class GeometryLookup:
    """Readout geometry from the quaternion, falling back to the protocol's slice array."""

    def __init__(self, prot: Protocol):
        self.prot = prot

    def __call__(self, mdb: Any) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        slice_data = mdb.mdh.SliceData
        directions = directions_from_quaternion(slice_data.Quaternion)
        if directions is not None:
            pos = slice_data.SlicePos
            return np.array([pos.Sag, pos.Cor, pos.Tra], dtype=float), directions
        index = int(mdb.mdh.Counter.Sli)
        entry = f"MeasYaps.sSliceArray.asSlice.{index}"
        if self.prot.get(entry) is None:
            entry = "MeasYaps.sSliceArray.asSlice.0"
        axes = ("Sag", "Cor", "Tra")
        position = np.array([self.prot.number(f"{entry}.sPosition.d{axis}", 0.0) for axis in axes])
        normal = [self.prot.number(f"{entry}.sNormal.d{axis}", 0.0) for axis in axes]
        if not any(normal):
            normal = [0.0, 0.0, 1.0]
        rotation = self.prot.number(f"{entry}.dInPlaneRot", 0.0)
        return position, directions_from_slice(normal, rotation)


def to_acquisition(mdb: Any, data: np.ndarray, flags: Iterable[int], dwell_us: float,
                   geometry: Callable[[Any], tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]]
                   ) -> ismrmrd.Acquisition:
    """One MRD acquisition: ``data`` is the readout's ``[channel, sample]`` complex64 array."""
    mdh = mdb.mdh
    acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(data, dtype=np.complex64))
    for channel in range(acq.active_channels):
        acq.setChannelActive(channel)
    acq.measurement_uid = int(mdh.MeasUID)
    acq.scan_counter = int(mdh.ScanCounter)
    acq.acquisition_time_stamp = int(mdh.TimeStamp)
    acq.physiology_time_stamp[0] = int(mdh.PMUTimeStamp)
    acq.discard_pre = int(mdh.CutOff.Pre)
    acq.discard_post = int(mdh.CutOff.Post)
    acq.center_sample = int(mdh.CenterCol)
    acq.sample_time_us = dwell_us
    counter = mdh.Counter
    for field, name in COUNTERS.items():
        setattr(acq.idx, field, int(getattr(counter, name)))
    for k, name in enumerate(_USER_COUNTERS):
        acq.idx.user[k] = int(getattr(counter, name))
    if hasattr(mdh, "PTABPosX"):  # VD/VE only; Siemens writes micrometres, MRD uses millimetres
        acq.patient_table_position[:] = (mdh.PTABPosX / 1000.0, mdh.PTABPosY / 1000.0, mdh.PTABPosZ / 1000.0)
    position, (read, phase, normal) = geometry(mdb)
    acq.position[:] = position
    acq.read_dir[:] = read
    acq.phase_dir[:] = phase
    acq.slice_dir[:] = normal
    for flag in flags:
        acq.set_flag(flag)
    return acq
