"""mrzero.core.ops.fft against numpy's centred FFT and the written-out encoding matrix."""

import numpy as np
import pytest
import torch
from mrd_builders import centered_dft

from mrzero.core.ops.fft import fftc, ifftc


def _numpy_centred(x: np.ndarray, ndim: int, inverse: bool) -> np.ndarray:
    axes = tuple(range(-ndim, 0))
    f = np.fft.ifftn if inverse else np.fft.fftn
    return np.fft.fftshift(f(np.fft.ifftshift(x, axes=axes), axes=axes, norm="ortho"), axes=axes)


@pytest.mark.parametrize("ndim,shape", [(1, (3, 7)), (2, (2, 6, 5)), (3, (2, 4, 5, 6))])
def test_matches_numpy_centred_fft_for_odd_and_even_sizes(ndim, shape):
    rng = np.random.default_rng(ndim)
    x = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    t = torch.from_numpy(x)
    np.testing.assert_allclose(ifftc(t, ndim).numpy(), _numpy_centred(x, ndim, True), atol=1e-5)
    np.testing.assert_allclose(fftc(t, ndim).numpy(), _numpy_centred(x, ndim, False), atol=1e-5)
    assert ifftc(t, ndim).dtype == torch.complex64
    np.testing.assert_allclose(fftc(ifftc(t, ndim), ndim).numpy(), x, atol=1e-5)


@pytest.mark.parametrize("n", [6, 7])
def test_forward_is_the_encoding_matrix_of_the_units_convention(n):
    x = torch.randn(n, dtype=torch.complex128)
    enc = torch.from_numpy(centered_dft(n))
    torch.testing.assert_close(fftc(x, 1), enc @ x)
    torch.testing.assert_close(ifftc(x, 1), enc.conj().T @ x)


def test_gradcheck_complex128():
    x = torch.randn(3, 4, dtype=torch.complex128, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: fftc(t, 2), (x,))
    assert torch.autograd.gradcheck(lambda t: ifftc(t, 1), (x,))


def test_bad_dimension_count_is_named():
    with pytest.raises(ValueError, match="last 1, 2 or 3"):
        fftc(torch.zeros(2, 2, dtype=torch.complex64), 4)
    with pytest.raises(ValueError, match="fewer than 3"):
        ifftc(torch.zeros(2, 2, dtype=torch.complex64), 3)
