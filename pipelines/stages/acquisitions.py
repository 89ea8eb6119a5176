"""Acquisition helpers shared by the stages: data as tensors, copies with new data, flags."""

from __future__ import annotations

import ismrmrd
import numpy as np
import torch

from mrzero.pipelines.base import PipelineError

#: Acquisitions a Cartesian image reconstruction does not use (besides noise, handled first).
NON_IMAGING_FLAGS = (
    ismrmrd.ACQ_IS_NAVIGATION_DATA,
    ismrmrd.ACQ_IS_PHASECORR_DATA,
    ismrmrd.ACQ_IS_RTFEEDBACK_DATA,
    ismrmrd.ACQ_IS_HPFEEDBACK_DATA,
    ismrmrd.ACQ_IS_DUMMYSCAN_DATA,
    ismrmrd.ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA,
    ismrmrd.ACQ_IS_PHASE_STABILIZATION,
    ismrmrd.ACQ_IS_PHASE_STABILIZATION_REFERENCE,
)


def describe(acq: ismrmrd.Acquisition) -> str:
    """A short name of an acquisition for error messages."""
    return f"acquisition scan_counter={acq.scan_counter} (line {acq.idx.kspace_encode_step_1})"


def samples(acq: ismrmrd.Acquisition) -> torch.Tensor:
    """The acquisition's data as a complex64 tensor ``[coil, samples]`` (a copy)."""
    return torch.from_numpy(np.array(acq.data, dtype=np.complex64, copy=True))


def with_data(acq: ismrmrd.Acquisition, data: torch.Tensor, **fields: int | float) -> ismrmrd.Acquisition:
    """A copy of ``acq`` holding ``data`` ``[coil, samples]``, with header ``fields`` changed.

    A trajectory is kept only while the number of samples is unchanged.
    """
    head = ismrmrd.AcquisitionHeader.from_buffer_copy(acq.getHead())
    for name, value in fields.items():
        setattr(head, name, value)
    array = data.detach().cpu().numpy().astype(np.complex64, copy=False)
    head.active_channels, head.number_of_samples = array.shape
    traj = acq.traj if acq.traj.shape[0] == array.shape[1] else np.zeros((array.shape[1], 0), np.float32)
    head.trajectory_dimensions = traj.shape[1]
    return ismrmrd.Acquisition(head=head, data=np.ascontiguousarray(array), trajectory=np.array(traj))


def check_data(acq: ismrmrd.Acquisition) -> None:
    """``PipelineError`` for acquisitions no reconstruction can use: no coils, no samples, NaN."""
    if acq.active_channels == 0 or acq.number_of_samples == 0:
        raise PipelineError(
            f"{describe(acq)} has {acq.active_channels} coils and "
            f"{acq.number_of_samples} samples; nothing to reconstruct"
        )
    if acq.data.shape != (acq.active_channels, acq.number_of_samples):
        raise PipelineError(
            f"{describe(acq)}: data shape {acq.data.shape} disagrees with its header "
            f"({acq.active_channels} coils x {acq.number_of_samples} samples)"
        )
    if not np.isfinite(acq.data).all():
        raise PipelineError(f"{describe(acq)} contains NaN or infinite samples")
