"""Pipeline tests run torch single-threaded: on this shared, oversubscribed 2-core host the
OpenMP/MKL thread hand-off costs ~15 ms per small FFT, 1000x the FFT itself. Restored after."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
