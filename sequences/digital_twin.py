"""The digital twin of the scanner: run a bundle's ``.seq`` file on a phantom and produce MRD raw data.

What the scanner does with a Pulseq file, the twin does in simulation:

1. read the bundle's ``sequence.seq`` with the Pulseq *import* (``sequences/pulseq/import_.py``),
   not the trained ``Sequence`` object, so the exported file itself is what gets tested;
2. simulate it on a phantom (``make_phantom``: brain, sparse or a NIfTI file) with ``n_coils``
   receive coils;
3. cut the signal into one acquisition per Pulseq ADC event, with the MRD counters the file's
   labels set (``LIN``, ``ECO``, ``REP``, as a Pulseq interpreter does), first/last flags,
   dwell, time stamps and geometry (``sequences/mrd.py``), but no trajectory arrays: a
   scanner does not know the k-space of a Pulseq file, the server takes it from the bundle;
4. optionally add complex white noise at a given SNR, preceded by noise-adjust scans of the
   same level (so the server's prewhitening sees what it sees on a real array);
5. write a realistic MRD header (encoding, FOV and matrix from the bundle, coils, timing,
   system) carrying the file's MD5 signature as the user parameter string ``PulseqSignature``.

``twin_scan`` returns the header and acquisitions; ``mrzero.twin_demo.stream_scan`` sends them to an
MRD server with the project's client (``sequences`` never imports ``server``).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import ismrmrd
import ismrmrd.xsd as xsd
import numpy as np
import torch

from mrzero.core.bundles import SIGNATURE_PARAMETER, BundleError
from mrzero.sequences.adc_layout import TRAJECTORIES, Readout, ReadoutLayout
from mrzero.sequences.bundle import check_bundle
from mrzero.sequences.mrd import ScanInfo, acquisitions, add_noise, mrd_header, noise_acquisitions
from mrzero.sequences.phantom import Phantom
from mrzero.sequences.pulseq.import_ import import_seq, read_pulseq
from mrzero.sequences.sequence import Sequence

log = logging.getLogger(__name__)

#: Noise samples per coil in the noise-adjust scans (enough for a covariance within a few per cent).
NOISE_SAMPLES = 4096
#: The bundles shipped with the project (``sequences/bundles/README.md`` says how they were trained).
SHIPPED_BUNDLES = Path(__file__).resolve().parent / "bundles"


@dataclass
class TwinScan:
    """A simulated scan of a bundle, ready to stream: header, noise scans and imaging acquisitions."""

    protocol: dict
    sequence: Sequence
    phantom: Phantom
    header: xsd.ismrmrdHeader
    acquisitions: list[ismrmrd.Acquisition]
    #: Noise-free signal ``[coil, samples]`` (what the acquisitions hold before noise).
    signal: torch.Tensor
    noise_std: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def header_xml(self) -> str:
        return xsd.ToXML(self.header)


def adc_layout(seq_path: str | Path, model: Sequence, trajectory: str = "other") -> ReadoutLayout:
    """One readout per Pulseq ADC event of the file, counters from its labels, samples in ``model``'s
    order; ``trajectory`` is the layout's type (``cartesian``, ``radial`` or ``other``)."""
    pulseq, _ = read_pulseq(seq_path)
    sizes = [
        pulseq.get_block(b).adc.num_samples
        for b in pulseq.block_events
        if pulseq.get_block(b).adc is not None
    ]
    labels = pulseq.evaluate_labels(evolution="adc")
    if sum(sizes) != model.n_samples:
        raise BundleError(
            f"{seq_path}: the file's ADC events hold {sum(sizes)} samples, its import {model.n_samples}"
        )
    rep_of_sample = np.repeat(np.arange(model.n_rep), model.adc.sum(1).cpu().numpy())
    k = model.trajectory().detach().cpu().double().numpy()
    zeros = np.zeros(len(sizes), dtype=int)
    lin, eco, rep = (np.asarray(labels.get(name, zeros)) for name in ("LIN", "ECO", "REP"))
    readouts, first = [], 0
    for i, n in enumerate(sizes):
        centre = int(np.argmin(np.linalg.norm(k[first : first + n, :2], axis=1)))
        readouts.append(
            Readout(int(rep_of_sample[first]), first, n, int(lin[i]), int(eco[i]), int(rep[i]), centre)
        )
        first += n
    return ReadoutLayout(tuple(readouts), trajectory)


def bundle_dir(spec: str | Path) -> Path:
    """A bundle directory from a path or the name of a shipped bundle (``learned_gre``, ``t1_mapping``)."""
    path = Path(spec)
    if (path / "protocol.json").is_file():
        return path
    shipped = SHIPPED_BUNDLES / str(spec)
    if path.name == str(spec) and (shipped / "protocol.json").is_file():
        return shipped
    names = sorted(p.parent.name for p in SHIPPED_BUNDLES.glob("*/protocol.json"))
    raise BundleError(
        f"{spec}: not a bundle directory nor a shipped bundle (shipped: {', '.join(names) or 'none'})"
    )


def _signed(header: xsd.ismrmrdHeader, protocol: dict) -> xsd.ismrmrdHeader:
    """``header`` with the Pulseq signature user parameter."""
    header.userParameters = xsd.userParametersType(
        userParameterString=[
            xsd.userParameterStringType(name=SIGNATURE_PARAMETER, value=protocol["signature"])
        ]
    )
    return header


@dataclass(frozen=True)
class ScannedFile:
    """What the scanner knows of a bundle: its protocol, the imported ``.seq`` and its ADC layout."""

    protocol: dict
    sequence: Sequence
    layout: ReadoutLayout


def scanned_file(bundle: str | Path) -> ScannedFile:
    """Validate a bundle directory and import its ``.seq`` (matrix from the protocol) with its layout."""
    bundle = Path(bundle)
    protocol = check_bundle(bundle)
    seq_path = bundle / protocol["files"]["seq"]
    matrix = tuple(int(m) for m in protocol["encoding"]["matrix"])
    model = replace(import_seq(seq_path).sequence, matrix=matrix)
    kind = protocol["encoding"].get("trajectory_type", "other")
    layout = adc_layout(seq_path, model, kind if kind in TRAJECTORIES else "other")
    return ScannedFile(protocol, model, layout)


def raw_data(
    scanned: ScannedFile, signal: torch.Tensor, snr: float | None = None, seed: int = 0
) -> tuple[xsd.ismrmrdHeader, list[ismrmrd.Acquisition], float]:
    """The MRD header, noise-adjust scans plus acquisitions, and the noise std of ``signal``
    ``[coil, samples]`` acquired with ``scanned``'s file (noise at ``snr``, see ``twin_scan``)."""
    if snr is not None and not snr > 0:
        raise ValueError(f"SNR must be positive, got {snr}")
    protocol, model, layout = scanned.protocol, scanned.sequence, scanned.layout
    n_coils = int(signal.shape[0])
    info = ScanInfo(
        protocol_name=f"mrzero twin {protocol['name']}", measurement_id=f"twin-{protocol['signature'][:8]}"
    )
    header = _signed(mrd_header(model, n_coils, info, layout), protocol)
    noise_std, noise, data = 0.0, [], signal
    if snr is not None:
        noise_std = float(signal.abs().pow(2).mean().sqrt()) / snr
        data = add_noise(signal, noise_std, seed)
        n = max(512, *(r.n for r in layout.readouts))
        noise = noise_acquisitions(
            n_coils,
            n,
            model.hints.readout_dwell,
            std=noise_std,
            count=math.ceil(NOISE_SAMPLES / n),
            seed=seed + 1,
        )
    scans = list(acquisitions(model, data, layout, first_scan_counter=len(noise), with_trajectory=False))
    return header, noise + scans, noise_std


def twin_scan(
    bundle: str | Path,
    phantom: str | Phantom = "brain",
    n_coils: int = 1,
    snr: float | None = None,
    seed: int = 0,
    engine: str = "fast",
    device: torch.device | str | None = None,
    slice: int | None = None,
    progress: bool = False,
    engine_settings: dict[str, object] | None = None,
) -> TwinScan:
    """Simulate the bundle directory's ``.seq`` on ``phantom`` (see the module docstring).

    ``phantom``: ``brain``, ``sparse``, a NIfTI path (``make_phantom``, at the bundle's matrix,
    with ``n_coils`` loop coils) or a ``Phantom`` used as it is (its own coils, if any).

    ``snr``: root-mean-square of the noise-free signal over the noise standard deviation (by
    Parseval, for a fully sampled Cartesian scan the image's RMS over its FOV divided by the
    image noise); None: no noise and no noise-adjust scans. ``progress`` shows the engine's
    progress bar (engines that have one). ``engine_settings`` go to the engine as they are (e.g.
    ``{"tolerance": 1e-3}``: the pruning the bundles were trained with, see docs/simulation.md).
    """
    from mrzero.sequences.builder_scan import make_phantom
    from mrzero.sequences.simulate import ENGINES, engine_options, simulate

    if n_coils < 1:
        raise ValueError(f"coils must be at least 1, got {n_coils}")
    start = time.perf_counter()
    scanned = scanned_file(bundle)
    timings = {"import": time.perf_counter() - start}
    start = time.perf_counter()
    if isinstance(phantom, Phantom):
        ph = phantom
    else:
        matrix = scanned.sequence.matrix
        ph = make_phantom(
            phantom, (matrix[0], matrix[1]), slice=slice, n_coils=n_coils, seed=seed, device=device
        )
    with torch.no_grad():
        shows = progress and engine in ENGINES and "progress" in engine_options(engine)
        extra = {"progress": True} if shows else {}
        extra.update(engine_settings or {})
        signal = simulate(scanned.sequence, ph, engine=engine, device=device, **extra)
    signal = signal.to("cpu", torch.complex64)
    timings["simulate"] = time.perf_counter() - start
    header, acqs, noise_std = raw_data(scanned, signal, snr, seed)
    log.info(
        "twin scan of bundle %s on %s: %d coils, %d acquisitions, %s",
        scanned.protocol["name"],
        ph.name,
        signal.shape[0],
        len(acqs),
        f"SNR {snr:g}" if snr is not None else "no noise",
    )
    return TwinScan(scanned.protocol, scanned.sequence, ph, header, acqs, signal, noise_std, timings)
