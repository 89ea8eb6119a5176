"""A small procedural anatomy for RoAR tests: nested ellipses of CSF, grey and white matter."""

import pytest
import torch

from pipelines.roar.synthetic import Anatomy


def ellipse_anatomy(size: int = 32, slices: int = 2) -> Anatomy:
    """Head-like ellipses: grey cortex around white matter, CSF ventricles in the middle."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    brain = ((xx / 0.7) ** 2 + (yy / 0.85) ** 2) < 1
    white = ((xx / 0.5) ** 2 + (yy / 0.65) ** 2) < 1
    csf = ((xx / 0.12) ** 2 + (yy / 0.3) ** 2) < 1
    gm = (brain & ~white).float()
    wm = (white & ~csf).float()
    return Anatomy(gm.expand(slices, -1, -1), wm.expand(slices, -1, -1), csf.float().expand(slices, -1, -1))


@pytest.fixture
def anatomy() -> Anatomy:
    return ellipse_anatomy()
