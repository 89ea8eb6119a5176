"""Synthetic EPI scans in closed form: ramp-sampled, reflected readouts of a known image, with
three phase-correction navigators per shot and a known odd/even error.

The object is a sum of point sources on the encoded grid (pixel ``j`` of ``n`` at ``(j - n//2)/n``
FOV units, ``core/units.py``), so its k-space is the exact sum ``s(k) = sum m(x) exp(-2 pi i k.x)``
at any k: each sample is computed at its own ramp-sampled k position, nothing is interpolated.
Reflected readouts run the trapezoid backwards (``-k``) and carry a deliberate odd/even error:
a k shift of ``shift`` grid steps and a constant phase ``constant`` (radians).
"""

from __future__ import annotations

from dataclasses import dataclass

import ismrmrd
import ismrmrd.xsd as xsd
import numpy as np
from mrd_builders import header_xml

from mrzero.core.ops.epi import TrapezoidReadout
from mrzero.pipelines.mrd_header import parse_header

#: A ramp-sampled readout: 100 us ramps, 300 us flat top, 96 samples of 5 us after a 10 us delay.
RAMP_READOUT = TrapezoidReadout(100e-6, 300e-6, 100e-6, 10e-6, 5e-6, 96)


@dataclass
class EpiReadout:
    """One readout of the scan, in acquisition order."""

    line: int
    reflected: bool
    navigator: bool
    shot: int
    data: np.ndarray  # [coil, samples] complex64


def ellipse_object(ny: int, nx: int, coils: int) -> np.ndarray:
    """Coil images ``[coil, ny, nx]`` of an ellipse with two inserts and smooth complex coils; the
    object fills the central half of x (the readout is 2x oversampled) and rows 4..ny-5 of y."""
    y, x = np.meshgrid((np.arange(ny) - ny // 2) / ny, (np.arange(nx) - nx // 2) / nx, indexing="ij")
    body = ((x / 0.2) ** 2 + (y / 0.38) ** 2 <= 1.0).astype(float)
    body += 0.5 * (((x - 0.06) / 0.06) ** 2 + ((y + 0.12) / 0.1) ** 2 <= 1.0)
    body -= 0.6 * (((x + 0.07) / 0.05) ** 2 + ((y - 0.15) / 0.07) ** 2 <= 1.0)
    angles = 2 * np.pi * np.arange(coils) / coils
    sens = np.stack(
        [
            np.exp(-((x - 0.3 * np.cos(a)) ** 2 + (y - 0.3 * np.sin(a)) ** 2) / 0.3)
            * np.exp(1j * (a + 2.0 * x * np.cos(a) - 1.5 * y))
            for a in angles
        ]
    )
    return (sens * body).astype(np.complex64)


def line_kspace(images: np.ndarray, ky: float, kx: np.ndarray) -> np.ndarray:
    """Exact samples ``[coil, len(kx)]`` of the point-source object ``images`` at ``(ky, kx)``."""
    ny, nx = images.shape[-2:]
    y = (np.arange(ny) - ny // 2) / ny
    x = (np.arange(nx) - nx // 2) / nx
    hybrid = np.einsum("cyx,y->cx", images, np.exp(-2j * np.pi * ky * y))
    return hybrid @ np.exp(-2j * np.pi * np.outer(x, kx))


def epi_readouts(
    images: np.ndarray,
    readout: TrapezoidReadout = RAMP_READOUT,
    shots: int = 1,
    constant: float = 0.0,
    shift: float = 0.0,
    navigators: int = 3,
    noise: float = 0.0,
    seed: int = 0,
    lines: list[int] | None = None,
) -> list[EpiReadout]:
    """The readouts of an EPI scan of ``images`` ``[coil, ny, nx]``: per shot ``navigators`` ky = 0
    lines (forward, reflected, forward, ...), then the shot's lines ``shot, shot + shots, ...``
    of ``lines`` (default: all ``ny``) alternating forward/reflected. ``noise``: standard deviation
    of complex white noise."""
    ny, nx = images.shape[-2:]
    k = readout.sample_k(nx)
    rng = np.random.default_rng(seed)

    def sample(ky: float, reflected: bool) -> np.ndarray:
        data = (
            np.exp(1j * constant) * line_kspace(images, ky, -k + shift)
            if reflected
            else line_kspace(images, ky, k)
        )
        if noise:
            data = data + noise * (
                rng.standard_normal(data.shape) + 1j * rng.standard_normal(data.shape)
            ) / np.sqrt(2)
        return data.astype(np.complex64)

    out = []
    for shot in range(shots):
        for n in range(navigators):
            out.append(EpiReadout(ny // 2, n % 2 == 1, True, shot, sample(0.0, n % 2 == 1)))
        for echo, line in enumerate((list(range(ny)) if lines is None else lines)[shot::shots]):
            reflected = echo % 2 == 1
            out.append(EpiReadout(line, reflected, False, shot, sample(line - ny // 2, reflected)))
    return out


def trajectory_description(readout: TrapezoidReadout) -> str:
    """The ``trajectoryDescription`` XML of ``readout`` as siemens_to_ismrmrd writes it (us)."""
    longs = {
        "rampUpTime": readout.ramp_up_s,
        "flatTopTime": readout.flat_top_s,
        "rampDownTime": readout.ramp_down_s,
        "acqDelayTime": readout.adc_delay_s,
    }
    body = "".join(
        f"<userParameterLong><name>{n}</name><value>{round(v * 1e6)}</value></userParameterLong>"
        for n, v in longs.items()
    )
    body += (
        f"<userParameterLong><name>numSamples</name><value>{readout.n_samples}</value></userParameterLong>"
    )
    body += (
        f"<userParameterDouble><name>dwellTime</name><value>{readout.dwell_s * 1e6!r}</value>"
        "</userParameterDouble>"
    )
    return f"<trajectoryDescription><identifier>ConventionalEPI</identifier>{body}</trajectoryDescription>"


def epi_header(ny: int, nx: int, readout: TrapezoidReadout | None = RAMP_READOUT) -> xsd.ismrmrdHeader:
    """An EPI header: encoded ``nx`` x ``ny`` (2x readout oversampling), recon ``nx/2`` x ``ny``;
    ``readout=None`` leaves the trajectory description out."""
    text = header_xml(
        enc=(nx, ny, 1),
        rec=(nx // 2, ny, 1),
        enc_fov_mm=(440.0, 220.0, 5.0),
        rec_fov_mm=(220.0, 220.0, 5.0),
        center_e1=ny // 2,
    )
    epi = "<trajectory>epi</trajectory>" + (trajectory_description(readout) if readout else "")
    return parse_header(text.replace("<trajectory>cartesian</trajectory>", epi))


def epi_acquisitions(
    readouts: list[EpiReadout], readout: TrapezoidReadout = RAMP_READOUT, slice: int = 0
) -> list[ismrmrd.Acquisition]:
    """MRD acquisitions of ``readouts`` with the flags siemens_to_ismrmrd sets."""
    acqs = []
    for counter, r in enumerate(readouts):
        acq = ismrmrd.Acquisition.from_array(
            r.data, center_sample=r.data.shape[1] // 2, sample_time_us=readout.dwell_s * 1e6
        )
        acq.scan_counter = counter
        acq.idx.kspace_encode_step_1, acq.idx.slice, acq.idx.segment = r.line, slice, r.shot
        if r.reflected:
            acq.set_flag(ismrmrd.ACQ_IS_REVERSE)
        if r.navigator:
            acq.set_flag(ismrmrd.ACQ_IS_PHASECORR_DATA)
        acqs.append(acq)
    acqs[-1].set_flag(ismrmrd.ACQ_LAST_IN_SLICE)
    return acqs


def ghost_ratio(image: np.ndarray, mask: np.ndarray) -> float:
    """Mean magnitude in the half-FOV-shifted copy of ``mask`` (outside the object) over the
    object's mean magnitude: the Nyquist ghost level (phase encoding along axis 0)."""
    band = np.roll(mask, image.shape[0] // 2, axis=0) & ~mask
    return float(np.abs(image[band]).mean() / np.abs(image[mask]).mean())


def nrmse(image: np.ndarray, reference: np.ndarray) -> float:
    """Root-mean-square error of ``image`` after the best real scale, over the reference's norm."""
    a, b = np.abs(image).ravel(), np.abs(reference).ravel()
    scale = float(a @ b / (a @ a))
    return float(np.linalg.norm(scale * a - b) / np.linalg.norm(b))
