"""Synthetic mGRE subjects for training and evaluating RoAR, with known S0/R2* truth.

A subject is a random variant of a brain anatomy (grey/white/CSF fractions): a smooth random
deformation, per-subject tissue R2* (about 15 grey, 20 white, 5 CSF per second) with smooth
spatial variation and iron-rich deep-grey regions, S0 from tissue proton density with a smooth
receive bias, and a B0 field of air-tissue-like sources (sinuses below the frontal lobe, ear
canals at the sides) scaled to the in vivo through-slice gradients at 3 T (100-200 Hz/cm at the
strongest point). How the scan sees that field is the ``scan`` choice: ``slice`` dephases each
voxel only through the slice, F(t) = |sinc(df t)|; ``encoded`` is a 2D Fourier-encoded scan, in
which in-plane field gradients also move each echo in k-space (``_encoded_scan``), as in a real
scan and as the voxel spread function assumes. The methods never see the F that made the data:
each subject also has a complex scan (echo phases from the field, noise at SNR 50) from which
F is estimated by the voxel spread function (``vsf.py``), as the paper did. Noise is N(0, mean S0
/ SNR) added to the magnitudes, as in the paper. Everything is seeded by the subject index, so a
subject-wise train/validation/test split is a split of indices. Training uses warps of the
embedded 8-slice slab (``brain_anatomy``); ``heldout_anatomy`` gives slabs of the same ICBM
volume above and below it, for test subjects whose anatomy the training never saw.

Design choices that set how hard R2* estimation is (and so the NLLS calibration against the
paper's 46.6/23.8/15.8 % at SNR 5/10/15) are the constants below; ``docs/roar.md`` lists them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from mrzero.core.ops.fft import fftc, ifftc
from mrzero.core.ops.oversampling import crop_center
from mrzero.pipelines.roar.signal_model import echo_times, f_sinc, mgre_magnitude
from mrzero.pipelines.roar.vsf import f_vsf

#: Mean tissue R2* (1/s) and per-subject standard deviation: grey, white, CSF.
R2S_MEAN = {"gm": 15.0, "wm": 20.0, "csf": 5.0}
R2S_SUBJECT_SD = {"gm": 1.5, "wm": 2.0, "csf": 1.0}
#: Relative S0 (proton density x T1 saturation of a 30 degree mGRE): grey, white, CSF.
S0_TISSUE = {"gm": 0.85, "wm": 0.7, "csf": 0.55}
#: Relative amplitude of the smooth spatial variation of R2* and of the receive bias on S0.
R2S_VARIATION = 0.12
S0_BIAS = 0.15
#: Extra R2* (1/s) of iron-rich deep-grey blobs (basal ganglia), range per blob.
IRON_R2S = (10.0, 25.0)
#: Peak through-slice field gradient in the brain (Hz/cm), drawn per subject: the in vivo range
#: near the frontal sinus and ear canals at 3 T (docs/roar.md gives the source).
B0_PEAK_GRADIENT_HZ_CM = (100.0, 200.0)
#: Shim residual: in-plane smooth field amplitude (Hz) and through-slice slope SD (Hz/cm).
SHIM_RESIDUAL_HZ = 10.0
SHIM_RESIDUAL_HZ_CM = 3.0
#: Slice thickness (cm) and its size in the field's coordinates (half-FOV of 10 cm = 1).
SLICE_CM = 0.4
SLICE_UNITS = SLICE_CM / 10.0
#: Depth of the air sources below the lowest slice (half-FOV units).
SOURCE_DEPTH = 0.4
#: SNR of the complex scan that F is estimated from (the VSF method, as the paper did on its
#: in vivo data of SNR about 50); the magnitudes the methods see get their own noise.
F_REFERENCE_SNR = 50.0
#: Fraction of tissue (grey + white + CSF) above which a voxel is in the brain mask.
MASK_THRESHOLD = 0.5
#: In-plane refinement of the encoded scan's grid (object band-limited, fields evaluated on it):
#: field gradients up to half this many cycles per voxel at an echo time stay unaliased (the
#: brain's strongest is about 0.9 at 40 ms).
ENCODED_REFINE = 4

#: How the synthetic scan sees the field: through the slice only, or 2D Fourier-encoded.
Scan = Literal["slice", "encoded"]
SCANS: tuple[Scan, ...] = ("slice", "encoded")


class SyntheticError(ValueError):
    """Impossible synthetic-data settings (shapes, SNR, split sizes)."""


@dataclass
class Anatomy:
    """Tissue fractions ``[z, y, x]`` in [0, 1] of grey matter, white matter and CSF."""

    gm: torch.Tensor
    wm: torch.Tensor
    csf: torch.Tensor

    def __post_init__(self) -> None:
        if not (self.gm.shape == self.wm.shape == self.csf.shape) or self.gm.ndim != 3:
            raise SyntheticError(
                "anatomy fractions must share one [z, y, x] shape, got "
                f"{tuple(self.gm.shape)}, {tuple(self.wm.shape)}, {tuple(self.csf.shape)}"
            )

    def stack(self) -> torch.Tensor:
        """Fractions as ``[3, z, y, x]`` (grey, white, CSF)."""
        return torch.stack([self.gm, self.wm, self.csf]).float()


@dataclass
class Subject:
    """One synthetic subject: truth maps ``[z, y, x]``, F ``[E, z, y, x]``, echo times ``[E]`` (s).

    ``f`` is the F that made the data (``|sinc|`` of the field across each slice for the ``slice``
    scan; the encoded scan's magnitude over S0 exp(-R2* t) for ``encoded``); ``f_vsf`` is F
    estimated from the subject's complex scan by the voxel spread function method, the only F
    the methods see; ``b0`` is the field (Hz) at the slice centres; ``tissue`` the dominant
    tissue of each voxel (0 grey, 1 white, 2 CSF; a segmentation, for the per-tissue baseline).
    """

    s0: torch.Tensor
    r2s: torch.Tensor
    f: torch.Tensor
    f_vsf: torch.Tensor
    b0: torch.Tensor
    mask: torch.Tensor
    tissue: torch.Tensor
    te: torch.Tensor
    index: int

    def clean(self) -> torch.Tensor:
        """Noise-free magnitudes ``[E, z, y, x]`` (zero outside the mask)."""
        return mgre_magnitude(self.s0, self.r2s, self.te, self.f) * self.mask

    def noisy(self, snr: float, generator: torch.Generator) -> torch.Tensor:
        """Magnitudes plus N(0, mean S0 / SNR) noise (mean over the subject's brain mask), masked."""
        if snr <= 0:
            raise SyntheticError(f"SNR must be positive, got {snr}")
        sigma = self.s0[self.mask].mean() / snr
        noise = torch.randn(self.f.shape, generator=generator, dtype=self.s0.dtype) * sigma
        return (self.clean() + noise.to(self.s0.device)) * self.mask


def normalise(signal: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Divide ``[E, z, y, x]`` by the mean first-echo signal in the mask (whole volume).

    Returns the normalised signal and the scale, so that S0 maps can be put on the same scale.
    """
    if not bool(mask.any()):
        raise SyntheticError("the brain mask is empty: nothing to normalise by")
    scale = signal[0][mask].mean().clamp_min(1e-12)
    return signal / scale, scale


def brain_anatomy(size: int = 64) -> Anatomy:
    """All slices of the embedded brain phantom (``mrzero.sequences.phantoms``) at ``size x size``."""
    from mrzero.core.brain_atlas import N_BRAIN_SLICES, brain_tissue_fractions

    slices = [brain_tissue_fractions((size, size), slice=k) for k in range(N_BRAIN_SLICES)]
    return Anatomy(*(torch.stack([s[name] for s in slices]) for name in ("gm", "wm", "csf")))


#: Held-out test anatomy (``tools/make_roar_heldout.py``): slabs of the ICBM volume the training
#: slab (``brain_anatomy``) does not contain.
HELDOUT_FILE = Path(__file__).with_name("data") / "heldout_anatomy.npz"
HELDOUT_SLABS = ("inferior", "superior")


def heldout_anatomy(size: int = 64, slab: str = "inferior") -> Anatomy:
    """8 slices of 4 mm below (``inferior``, MNI z -30..+2 mm) or above (``superior``, +34..+66 mm)
    the training slab, from the same ICBM 2009a labels, at ``size x size`` (area-averaged)."""
    from mrzero.core.brain_atlas import area_resample

    if slab not in HELDOUT_SLABS:
        raise SyntheticError(f"unknown held-out slab {slab!r}; choose one of {', '.join(HELDOUT_SLABS)}")
    with np.load(HELDOUT_FILE) as data:
        counts = data["counts"][HELDOUT_SLABS.index(slab)].astype(np.float64) / float(data["thickness_mm"])
    fractions = area_resample(torch.from_numpy(counts), (size, size)).clamp(0, 1).float()  # [z, 3, y, x]
    return Anatomy(*fractions.transpose(0, 1))


def _smooth_noise(shape: tuple[int, ...], coarse: int, g: torch.Generator) -> torch.Tensor:
    """Smooth random field ``[z, y, x]`` with unit-ish amplitude: coarse noise, cubic upsampling."""
    z, y, x = shape
    base = torch.randn(1, 1, coarse, coarse, generator=g)
    field = F.interpolate(base, size=(y, x), mode="bicubic", align_corners=True)[0, 0]
    return field.expand(z, y, x)


def _deform(fractions: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random affine (rotation, scale, shift) plus smooth elastic warp of ``[C, z, y, x]``."""
    c, nz, ny, nx = fractions.shape
    angle = math.radians(float(torch.empty(1).uniform_(-10, 10, generator=g)))
    scale = torch.empty(2).uniform_(0.9, 1.08, generator=g)
    shift = torch.empty(2).uniform_(-0.04, 0.04, generator=g)
    rot = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    theta = torch.cat([rot / scale.reshape(1, 2), shift.reshape(2, 1)], dim=1).unsqueeze(0)
    grid = F.affine_grid(theta, [1, 1, ny, nx], align_corners=False)
    warp = torch.randn(1, 2, 5, 5, generator=g) * 0.03
    grid = grid + F.interpolate(warp, size=(ny, nx), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    images = fractions.permute(1, 0, 2, 3)  # slices as batch: one deformation for the volume
    out = F.grid_sample(
        images, grid.expand(nz, -1, -1, -1), mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return out.permute(1, 0, 2, 3)


def _iron(gm: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Extra R2* of 1-2 left/right pairs of deep-grey blobs near the brain centre, on grey matter."""
    nz, ny, nx = gm.shape
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, ny), torch.linspace(-1, 1, nx), indexing="ij")
    extra = torch.zeros(ny, nx)
    for _ in range(int(torch.randint(1, 3, (1,), generator=g))):
        cx = float(torch.empty(1).uniform_(0.12, 0.3, generator=g))
        cy = float(torch.empty(1).uniform_(-0.15, 0.2, generator=g))
        radius = float(torch.empty(1).uniform_(0.06, 0.12, generator=g))
        for side in (-1.0, 1.0):
            amp = float(torch.empty(1).uniform_(*IRON_R2S, generator=g))
            extra += amp * torch.exp(-((xx - side * cx) ** 2 + (yy - cy) ** 2) / (2 * radius**2))
    return extra.expand(nz, ny, nx) * gm


@dataclass
class _FieldModel:
    """A subject's B0 sources, unscaled: dipole-like air sources below the brain ``(x, y, depth,
    weight)`` (frontal sinus, ear canals, one random extra), the coarse noise of a smooth in-plane
    shim residual and a unit through-slice residual slope. Coordinates are normalised to the
    in-plane half-FOV (10 cm)."""

    sources: list[tuple[float, float, float, float]]
    shim_base: torch.Tensor
    shim_z: float

    @classmethod
    def draw(cls, g: torch.Generator) -> _FieldModel:
        """Random source positions and strengths, shim noise and slope from ``g``."""
        jitter = torch.empty(8).uniform_(-0.08, 0.08, generator=g).tolist()
        sources = [
            (jitter[0], -0.6 + jitter[1], SOURCE_DEPTH, 1.0),  # frontal sinus (image top is anterior)
            (-0.75 + jitter[2], 0.1 + jitter[3], SOURCE_DEPTH + 0.05, 0.7),  # ear canals
            (0.75 + jitter[4], 0.1 + jitter[5], SOURCE_DEPTH + 0.05, 0.7),
            (
                float(torch.empty(1).uniform_(-0.6, 0.6, generator=g)),
                float(torch.empty(1).uniform_(-0.8, 0.8, generator=g)),
                SOURCE_DEPTH + 0.15,
                float(torch.empty(1).uniform_(0.2, 0.6, generator=g)),
            ),
        ]
        shim_base = torch.randn(1, 1, 4, 4, generator=g)
        return cls(sources, shim_base, float(torch.randn(1, generator=g)))

    def sample(
        self, shape: tuple[int, ...], refine: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The source field at the slice centres and across each slice (``[z, Y, X]`` each) and the
        unit shim residual ``[Y, X]``, at in-plane positions ``i / refine`` voxels (``i < refine n``:
        the voxels for ``refine = 1``, the grid of ``_fourier_refine`` otherwise), evaluated there
        rather than interpolated, so that a linear field stays linear.

        The difference across a slice is the field on its upper face minus the field on its lower
        face (what dephases the slice, ``f_sinc``); the field at the centre is what a B0 map (the
        echo phases) shows.
        """
        nz, ny, nx = shape

        def positions(n: int) -> torch.Tensor:
            return -1.0 + 2.0 * torch.arange(refine * n) / (refine * (n - 1))

        yy, xx = torch.meshgrid(positions(ny), positions(nx), indexing="ij")
        grid = torch.stack([xx, yy], dim=-1).unsqueeze(0)
        shim = F.grid_sample(self.shim_base, grid, mode="bicubic", padding_mode="border", align_corners=True)

        def field(z: float) -> torch.Tensor:
            total = torch.zeros_like(xx)
            for sx, sy, sz, w in self.sources:
                rx, ry, rz = xx - sx, yy - sy, sz + z
                r2 = rx**2 + ry**2 + rz**2
                total += w * (3 * rz**2 - r2) / r2**2.5  # z component of a z-oriented dipole
            return total

        centre = torch.stack([field(k * SLICE_UNITS) for k in range(nz)])
        across = torch.stack(
            [field((k + 0.5) * SLICE_UNITS) - field((k - 0.5) * SLICE_UNITS) for k in range(nz)]
        )
        return centre, across, shim[0, 0]


def _fourier_refine(x: torch.Tensor, refine: int) -> torch.Tensor:
    """Band-limited interpolation of ``[..., n, n]`` onto a ``refine`` times finer grid (zero-padded
    centred k-space; the identity on the original samples)."""
    pad = (refine - 1) * x.shape[-1] // 2
    return ifftc(F.pad(fftc(x), (pad, pad, pad, pad))) * refine


def _fourier_crop(x: torch.Tensor, refine: int) -> torch.Tensor:
    """The image of the central ``1 / refine`` of the k-space of ``[..., N, N]`` (what an encoding of
    that window reconstructs), on the coarse grid."""
    n = x.shape[-1] // refine
    return ifftc(crop_center(crop_center(fftc(x), n, -1), n, -2)) / refine


def _encoded_scan(
    magnitude: torch.Tensor, rx: torch.Tensor, b0: torch.Tensor, df: torch.Tensor, te: torch.Tensor
) -> torch.Tensor:
    """The complex images ``[E, z, y, x]`` of a 2D Fourier-encoded multi-echo scan in the field.

    ``magnitude`` (``[E, z, y, x]``, S0 exp(-R2* t)) times the receive phase ``exp(i rx)`` is
    interpolated band-limited onto the grid ``ENCODED_REFINE`` times finer in-plane on which the
    fields are given (``b0`` at the slice centres and ``df`` across the slice, Hz, ``[z, Y, X]``,
    ``_FieldModel.sample``); there each sub-voxel gets its through-slice dephasing sinc(df t) and
    field phase exp(2 pi i b0 t), and the k-space of the result is cropped back to the matrix. A
    field with no in-plane variation gives the slice model exactly; an in-plane gradient moves the
    echo in k-space, so the signal lost is the part moved out of the encoded window (the readout's
    duration is neglected: each echo is encoded at its echo time).
    """
    up = ENCODED_REFINE
    if b0.shape[-2:] != (up * magnitude.shape[-2], up * magnitude.shape[-1]) or df.shape != b0.shape:
        raise SyntheticError(f"the fields must be given {up} times finer than the images")
    obj = magnitude.double() * torch.exp(1j * rx.double())
    echoes = []
    for e, t in enumerate(te.double().tolist()):
        fine = (
            _fourier_refine(obj[e], up)
            * torch.sinc(df.double() * t)
            * torch.exp(2j * math.pi * b0.double() * t)
        )
        echoes.append(_fourier_crop(fine, up))
    return torch.stack(echoes).to(torch.complex64)


def make_subject(
    anatomy: Anatomy, index: int, seed: int = 0, te: torch.Tensor | None = None, scan: Scan = "slice"
) -> Subject:
    """The synthetic subject ``index`` of the series ``seed`` (deterministic), scanned as ``scan``
    says; the truth maps do not depend on ``scan``."""
    if scan not in SCANS:
        raise SyntheticError(f"unknown synthetic scan {scan!r}; choose one of {', '.join(SCANS)}")
    g = torch.Generator().manual_seed(seed * 1_000_003 + index)
    te = echo_times(te)
    frac = _deform(anatomy.stack(), g).clamp(0.0, 1.0)
    gm, wm, csf = frac
    shape = tuple(gm.shape)
    r2_tissue = {k: R2S_MEAN[k] + R2S_SUBJECT_SD[k] * float(torch.randn(1, generator=g)) for k in R2S_MEAN}
    variation = 1.0 + R2S_VARIATION * _smooth_noise(shape, 6, g)
    r2s = (gm * r2_tissue["gm"] + wm * r2_tissue["wm"] + csf * r2_tissue["csf"]) * variation
    r2s = r2s + _iron(gm, g)
    bias = 1.0 + S0_BIAS * _smooth_noise(shape, 3, g)
    s0 = (gm * S0_TISSUE["gm"] + wm * S0_TISSUE["wm"] + csf * S0_TISSUE["csf"]) * bias
    mask = (gm + wm + csf) > MASK_THRESHOLD
    tissue = gm + wm + csf
    # normalise partial volume with the background so that S0/R2* are tissue properties in the mask
    s0 = torch.where(mask, s0 / tissue.clamp_min(1e-6), torch.zeros_like(s0))
    r2s = torch.where(mask, r2s / tissue.clamp_min(1e-6), torch.zeros_like(r2s)).clamp_min(1.0) * mask
    sources = _FieldModel.draw(g)
    centre, across, shim = sources.sample(shape)
    peak_hz_cm = float(torch.empty(1).uniform_(*B0_PEAK_GRADIENT_HZ_CM, generator=g))
    scale = peak_hz_cm * SLICE_CM / across[mask].abs().amax().clamp_min(1e-12)
    slope_hz_cm = SHIM_RESIDUAL_HZ_CM * sources.shim_z
    z_cm = torch.arange(shape[0], dtype=torch.float32).reshape(-1, 1, 1) * SLICE_CM

    def hertz(
        centre: torch.Tensor, across: torch.Tensor, shim: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The field at the slice centres and across the slices (Hz) of the sampled sources."""
        b0 = centre * scale + SHIM_RESIDUAL_HZ * shim + slope_hz_cm * z_cm
        return b0, across * scale + slope_hz_cm * SLICE_CM

    b0, df = hertz(centre, across, shim)
    # the complex scan F is estimated from: the field's dephasing (the echo phase flips where the
    # sinc is negative) and phase, a smooth receive phase, complex noise at F_REFERENCE_SNR
    rx = _smooth_noise(shape, 3, g)
    magnitude = mgre_magnitude(s0, r2s, te)
    if scan == "slice":
        f = f_sinc(df, te)
        t = te.reshape(-1, 1, 1, 1)
        images = magnitude * torch.sinc(df * t) * torch.exp(1j * (2 * math.pi * b0 * t + rx))
    else:
        images = _encoded_scan(magnitude, rx, *hertz(*sources.sample(shape, ENCODED_REFINE)), te)
        f = torch.where(mask, images.abs() / magnitude.clamp_min(1e-12), torch.ones_like(magnitude))
    sigma = s0[mask].mean() / F_REFERENCE_SNR
    noise = torch.complex(torch.randn(images.shape, generator=g), torch.randn(images.shape, generator=g))
    f_est = f_vsf((images + sigma * noise) * mask, te, mask)
    tissue = frac.argmax(0)
    return Subject(s0=s0, r2s=r2s, f=f, f_vsf=f_est, b0=b0, mask=mask, tissue=tissue, te=te, index=index)


def split_indices(n_subjects: int, n_val: int, n_test: int, seed: int = 0) -> dict[str, list[int]]:
    """Subject-wise split: disjoint train/val/test lists of subject indices, seeded."""
    if n_val < 0 or n_test < 0 or n_val + n_test >= n_subjects:
        raise SyntheticError(
            f"cannot split {n_subjects} subjects into {n_val} validation and "
            f"{n_test} test subjects with at least one left for training"
        )
    order = torch.randperm(n_subjects, generator=torch.Generator().manual_seed(seed)).tolist()
    return {
        "test": sorted(order[:n_test]),
        "val": sorted(order[n_test : n_test + n_val]),
        "train": sorted(order[n_test + n_val :]),
    }


@dataclass
class SliceSet:
    """2D training/evaluation samples ``[N, ...]``: normalised noisy input, clean target, truth.

    ``noisy`` and ``clean`` are ``[N, E, H, W]`` magnitudes divided by the mean first-echo signal
    of the noisy volume in the brain mask; ``s0`` is on that scale, ``r2s`` in 1/s; ``f`` is
    ``[N, E, H, W]``; ``subject`` and ``snr`` say where each slice came from.
    """

    noisy: torch.Tensor
    clean: torch.Tensor
    f: torch.Tensor
    mask: torch.Tensor
    s0: torch.Tensor
    r2s: torch.Tensor
    tissue: torch.Tensor
    slice: torch.Tensor
    subject: torch.Tensor
    snr: torch.Tensor

    def __len__(self) -> int:
        return int(self.noisy.shape[0])

    def batch(self, index: torch.Tensor, device: torch.device | str) -> SliceSet:
        """The samples at ``index`` on ``device``."""
        return SliceSet(*(getattr(self, name)[index].to(device) for name in self.__dataclass_fields__))


def make_slice_set(
    anatomy: Anatomy,
    subjects: list[int],
    snrs: list[float] | tuple[float, float],
    copies: int = 1,
    seed: int = 0,
    noise_seed: int = 0,
    made: dict[int, Subject] | None = None,
    f: Literal["vsf", "generating"] = "vsf",
    scan: Scan = "slice",
) -> SliceSet:
    """Slices of ``copies`` noisy versions of each subject.

    ``snrs`` is either a list of fixed SNRs (each gives its own copy set) or, with ``copies``,
    an interval ``(low, high)`` from which each copy's SNR is drawn uniformly (denoising
    training in the paper: four copies, SNR in [5, 20]). Noise is drawn per whole volume.
    ``scan`` is how the subjects are scanned (``make_subject``).
    ``made`` (index -> subject of this anatomy, ``seed`` and ``scan``) keeps subjects between calls, so that
    evaluating many noise draws builds each subject (and its VSF F) once. ``f`` picks the F the
    slices carry: each subject's VSF estimate (what a method may know), or the F that made the data
    (an oracle, only for the diagnostic that separates the VSF's error from the rest).
    """
    if not subjects:
        raise SyntheticError("no subjects given")
    g = torch.Generator().manual_seed(noise_seed)
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in SliceSet.__dataclass_fields__}
    for index in subjects:
        s = (
            made[index]
            if made is not None and index in made
            else make_subject(anatomy, index, seed, scan=scan)
        )
        if made is not None:
            made[index] = s
        if isinstance(snrs, tuple):
            low, high = snrs
            if not 0 < low <= high:
                raise SyntheticError(f"SNR interval must be 0 < low <= high, got {snrs}")
            levels = [float(torch.empty(1).uniform_(low, high, generator=g)) for _ in range(copies)]
        else:
            levels = [float(v) for v in snrs for _ in range(copies)]
        clean = s.clean()
        for snr in levels:
            noisy, scale = normalise(s.noisy(snr, g), s.mask)
            nz = s.mask.shape[0]
            for name, value in (
                ("noisy", noisy.transpose(0, 1)),
                ("clean", (clean / scale).transpose(0, 1)),
                ("f", (s.f_vsf if f == "vsf" else s.f).transpose(0, 1)),
                ("mask", s.mask),
                ("s0", s.s0 / scale),
                ("r2s", s.r2s),
                ("tissue", s.tissue.to(torch.uint8)),
                ("slice", torch.arange(nz)),
                ("subject", torch.full((nz,), index)),
                ("snr", torch.full((nz,), snr)),
            ):
                parts[name].append(value)
    return SliceSet(**{k: torch.cat(v) for k, v in parts.items()})
