"""The background mask of ``mrzero_head`` maps: signal where any contrast image holds some."""

import torch

from mrzero.pipelines.learned.head_maps import signal_mask


def test_mask_keeps_the_object_in_any_contrast_and_drops_the_background():
    g = torch.Generator().manual_seed(0)
    stack = 0.01 * torch.randn(3, 32, 32, dtype=torch.complex64, generator=g)
    stack[0, 8:16, 8:24] += 1.0  # bright only in the first contrast
    stack[2, 16:24, 8:24] -= 0.5j  # bright only in the last (an inversion-nulled tissue elsewhere)
    mask = signal_mask(stack, 0.1)
    assert mask[8:24, 8:24].all() and mask.sum() == 16 * 16
    assert torch.equal(signal_mask(stack, 0.0), torch.ones(32, 32))
