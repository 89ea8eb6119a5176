"""Fixtures shared by every test folder."""

import pytest
import torch
from hypothesis import settings

# Property tests draw the same examples on every run (a red CI is then reproducible, never a coin
# toss) and have no per-example deadline (timing on a shared 2-core machine says nothing).
settings.register_profile("reproducible", derandomize=True, deadline=None)
settings.load_profile("reproducible")


@pytest.fixture
def single_torch_thread():
    """Run torch on one thread for the test, then restore the count: on a shared, oversubscribed
    2-core host the OpenMP/MKL thread hand-off costs ~15 ms per small operation, 1000x the work."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
