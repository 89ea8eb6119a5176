"""Simulated signal -> MRD v1: header, acquisitions (plus noise scans) and HDF5 files.

Built to be reused by a digital-twin scan that streams to the server: ``mrd_header`` and
``acquisitions`` make the same objects a scanner would send, ``noise_acquisitions`` the
noise-adjust scans that go first, and ``write_mrd`` stores any of them as an MRD HDF5 file.

What is filled in, from the ``Sequence`` and its ``ReadoutLayout`` (``sequences/adc_layout.py``;
derived from the trajectory when a sequence has none):

* header: encoded and recon space (readout samples x lines x 1, FOV in mm), encoding limits
  (``kspace_encoding_step_1`` with its centre, contrast, repetition), trajectory type
  (cartesian/radial/other), TR/TE/TI/flip/echo spacing (ms/deg, measured on the sequence
  itself), receiver channels, 1H frequency;
* one ``ismrmrd.Acquisition`` per readout: counters line/contrast/repetition, first/last flags
  per image (slice, encode step 1), per repetition and for the measurement, ``center_sample``,
  ``sample_time_us`` (the dwell), ``acquisition_time_stamp`` (2.5 ms ticks, the scanners'
  unit), and for non-Cartesian scans the trajectory in cycles/FOV as ``[sample, 2]`` (kx, ky)
  (the header's ``trajectoryDescription`` says so).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import ismrmrd
import ismrmrd.xsd as xsd
import numpy as np
import torch

from mrzero.core.mrd_file import write_raw_file
from mrzero.core.units import GAMMA_HZ_PER_T
from mrzero.sequences.adc_layout import ReadoutLayout, derive_layout
from mrzero.sequences.sequence import EXCITATION, INVERSION, Sequence

log = logging.getLogger(__name__)

#: ``acquisition_time_stamp`` tick (s), as Siemens scanners count.
TIME_STAMP_TICK = 2.5e-3


class MRDExportError(ValueError):
    """A signal or sequence cannot be written as MRD (mismatched sizes, existing file, ...)."""


@dataclass(frozen=True)
class ScanInfo:
    """What the sequence does not know about the (simulated) scan."""

    field_strength_t: float = 3.0
    protocol_name: str = ""
    system_vendor: str = "MRzero digital twin"
    system_model: str = "simulation"
    patient_position: str = "HFS"
    measurement_id: str = "mrzero"


@dataclass(frozen=True)
class Timing:
    """TR/TE/TI (s), flip angles (rad) and echo spacing (s) as measured on a sequence."""

    tr: float
    te: tuple[float, ...]
    ti: tuple[float, ...]
    flip: tuple[float, ...]
    echo_spacing: float | None


def layout_of(seq: Sequence) -> ReadoutLayout:
    """The sequence's readout layout, derived from its trajectory when the builder gave none."""
    if seq.readouts is not None:
        return seq.readouts
    return derive_layout(seq.n_rep, seq.adc, seq.trajectory(), seq.matrix[1])


def sequence_timing(seq: Sequence, layout: ReadoutLayout | None = None) -> Timing:
    """Measure TR, TE per contrast, TI per inversion, excitation flips and echo spacing on ``seq``.

    TE is the time from the last excitation to a readout's centre sample, taken on the readout
    of each contrast that crosses the k-space centre line (its first readout otherwise); TR is
    the median time between excitations (the scan time for a single-shot sequence); TI is the
    time from each inversion to the next excitation.
    """
    layout = layout or layout_of(seq)
    s = seq.to("cpu", torch.float64)
    rep_end = torch.cumsum(s.duration.sum(1), 0)
    rep_start = (rep_end - s.duration.sum(1)).tolist()
    kinds, flips = s.rf_kind.tolist(), s.flip.detach().tolist()
    excitations = [r for r in range(seq.n_rep) if kinds[r] == EXCITATION and flips[r] != 0]
    sample_t = s.sample_times().detach()
    centre_line = seq.matrix[1] // 2

    def te_of(readout) -> float:
        last = max((r for r in excitations if r <= readout.rep), default=0)
        return float(sample_t[readout.first + readout.centre]) - rep_start[last]

    tes = []
    for c in sorted({r.contrast for r in layout.readouts}):
        of_c = [r for r in layout.readouts if r.contrast == c]
        chosen = next((r for r in of_c if r.line == centre_line), of_c[0])
        tes.append(te_of(chosen))
    starts = [rep_start[r] for r in excitations]
    tr = float(np.median(np.diff(starts))) if len(starts) > 1 else float(rep_end[-1])
    tis = tuple(
        next((rep_start[e] - rep_start[r] for e in excitations if e > r), 0.0)
        for r in range(seq.n_rep)
        if kinds[r] == INVERSION and flips[r] != 0
    )
    exc_flips = tuple(dict.fromkeys(round(flips[r], 6) for r in excitations))
    if len(exc_flips) > 8:  # a learned flip train: report its RMS rather than hundreds of values
        exc_flips = (math.sqrt(sum(flips[r] ** 2 for r in excitations) / len(excitations)),)
    spacing = None
    if excitations:  # readouts between the first and the second excitation: an echo train?
        end = excitations[1] if len(excitations) > 1 else seq.n_rep
        shot = [r for r in layout.readouts if excitations[0] <= r.rep < end]
        if len(shot) > 1:
            spacing = te_of(shot[1]) - te_of(shot[0])
    return Timing(tr, tuple(tes), tis, exc_flips, spacing)


def _limit(maximum: int, center: int = 0) -> xsd.limitType:
    return xsd.limitType(minimum=0, maximum=max(0, maximum), center=center)


def mrd_header(
    seq: Sequence, n_coils: int, info: ScanInfo = ScanInfo(), layout: ReadoutLayout | None = None
) -> xsd.ismrmrdHeader:
    """The MRD header of simulating ``seq`` with ``n_coils`` receive coils; see the module docstring."""
    if n_coils < 1:
        raise MRDExportError(f"n_coils must be at least 1, got {n_coils}")
    layout = layout or layout_of(seq)
    timing = sequence_timing(seq, layout)
    nx = max(r.n for r in layout.readouts) if layout.readouts else seq.matrix[0]
    ny = seq.matrix[1] if layout.trajectory == "cartesian" else max(r.line for r in layout.readouts) + 1
    fov_mm = xsd.fieldOfViewMm(x=seq.fov[0] * 1e3, y=seq.fov[1] * 1e3, z=seq.fov[2] * 1e3)
    encoded = xsd.encodingSpaceType(matrixSize=xsd.matrixSizeType(x=nx, y=ny, z=1), fieldOfView_mm=fov_mm)
    recon = xsd.encodingSpaceType(
        matrixSize=xsd.matrixSizeType(x=seq.matrix[0], y=seq.matrix[1], z=1), fieldOfView_mm=fov_mm
    )
    limits = xsd.encodingLimitsType(
        kspace_encoding_step_0=_limit(nx - 1, nx // 2),
        kspace_encoding_step_1=_limit(ny - 1, seq.matrix[1] // 2 if layout.trajectory == "cartesian" else 0),
        kspace_encoding_step_2=_limit(0),
        slice=_limit(0),
        average=_limit(0),
        phase=_limit(0),
        set=_limit(0),
        segment=_limit(0),
        contrast=_limit(max(r.contrast for r in layout.readouts)),
        repetition=_limit(max(r.repetition for r in layout.readouts)),
    )
    description = None
    if layout.trajectory != "cartesian":
        description = xsd.trajectoryDescriptionType(
            identifier="mrzero",
            userParameterString=[xsd.userParameterStringType(name="units", value="cycles/FOV")],
            comment="acquisition trajectories are (kx, ky) in cycles per field of view",
        )
    encoding = xsd.encodingType(
        encodedSpace=encoded,
        reconSpace=recon,
        encodingLimits=limits,
        trajectory=xsd.trajectoryType(layout.trajectory),
        trajectoryDescription=description,
    )
    ms = lambda t: round(t * 1e3, 6)  # noqa: E731  (ns resolution hides float32 round-off)
    params = xsd.sequenceParametersType(
        TR=[ms(timing.tr)],
        TE=[ms(t) for t in timing.te],
        TI=[ms(t) for t in timing.ti],
        flipAngle_deg=[round(math.degrees(f), 4) for f in timing.flip],
        sequence_type=seq.name,
        echo_spacing=[] if timing.echo_spacing is None else [ms(timing.echo_spacing)],
    )
    system = xsd.acquisitionSystemInformationType(
        systemVendor=info.system_vendor,
        systemModel=info.system_model,
        systemFieldStrength_T=info.field_strength_t,
        receiverChannels=n_coils,
    )
    measurement = xsd.measurementInformationType(
        measurementID=info.measurement_id,
        patientPosition=xsd.patientPositionType(info.patient_position),
        protocolName=info.protocol_name or seq.name,
        sequenceName=seq.name,
    )
    conditions = xsd.experimentalConditionsType(
        H1resonanceFrequency_Hz=round(GAMMA_HZ_PER_T * info.field_strength_t)
    )
    return xsd.ismrmrdHeader(
        experimentalConditions=conditions,
        encoding=[encoding],
        sequenceParameters=params,
        acquisitionSystemInformation=system,
        measurementInformation=measurement,
    )


def _geometry(acq: ismrmrd.Acquisition) -> None:
    acq.read_dir[:] = (1.0, 0.0, 0.0)
    acq.phase_dir[:] = (0.0, 1.0, 0.0)
    acq.slice_dir[:] = (0.0, 0.0, 1.0)


def acquisitions(
    seq: Sequence,
    signal: torch.Tensor,
    layout: ReadoutLayout | None = None,
    first_scan_counter: int = 0,
    with_trajectory: bool = True,
) -> Iterator[ismrmrd.Acquisition]:
    """One ``ismrmrd.Acquisition`` per readout of ``seq`` from ``signal`` ``[coil, n_samples]``, in order.

    ``with_trajectory=False`` leaves out the trajectory arrays even off the Cartesian grid, as a
    scanner running a Pulseq file does (the digital twin, ``sequences/digital_twin.py``).
    """
    layout = layout or layout_of(seq)
    if signal.ndim != 2 or signal.shape[1] != seq.n_samples:
        raise MRDExportError(
            f"signal must be [coil, {seq.n_samples}] for this sequence's ADC samples, "
            f"got shape {tuple(signal.shape)}"
        )
    if layout.n_samples != seq.n_samples:
        raise MRDExportError(
            f"readout layout covers {layout.n_samples} samples, the sequence has {seq.n_samples}"
        )
    data = signal.detach().to("cpu", torch.complex64).numpy()
    s = seq.to("cpu", torch.float64)
    traj = s.trajectory().detach().numpy()[:, :2].astype(np.float32)
    times = s.sample_times().detach().numpy()
    dwell_all = s.duration.detach()[s.adc].numpy()
    reads = layout.readouts
    image_of = [(r.contrast, r.repetition) for r in reads]
    first_in_image = {key: image_of.index(key) for key in image_of}
    last_in_image = {key: len(image_of) - 1 - image_of[::-1].index(key) for key in image_of}
    reps = [r.repetition for r in reads]
    for i, r in enumerate(reads):
        window = slice(r.first, r.first + r.n)
        acq = ismrmrd.Acquisition.from_array(
            np.ascontiguousarray(data[:, window]),
            None
            if layout.trajectory == "cartesian" or not with_trajectory
            else np.ascontiguousarray(traj[window]),
        )
        acq.idx.kspace_encode_step_1 = r.line
        acq.idx.contrast = r.contrast
        acq.idx.repetition = r.repetition
        acq.center_sample = r.centre
        acq.sample_time_us = float(dwell_all[window].mean()) * 1e6
        acq.scan_counter = first_scan_counter + i
        acq.acquisition_time_stamp = int(round((times[r.first] - dwell_all[r.first]) / TIME_STAMP_TICK))
        _geometry(acq)
        key = image_of[i]
        if first_in_image[key] == i:
            acq.set_flag(ismrmrd.ACQ_FIRST_IN_ENCODE_STEP1)
            acq.set_flag(ismrmrd.ACQ_FIRST_IN_SLICE)
        if last_in_image[key] == i:
            acq.set_flag(ismrmrd.ACQ_LAST_IN_ENCODE_STEP1)
            acq.set_flag(ismrmrd.ACQ_LAST_IN_SLICE)
        if i == reps.index(r.repetition):
            acq.set_flag(ismrmrd.ACQ_FIRST_IN_REPETITION)
        if i == len(reps) - 1 - reps[::-1].index(r.repetition):
            acq.set_flag(ismrmrd.ACQ_LAST_IN_REPETITION)
        if i == len(reads) - 1:
            acq.set_flag(ismrmrd.ACQ_LAST_IN_MEASUREMENT)
        yield acq


def noise_acquisitions(
    n_coils: int,
    n_samples: int,
    dwell: float,
    std: float = 1.0,
    count: int = 1,
    seed: int = 0,
    covariance: torch.Tensor | None = None,
) -> list[ismrmrd.Acquisition]:
    """``count`` noise-adjust scans (``ACQ_IS_NOISE_MEASUREMENT``) of complex white noise.

    Each coil's noise has ``E|n|^2 = std^2``; ``covariance`` (``[coil, coil]`` Hermitian,
    replacing ``std``) correlates the coils, as prewhitening expects to find on a real array.
    """
    gen = torch.Generator().manual_seed(seed)
    shape = (count, n_coils, n_samples)
    white = torch.complex(
        torch.randn(shape, generator=gen, dtype=torch.float64),
        torch.randn(shape, generator=gen, dtype=torch.float64),
    ) / math.sqrt(2)
    if covariance is None:
        noise = white * std
    else:
        noise = torch.linalg.cholesky(covariance.to(torch.complex128)) @ white
    out = []
    for i in range(count):
        acq = ismrmrd.Acquisition.from_array(noise[i].to(torch.complex64).numpy())
        acq.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
        acq.sample_time_us = dwell * 1e6
        acq.scan_counter = i
        _geometry(acq)
        out.append(acq)
    return out


def add_noise(signal: torch.Tensor, std: float, seed: int = 0) -> torch.Tensor:
    """``signal`` plus complex white noise with ``E|n|^2 = std^2`` per sample (same device and dtype)."""
    gen = torch.Generator().manual_seed(seed)
    real = torch.randn(signal.shape, generator=gen, dtype=torch.float64)
    imag = torch.randn(signal.shape, generator=gen, dtype=torch.float64)
    noise = torch.complex(real, imag) * (std / math.sqrt(2))
    return signal + noise.to(device=signal.device, dtype=signal.dtype)


def write_mrd(
    path: str | Path,
    header: xsd.ismrmrdHeader,
    acqs: Iterable[ismrmrd.Acquisition],
    dataset: str = "dataset",
    overwrite: bool = False,
) -> int:
    """Write ``header`` and ``acqs`` to the MRD HDF5 file ``path`` (with the one raw-MRD writer,
    ``mrzero.core.mrd_file``); returns the number of acquisitions."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise MRDExportError(f"{path} exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    count = write_raw_file(path, xsd.ToXML(header), acqs, group=dataset, exclusive=False)
    log.info("wrote %s: %d acquisitions", path, count)
    return count


def simulated_to_mrd(
    path: str | Path,
    seq: Sequence,
    signal: torch.Tensor,
    info: ScanInfo = ScanInfo(),
    noise_std: float | None = None,
    noise_samples: int = 4096,
    seed: int = 0,
    overwrite: bool = False,
) -> int:
    """Write a simulated scan to ``path``: header, ``signal`` as given and, with ``noise_std``,
    noise-adjust scans of that level before it (at least ``noise_samples`` samples per coil,
    enough for prewhitening to estimate the coil covariance within a few per cent). For a noisy
    scan pass ``add_noise(signal, noise_std)``."""
    layout = layout_of(seq)
    header = mrd_header(seq, int(signal.shape[0]), info, layout)
    noise = []
    if noise_std:
        n = max(512, *(r.n for r in layout.readouts))  # few long scans: writing many is slow
        noise = noise_acquisitions(
            int(signal.shape[0]),
            n,
            seq.hints.readout_dwell,
            std=noise_std,
            count=math.ceil(noise_samples / n),
            seed=seed,
        )
    scans = acquisitions(seq, signal, layout, first_scan_counter=len(noise))
    return write_mrd(path, header, [*noise, *scans], overwrite=overwrite)
