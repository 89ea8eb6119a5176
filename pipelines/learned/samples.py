"""Gathering a scan's samples and their k-space positions, one group per image.

Every imaging acquisition gets a trajectory ``[samples, 3]`` in cycles per recon FOV, from the
first source that applies:

1. the scan's bundle (``lookup.py``): ``trajectory.npy`` holds every ADC sample of the ``.seq``
   file in order, so the acquisitions take consecutive slices of it in arrival order; the
   total must match exactly, otherwise the scan and the bundle disagree and nothing is
   reconstructed;
2. the acquisition's own trajectory array (``trajectory_dimensions`` >= 2, cycles per encoded
   FOV, as ``sequences/mrd.py`` writes them);
3. the Cartesian counters: sample ``i`` at ``kx = i - center_sample``, the line at
   ``ky = kspace_encode_step_1 - centre`` (the header's ``encodingLimits``).

Trajectories in cycles per *encoded* FOV are rescaled to the recon FOV (readout oversampling
then lands outside the image's band, where it belongs). Acquisitions are grouped into images
by encoding space and ``IMAGE_COUNTERS``; the groups are emitted, in counter order, once the
stream ends.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import ismrmrd
import numpy as np
import torch

from mrzero.core.bundles import DeployedBundle
from mrzero.pipelines.base import Context, PipelineError
from mrzero.pipelines.mrd_header import Geometry, HeaderError, geometry
from mrzero.pipelines.stages.acquisitions import describe, samples
from mrzero.pipelines.stages.buffer import IMAGE_COUNTERS


@dataclass
class ImageSamples:
    """All samples of one image: signal ``[coil, n]`` and trajectory ``[n, 3]`` (cycles/recon FOV)."""

    key: tuple[int, ...]  # (encoding, *IMAGE_COUNTERS)
    geometry: Geometry
    signal: list[torch.Tensor] = field(default_factory=list)
    trajectory: list[torch.Tensor] = field(default_factory=list)
    reference: ismrmrd.AcquisitionHeader | None = None
    distance: float = float("inf")  # of the reference's nearest sample from k = 0

    @property
    def encoding(self) -> int:
        return self.key[0]

    def add(self, acq: ismrmrd.Acquisition, data: torch.Tensor, k: torch.Tensor) -> None:
        if self.signal and data.shape[0] != self.signal[0].shape[0]:
            raise PipelineError(
                f"{describe(acq)} has {data.shape[0]} coils, earlier lines had {self.signal[0].shape[0]}"
            )
        self.signal.append(data)
        self.trajectory.append(k)
        nearest = float(k[:, :2].norm(dim=1).min())
        if nearest < self.distance:
            self.reference, self.distance = acq.getHead(), nearest

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(signal ``[coil, n]``, trajectory ``[n, 3]``) of all lines in arrival order."""
        return torch.cat(self.signal, dim=1), torch.cat(self.trajectory, dim=0)


class _Trajectories:
    """Hands out each acquisition's trajectory from the bundle, its own array or its counters."""

    def __init__(self, bundle: DeployedBundle | None):
        self.bundle = bundle
        self.table = None if bundle is None else torch.from_numpy(np.ascontiguousarray(bundle.trajectory()))
        if self.table is not None and (self.table.ndim != 2 or self.table.shape[1] != 3):
            raise PipelineError(
                f"bundle {bundle.name}: trajectory must be [samples, 3], got {list(self.table.shape)}"
            )
        self.used = 0

    def of(self, acq: ismrmrd.Acquisition, geo: Geometry) -> torch.Tensor:
        n = acq.number_of_samples
        if self.table is not None:
            end = self.used + n
            if end > self.table.shape[0]:
                raise PipelineError(
                    f"the scan sent more samples than bundle {self.bundle.name}'s trajectory holds "
                    f"({self.table.shape[0]}): {describe(acq)} would need samples {self.used}..{end - 1}; "
                    "the scan did not run this bundle's sequence"
                )
            k = self.table[self.used : end].to(torch.float64)
            self.used = end
        elif acq.trajectory_dimensions >= 2:
            traj = torch.from_numpy(np.array(acq.traj, dtype=np.float64))
            k = torch.zeros(n, 3, dtype=torch.float64)
            k[:, : min(3, traj.shape[1])] = traj[:, :3]
        else:
            k = torch.zeros(n, 3, dtype=torch.float64)
            k[:, 0] = torch.arange(n, dtype=torch.float64) - acq.center_sample
            k[:, 1] = acq.idx.kspace_encode_step_1 - geo.center_e1
            k[:, 2] = acq.idx.kspace_encode_step_2 - geo.center_e2
        ratio = torch.tensor(
            [r / e for r, e in zip(geo.recon_fov_m, geo.encoded_fov_m, strict=True)], dtype=torch.float64
        )
        return k * torch.where(ratio > 0, ratio, torch.ones_like(ratio))

    def check_complete(self) -> None:
        if self.table is not None and self.used != self.table.shape[0]:
            raise PipelineError(
                f"the scan sent {self.used} samples, bundle {self.bundle.name}'s trajectory "
                f"has {self.table.shape[0]}: the trajectory's length disagrees with the data"
            )


def gather_stage(bundle: DeployedBundle | None):
    """A stage: imaging acquisitions in, one ``ImageSamples`` per image out (at the end of the stream)."""

    def run(items: Iterable[ismrmrd.Acquisition], ctx: Context) -> Iterator[ImageSamples]:
        source = _Trajectories(bundle)
        groups: dict[tuple[int, ...], ImageSamples] = {}
        for acq in items:
            enc = acq.encoding_space_ref
            try:
                geo = geometry(ctx.header, enc)
            except HeaderError as err:
                raise PipelineError(str(err)) from err
            key = (enc, *(int(getattr(acq.idx, name)) for name in IMAGE_COUNTERS))
            group = groups.setdefault(key, ImageSamples(key, geo))
            group.add(acq, samples(acq), source.of(acq, geo))
        source.check_complete()
        if not groups:
            raise PipelineError("the scan sent no imaging data")
        ctx.logger.info(
            "gathered %d image(s), %d samples, trajectory from %s",
            len(groups),
            source.used if bundle else sum(t.shape[0] for g in groups.values() for t in g.trajectory),
            f"bundle {bundle.name}" if bundle else "the acquisitions",
        )
        for key in sorted(groups, key=lambda k: (k[0], *reversed(k[1:]))):
            yield groups[key]

    return run
