"""Capturing parallel-imaging calibration (ACS) data while a scan streams in.

Calibration lines arrive in one of three ways, and all end as one ``CalibrationBuffer`` (a fully
sampled block ``[coil, kz_acs, ky_acs, kx]``) per calibration key, yielded the moment it is
complete so that the next stage calibrates while the rest of the scan is still arriving:

* **flagged lines**, ``ACQ_IS_PARALLEL_CALIBRATION`` (calibration only) or
  ``ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING`` (lattice lines that are also imaging data), either
  *embedded* among the imaging lines, or *separate*: a reference scan sent before the imaging
  data (Siemens), or ISMRMRD's generator's calibration lines within every repetition. The block
  is complete when a line of the same key without a calibration flag arrives while the
  calibration lines form a fully sampled block centred on the k-space centre of at least
  ``MIN_EARLY_BLOCK`` lines, or, at the latest, when the image that needs it is emitted (lines
  that arrive after their block was used, and form a smaller block, are ignored then).
* **interleaved** over repetitions (``calibrationMode interleaved`` and no flagged lines): the
  sampling pattern shifts from one repetition to the next (TSENSE/TGRAPPA style); the union of
  the images' lines fills the centre of k-space after ``R`` repetitions, and its central block
  (``INTERLEAVED_BLOCK`` lines in ky, up to 16 in kz) becomes the calibration.

The calibration key is (encoding, slice, contrast, phase, set): a new block for the same key
(the next repetition's calibration lines) replaces the earlier one downstream. Under interleaved
calibration the interleaving dimension (``parallelImaging/interleavingDimension``, default
repetition) is not part of the key.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import ismrmrd
import torch

from mrzero.pipelines.scan_plan import EncodingPlan
from mrzero.pipelines.stages.buffer import IMAGE_COUNTERS, CalibrationBuffer, ReconBuffer

CALIBRATION_FLAGS = (ismrmrd.ACQ_IS_PARALLEL_CALIBRATION, ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)
#: Counters of the calibration key (besides the encoding).
CALIBRATION_COUNTERS = ("slice", "contrast", "phase", "set")
#: ky lines of the block taken from the union of interleaved repetitions (kz: up to 16).
INTERLEAVED_BLOCK = (16, 32)
#: A block of flagged lines is complete before its image only with at least this many (kz, ky) lines.
MIN_EARLY_BLOCK = (4, 8)


def is_calibration(acq: ismrmrd.Acquisition) -> bool:
    return any(acq.is_flag_set(flag) for flag in CALIBRATION_FLAGS)


def is_calibration_only(acq: ismrmrd.Acquisition) -> bool:
    return acq.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION) and not acq.is_flag_set(
        ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING
    )


def calibration_key(enc: EncodingPlan, counters: dict[str, int]) -> tuple[int, ...]:
    """The key of the calibration that images with these ``counters`` use."""
    interleaved = enc.calibration_mode == "interleaved"
    return (
        enc.index,
        *(
            0 if interleaved and name == enc.interleaving else int(counters.get(name, 0))
            for name in CALIBRATION_COUNTERS
        ),
    )


def acquisition_counters(acq: ismrmrd.Acquisition) -> dict[str, int]:
    return {name: int(getattr(acq.idx, name)) for name in (*IMAGE_COUNTERS, "average")}


def buffer_counters(buf: ReconBuffer) -> dict[str, int]:
    return dict(zip(IMAGE_COUNTERS, (int(v) for v in buf.key), strict=True))


def _runs(row: torch.Tensor) -> list[tuple[int, int]]:
    """Inclusive ``(start, stop)`` of every run of True in a 1D bool tensor."""
    runs, start = [], None
    for i, value in enumerate(row.tolist()):
        if value and start is None:
            start = i
        elif not value and start is not None:
            runs.append((start, i - 1))
            start = None
    if start is not None:
        runs.append((start, len(row) - 1))
    return runs


def _best_run(row: torch.Tensor, centre: int) -> tuple[int, int] | None:
    runs = _runs(row)
    if not runs:
        return None
    return max(runs, key=lambda r: (r[0] <= centre <= r[1], r[1] - r[0]))


def bounding_box(mask: torch.Tensor) -> tuple[int, int, int, int] | None:
    """``(z0, z1, y0, y1)`` (inclusive) of the sampled lines of a ``[kz, ky]`` mask."""
    if not bool(mask.any()):
        return None
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def acs_block(mask: torch.Tensor) -> tuple[int, int, int, int] | None:
    """The fully sampled block ``(z0, z1, y0, y1)`` (inclusive) of a ``[kz, ky]`` line mask.

    The bounding box if it is fully sampled; otherwise the longest run of lines (preferring the
    one through the centre ``n // 2``) in the sampled kz row nearest the centre, grown in kz
    while every line of that run is sampled.
    """
    box = bounding_box(mask)
    if box is None:
        return None
    z0, z1, y0, y1 = box
    if bool(mask[z0 : z1 + 1, y0 : y1 + 1].all()):
        return box
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    nz, ny = mask.shape
    zc = min((int(z) for z in rows), key=lambda z: abs(z - nz // 2))
    run = _best_run(mask[zc], ny // 2)
    if run is None:
        return None
    y0, y1 = run
    z0 = z1 = zc
    while z0 > 0 and bool(mask[z0 - 1, y0 : y1 + 1].all()):
        z0 -= 1
    while z1 < nz - 1 and bool(mask[z1 + 1, y0 : y1 + 1].all()):
        z1 += 1
    return z0, z1, y0, y1


def symmetric(block: tuple[int, int, int, int], shape: tuple[int, int]) -> bool:
    """Whether the block is centred on the k-space centre ``n // 2``: as many lines below it as at
    and above it, or one more at and above it (an odd block)."""
    z0, z1, y0, y1 = block
    nz, ny = shape

    def centred(lo: int, hi: int, n: int) -> bool:
        below, above = n // 2 - lo, hi - n // 2 + 1
        return below >= 0 and above - below in (0, 1)

    return centred(y0, y1, ny) and (nz == 1 or centred(z0, z1, nz))


def large(block: tuple[int, int, int, int], shape: tuple[int, int]) -> bool:
    """Whether the block has ``MIN_EARLY_BLOCK`` lines (or the whole axis) in kz and ky."""
    z0, z1, y0, y1 = block
    return z1 - z0 + 1 >= min(MIN_EARLY_BLOCK[0], shape[0]) and y1 - y0 + 1 >= min(
        MIN_EARLY_BLOCK[1], shape[1]
    )


@dataclass
class _Lines:
    """Calibration lines of one key being collected: summed data and counts per (kz, ky)."""

    data: torch.Tensor  # [coil, nz, ny, nx]
    count: torch.Tensor  # [nz, ny]

    @property
    def mask(self) -> torch.Tensor:
        return self.count > 0

    def block(self, key: tuple[int, ...], source: str) -> CalibrationBuffer | None:
        box = acs_block(self.mask)
        if box is None:
            return None
        z0, z1, y0, y1 = box
        data = (
            self.data[:, z0 : z1 + 1, y0 : y1 + 1]
            / self.count[z0 : z1 + 1, y0 : y1 + 1].clamp_min(1).to(self.data.dtype)[None, :, :, None]
        )
        return CalibrationBuffer(data, key, key[0], (z0, y0), source)


class CalibrationCollector:
    """Collects the calibration lines of a stream; its methods yield ``CalibrationBuffer``s when due.

    The accumulation stage calls ``line`` for every line it places and ``before_image`` before it
    emits an image.
    """

    def __init__(self, logger):
        self.log = logger
        self.open: dict[tuple[int, ...], _Lines] = {}
        #: Keys that had flagged calibration lines (no interleaved assembly for them).
        self.flagged: set[tuple[int, ...]] = set()
        #: Lines in the block last yielded per key.
        self.used: dict[tuple[int, ...], int] = {}
        self.union: dict[tuple[int, ...], _Lines] = {}
        self.union_done: set[tuple[int, ...]] = set()

    def line(
        self,
        acq: ismrmrd.Acquisition,
        enc: EncodingPlan,
        data: torch.Tensor,
        kz: int,
        ky: int,
        shape: tuple[int, int, int],
    ) -> Iterator[CalibrationBuffer]:
        """One placed line ``data`` ``[coil, nx]`` at ``(kz, ky)`` of a k-space of ``shape`` (nz, ny, nx)."""
        key = calibration_key(enc, acquisition_counters(acq))
        if is_calibration(acq):
            self.flagged.add(key)
            lines = self.open.get(key)
            if lines is None or lines.data.shape[0] != data.shape[0]:
                lines = _Lines(
                    torch.zeros(data.shape[0], *shape, dtype=data.dtype),
                    torch.zeros(shape[:2], dtype=torch.int32),
                )
                self.open[key] = lines
            lines.data[:, kz, ky] += data
            lines.count[kz, ky] += 1
            return
        lines = self.open.get(key)
        if lines is None:
            return
        mask = lines.mask
        box = bounding_box(mask)  # complete early only as a fully sampled, centred, large block
        if (
            box is not None
            and symmetric(box, tuple(mask.shape))
            and large(box, tuple(mask.shape))
            and bool(mask[box[0] : box[1] + 1, box[2] : box[3] + 1].all())
        ):
            yield from self._finish(key)

    def _finish(self, key: tuple[int, ...], late: bool = False) -> Iterator[CalibrationBuffer]:
        lines = self.open.pop(key)
        block = lines.block(key, "flagged")
        if block is None:
            return
        size = block.data.shape[1] * block.data.shape[2]
        if late and size < self.used.get(key, 0):
            self.log.info(
                "calibration %s: %d line(s) after the block was used ignored",
                _name(key),
                int(lines.count.gt(0).sum()),
            )
            return
        self.used[key] = size
        self.log.info(
            "calibration %s: %d x %d (kz x ky) ACS lines complete",
            _name(key),
            block.data.shape[1],
            block.data.shape[2],
        )
        yield block

    def before_image(self, buf: ReconBuffer, enc: EncodingPlan) -> Iterator[CalibrationBuffer]:
        """Due calibration for the image ``buf`` (its key's open lines; the interleaved union)."""
        key = calibration_key(enc, buffer_counters(buf))
        if key in self.open:
            yield from self._finish(key, late=True)
        if (
            enc.accelerated
            and enc.calibration_mode == "interleaved"
            and key not in self.flagged
            and key not in self.union_done
            and buf.sampled is not None
        ):
            yield from self._interleave(key, buf)

    def _interleave(self, key: tuple[int, ...], buf: ReconBuffer) -> Iterator[CalibrationBuffer]:
        union = self.union.get(key)
        if union is None or union.data.shape != buf.data.shape:
            union = _Lines(torch.zeros_like(buf.data), torch.zeros(buf.data.shape[1:3], dtype=torch.int32))
            self.union[key] = union
        mask = buf.sampled
        union.data[:, mask] = buf.data[:, mask]
        union.count[mask] = 1
        nz, ny = mask.shape
        hz, hy = min(INTERLEAVED_BLOCK[0], nz) // 2, min(INTERLEAVED_BLOCK[1], ny) // 2
        z0, z1 = (0, 1) if nz == 1 else (nz // 2 - hz, nz // 2 + hz)
        y0, y1 = ny // 2 - hy, ny // 2 + hy
        if not bool(union.mask[z0:z1, y0:y1].all()):
            return
        self.union_done.add(key)
        self.union.pop(key)
        self.log.info(
            "calibration %s: %d x %d (kz x ky) lines from the union of interleaved images",
            _name(key),
            z1 - z0,
            y1 - y0,
        )
        yield CalibrationBuffer(union.data[:, z0:z1, y0:y1].clone(), key, key[0], (z0, y0), "interleaved")


def _name(key: tuple[int, ...]) -> str:
    return f"encoding {key[0]} " + " ".join(
        f"{n} {v}" for n, v in zip(CALIBRATION_COUNTERS, key[1:], strict=True)
    )
