"""The scan plan: what the MRD header says a Cartesian reconstruction must do, read once per scan.

``scan_plan(header)`` gathers, per encoding, what Gadgetron's generic Cartesian chains read from
the header: the trajectory (and its description), the encoded and recon spaces (``Geometry``),
the encoding limits with their centres (k-space and counters), the ``parallelImaging`` block
(acceleration in ky and kz, calibration mode, interleaving dimension, multiband) and the echo
train length. ``header_refusals`` lists what the Cartesian pipeline cannot reconstruct correctly
from the header alone (non-Cartesian trajectories, EPI without the EPI stage, simultaneous
multi-slice, acceleration in kz of a 2D encoding); ``flag_refusal`` does the same for one
acquisition's flags. Each refusal is a sentence that says why; the pipeline raises it as a
``PipelineError``, which reaches the client as an error text instead of an image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ismrmrd

from mrzero.pipelines.base import PipelineError
from mrzero.pipelines.mrd_header import Geometry, HeaderError, geometry

xsd = ismrmrd.xsd

#: Counters with encoding limits, besides the k-space encode steps.
LIMIT_COUNTERS = ("average", "slice", "contrast", "phase", "repetition", "set", "segment")
#: Calibration modes of the header's ``parallelImaging`` block.
CALIBRATION_MODES = ("embedded", "interleaved", "separate", "external", "other")

#: MRD v1 acquisition flags by bit number (1-based), as ``ismrmrd`` names them.
KNOWN_FLAGS = {
    getattr(ismrmrd, name): name
    for name in dir(ismrmrd)
    if name.startswith("ACQ_") and isinstance(getattr(ismrmrd, name), int)
}
#: The bits of ``KNOWN_FLAGS``.
KNOWN_MASK = sum(1 << (bit - 1) for bit in KNOWN_FLAGS)
#: Flags saying the samples are stored compressed (ISMRMRD's lossy compression): not samples.
COMPRESSION_FLAGS = (
    ismrmrd.ACQ_COMPRESSION1,
    ismrmrd.ACQ_COMPRESSION2,
    ismrmrd.ACQ_COMPRESSION3,
    ismrmrd.ACQ_COMPRESSION4,
)
#: Flags of EPI data: they need the EPI stage (readout reversal, navigator phase correction).
EPI_FLAGS = (ismrmrd.ACQ_IS_REVERSE, ismrmrd.ACQ_IS_PHASECORR_DATA)


def _text(value) -> str | None:
    if value is None:
        return None
    return str(value.value if hasattr(value, "value") else value).lower()


@dataclass(frozen=True)
class Limit:
    """One encoding limit: ``minimum``, ``maximum`` and ``center`` (MRD's ``limitType``)."""

    minimum: int
    maximum: int
    center: int

    @property
    def size(self) -> int:
        """Number of values the counter takes (``maximum + 1``, counters start at 0)."""
        return self.maximum + 1


@dataclass(frozen=True)
class EncodingPlan:
    """What one encoding of the header asks of the reconstruction."""

    index: int
    trajectory: str
    #: ``trajectoryDescription/identifier`` (e.g. siemens_to_ismrmrd's ``ConventionalEPI``), if any.
    trajectory_identifier: str | None
    geometry: Geometry
    #: ``(R_y, R_z)`` from ``parallelImaging/accelerationFactor`` (1, 1 without the block).
    accel: tuple[int, int] = (1, 1)
    #: ``parallelImaging/calibrationMode`` (``CALIBRATION_MODES``), None without the block.
    calibration_mode: str | None = None
    #: Counter over which an ``interleaved`` calibration is assembled (default ``repetition``).
    interleaving: str = "repetition"
    multiband: int = 1
    #: Encoding limits by name (``kspace_encoding_step_1``, ``slice``, ...), where the header has them.
    limits: dict[str, Limit] = field(default_factory=dict)
    echo_train_length: int | None = None

    @property
    def accelerated(self) -> bool:
        return self.accel[0] * self.accel[1] > 1

    @property
    def is_3d(self) -> bool:
        return self.geometry.encoded_matrix[2] > 1

    def size(self, counter: str) -> int:
        """How many values ``counter`` takes by the header's limits (1 where it has none)."""
        limit = self.limits.get(counter)
        return limit.size if limit is not None else 1

    def describe(self) -> str:
        """One line for the log: trajectory, matrix, acceleration, partial Fourier, counters."""
        x, y, z = self.geometry.encoded_matrix
        matrix = f"3D {x} x {y} x {z}" if self.is_3d else f"2D {x} x {y}"
        parts = [f"encoding {self.index}: {self.trajectory} {matrix}"]
        if self.accelerated:
            parts.append(
                f"R = {self.accel[0]} x {self.accel[1]} ({self.calibration_mode or 'unstated'} calibration)"
            )
        plural = {"phase": "phases", "average": "averages"}
        for counter in ("slice", "contrast", "phase", "repetition", "set", "average"):
            if self.size(counter) > 1:
                parts.append(f"{self.size(counter)} {plural.get(counter, counter + 's')}")
        return ", ".join(parts)


@dataclass(frozen=True)
class ScanPlan:
    """The plan of every encoding of a scan."""

    encodings: tuple[EncodingPlan, ...]

    def encoding(self, index: int) -> EncodingPlan:
        """The plan of encoding ``index`` (an acquisition's ``encoding_space_ref``)."""
        if not 0 <= index < len(self.encodings):
            raise PipelineError(
                f"an acquisition refers to encoding {index}, the header has {len(self.encodings)}"
            )
        return self.encodings[index]


def encoding_limits(enc) -> dict[str, Limit]:
    """The limits of one header encoding (``encodingType``) by name, where it has them."""
    out: dict[str, Limit] = {}
    node = enc.encodingLimits
    if node is None:
        return out
    for name in (
        "kspace_encoding_step_0",
        "kspace_encoding_step_1",
        "kspace_encoding_step_2",
        *LIMIT_COUNTERS,
    ):
        limit = getattr(node, name, None)
        if limit is None or limit.maximum is None:
            continue
        minimum = int(limit.minimum) if limit.minimum is not None else 0
        center = int(limit.center) if limit.center is not None else (minimum + int(limit.maximum) + 1) // 2
        out[name] = Limit(minimum, int(limit.maximum), center)
    return out


def _encoding_plan(index: int, enc, header: xsd.ismrmrdHeader) -> EncodingPlan:
    try:
        geo = geometry(header, index)
    except HeaderError as err:
        raise PipelineError(str(err)) from err
    trajectory = _text(enc.trajectory) or "cartesian"
    desc = enc.trajectoryDescription
    identifier = str(desc.identifier) if desc is not None and desc.identifier else None
    accel, mode, interleaving, multiband = (1, 1), None, "repetition", 1
    pi = enc.parallelImaging
    if pi is not None:
        factor = pi.accelerationFactor
        if factor is not None:
            accel = (int(factor.kspace_encoding_step_1 or 1), int(factor.kspace_encoding_step_2 or 1))
        mode = _text(pi.calibrationMode)
        dim = _text(pi.interleavingDimension)
        if dim in ("phase", "contrast", "average", "repetition"):
            interleaving = dim
        if pi.multiband is not None and pi.multiband.multiband_factor:
            multiband = int(pi.multiband.multiband_factor)
    if min(accel) < 1:
        raise PipelineError(
            f"encoding {index}: acceleration factors must be at least 1, the header "
            f"says {accel[0]} x {accel[1]}"
        )
    return EncodingPlan(
        index,
        trajectory,
        identifier,
        geo,
        accel,
        mode,
        interleaving,
        multiband,
        encoding_limits(enc),
        int(enc.echoTrainLength) if enc.echoTrainLength else None,
    )


def scan_plan(header: xsd.ismrmrdHeader) -> ScanPlan:
    """The plan of ``header``; ``PipelineError`` where the header lacks what any plan needs."""
    if not header.encoding:
        raise PipelineError("the MRD header has no encoding")
    return ScanPlan(tuple(_encoding_plan(i, enc, header) for i, enc in enumerate(header.encoding)))


def header_refusals(plan: ScanPlan, epi_stage: bool) -> list[str]:
    """Why the Cartesian pipeline cannot reconstruct this scan, from the header alone (empty: it can).

    ``epi_stage``: the chain has the EPI stage (``pipelines/stages/epi.py``).
    """
    reasons = []
    for enc in plan.encodings:
        where = f"encoding {enc.index}"
        identifier = (enc.trajectory_identifier or "").lower()
        if enc.trajectory == "epi" or "epi" in identifier:
            if not epi_stage:
                reasons.append(
                    f"{where} is EPI (trajectory {enc.trajectory!r}"
                    f"{', ' + repr(enc.trajectory_identifier) if enc.trajectory_identifier else ''}); "
                    "this chain has no EPI stage to reverse reflected lines, regrid ramp samples "
                    "and phase-correct odd/even echoes"
                )
        elif enc.trajectory != "cartesian":
            reasons.append(
                f"{where} has a {enc.trajectory!r} trajectory; the Cartesian pipeline "
                "reconstructs Cartesian (and EPI) k-space only: use a pipeline for non-Cartesian "
                "data (an MRzero bundle's pipeline)"
            )
        if enc.multiband > 1:
            reasons.append(
                f"{where} is a simultaneous multi-slice scan (multiband factor {enc.multiband}); "
                "separating the collapsed slices (slice-GRAPPA) is not implemented"
            )
        if enc.accel[1] > 1 and not enc.is_3d:
            reasons.append(
                f"{where} is 2D (one kz line) but the header's acceleration in kz is {enc.accel[1]}"
            )
    return reasons


def flag_refusal(acq: ismrmrd.Acquisition, epi_stage: bool) -> str | None:
    """Why the Cartesian pipeline cannot use ``acq`` given its flags (None: it can)."""
    flags = int(acq.flags)
    if flags & ~KNOWN_MASK:
        unknown = [bit for bit in range(1, 65) if flags >> (bit - 1) & 1 and bit not in KNOWN_FLAGS]
        return (
            f"flag bit(s) {', '.join(map(str, unknown))} set, which MRD v1 does not define; "
            "their meaning (and whether the samples can be used) is unknown"
        )
    compressed = [KNOWN_FLAGS[f] for f in COMPRESSION_FLAGS if acq.is_flag_set(f)]
    if compressed:
        return (
            f"samples stored compressed ({', '.join(compressed)}); decompress the data "
            "(ISMRMRD's compression) before sending them"
        )
    if not epi_stage:
        epi = [KNOWN_FLAGS[f] for f in EPI_FLAGS if acq.is_flag_set(f)]
        if epi:
            return (
                f"EPI data ({', '.join(epi)}) but this chain has no EPI stage: reflected lines and "
                "phase-correction navigators would give a half-FOV ghost"
            )
    return None
