"""The compiled adjoint mixing of dual amplitudes (``sequences/engines/native.py``) against the
torch operations it replaces, and the engine's gradients with and without it."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace

import pytest
import torch
from test_merged_gradients import FIELDS, loss, phantom, spoiled_gre

from mrzero.sequences.engines import mixing, native
from mrzero.sequences.simulate import simulate

needs_compiler = pytest.mark.skipif(native.library() is None, reason="no C compiler to build the kernels")


def _case(dtype: torch.dtype, pruned: bool, seed: int = 3):
    """Incoming dual gradients of ``k`` merged rows, weights, states and source indices of a
    pulse with ``j`` transverse and ``j + 1`` longitudinal sources (merges included: indices repeat)."""
    g = torch.Generator().manual_seed(seed)
    d, k, v, j = 3, 7, 37, 6

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, dtype=dtype, generator=g)

    top = k + 1 if pruned else k  # index k: a pruned row (reads zero)
    index = lambda n: torch.randint(0, top, (n,), generator=g)  # noqa: E731
    i_f, i_c, i_z = index(j), index(j), index(j + 1)
    if pruned:
        i_f[0] = i_c[1] = i_z[2] = k
    return rand(d, k, v), rand(d, k, v), rand(6, v), rand(j, v), i_f, i_c, i_z


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
@pytest.mark.parametrize("pruned", [False, True], ids=["all-kept", "pruned"])
@pytest.mark.parametrize("missing", [None, "g_gf", "g_gz"])
@pytest.mark.parametrize("threads", [1, 2])
def test_compiled_dual_adjoint_matches_torch(dtype, pruned, missing, threads):
    g_gf, g_gz, weights, f, i_f, i_c, i_z = _case(dtype, pruned)
    g_gf, g_gz = (None if missing == "g_gf" else g_gf), (None if missing == "g_gz" else g_gz)
    reference = mixing.dual_adjoint(g_gf, g_gz, weights, f, i_f, i_c, i_z, pruned, True, True)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        compiled = native.dual_adjoint(g_gf, g_gz, weights, f, i_f, i_c, i_z, True, True)
    finally:
        torch.set_num_threads(before)
    rounding = 1e-5 if dtype == torch.complex64 else 1e-13
    for name, ours, ref in zip(("dH", "dZ", "d moved"), compiled, reference, strict=True):
        assert ours.shape == ref.shape, name
        assert float((ours - ref).abs().max()) <= rounding * float(ref.abs().max()), name
    # an independent element: dH of row 2 and dZ of row 0, written out
    gf = g_gf if g_gf is not None else torch.zeros_like(g_gz)
    gz = g_gz if g_gz is not None else torch.zeros_like(g_gf)
    zero_row = torch.zeros_like(gf[:, :1])
    gf, gz = torch.cat([gf, zero_row], 1), torch.cat([gz, zero_row], 1)
    w = weights
    p = w[0] * gf[:, i_f[2]] + w[3] * gz[:, i_f[2]]
    q = w[1] * gf[:, i_c[2]] + w[4] * gz[:, i_c[2]]
    r = w[2] * gf[:, i_z[0]] + w[5] * gz[:, i_z[0]]
    assert torch.allclose(compiled[0][:, 2], p - q.conj(), rtol=rounding, atol=rounding * 10)
    assert torch.allclose(compiled[1][:, 0], r, rtol=rounding, atol=rounding * 10)


def _gradients(monkeypatch: pytest.MonkeyPatch, compiled: bool) -> dict[str, torch.Tensor]:
    seq, ph = spoiled_gre(), phantom(True)
    if not compiled:
        monkeypatch.setattr(native, "usable", lambda *tensors: False)
    leaves = {name: getattr(seq, name).clone().requires_grad_(True) for name in FIELDS}
    loss(simulate(replace(seq, **leaves), ph, "fast", tolerance=0.0)).backward()
    return {name: leaf.grad for name, leaf in leaves.items()}


@needs_compiler
@pytest.mark.parametrize("threads", [1, 2])
def test_engine_gradients_are_the_same_with_and_without_the_compiled_kernels(monkeypatch, threads):
    """The merged-state case (float64, T2', moments varying along the readout and constant
    across it) with the compiled kernels (rows split over ``threads``) and the torch fallback."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with_kernels = _gradients(monkeypatch, compiled=True)
    finally:
        torch.set_num_threads(before)
    without = _gradients(monkeypatch, compiled=False)
    for name in FIELDS:
        scale = float(without[name].abs().max())
        assert float((with_kernels[name] - without[name]).abs().max()) <= 1e-12 * scale, name


def test_kernels_build_once_and_are_skipped_without_a_compiler(monkeypatch, tmp_path):
    monkeypatch.setenv("MRZERO_KERNEL_CACHE", str(tmp_path))
    build = native.library.__wrapped__  # uncached
    if build() is None:
        pytest.skip("no C compiler to build the kernels")
    (built,) = tmp_path.glob("duals-*.so")
    stamp = built.stat().st_mtime_ns
    assert build() is not None and built.stat().st_mtime_ns == stamp  # loaded, not rebuilt
    monkeypatch.setenv("CC", os.fspath(tmp_path / "no-such-compiler"))
    assert build() is None
    monkeypatch.setenv("CC", "cc")
    monkeypatch.setenv("MRZERO_NATIVE", "0")
    assert build() is None


@needs_compiler
def test_a_forked_child_splits_rows_over_threads_of_its_own():
    """The parent's pool threads do not exist in a forked child; the child must not wait on them."""
    case = _case(torch.complex64, pruned=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        expected = native.dual_adjoint(*case, True, True)  # the parent's pool now has threads
        pid = os.fork()
        if pid == 0:  # child: exit 0 only when the result is right
            try:
                got = native.dual_adjoint(*case, True, True)
                os._exit(0 if all(torch.equal(a, b) for a, b in zip(got, expected, strict=True)) else 1)
            finally:
                os._exit(2)
        deadline = time.monotonic() + 30
        while (status := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        if status[0] == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung on the parent's thread pool")
        assert os.waitstatus_to_exitcode(status[1]) == 0
    finally:
        torch.set_num_threads(before)


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
@pytest.mark.parametrize("threads", [1, 2])
def test_compiled_readout_gradients_add_into_their_rows(dtype, threads):
    """``g_f[rows] += B_0 E a_0`` and ``g_g[e, rows] += B_which[e] E a_(e+1) r_e``, written out;
    the T2' factors come in float64 whatever the products' precision."""
    g = torch.Generator().manual_seed(8)
    j, j_g, v, which = 9, 5, 23, [0, 2, 0]
    rows = torch.tensor([7, 1, 4, 0, 8])
    products = torch.randn(3, j_g, v, dtype=dtype, generator=g)
    decay = torch.rand(j_g, v, dtype=torch.float64, generator=g)
    row_factor = torch.randn(1 + len(which), j_g, dtype=torch.float64, generator=g)
    voxel_factor = torch.randn(len(which), v, dtype=torch.float64, generator=g)
    g_f = torch.randn(j, v, dtype=dtype, generator=g)
    g_g = torch.randn(len(which), j, v, dtype=dtype, generator=g)
    expected_f, expected_g = g_f.clone(), g_g.clone()
    real = decay.to(products.real.dtype)
    expected_f[rows] += products[0] * real * row_factor[0, :, None].to(real.dtype)
    for e, p in enumerate(which):
        factor = real * row_factor[e + 1, :, None].to(real.dtype) * voxel_factor[e].to(real.dtype)
        expected_g[e, rows] += products[p] * factor
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        native.readout_duals(rows, products, which, decay, row_factor, voxel_factor, g_f, g_g)
    finally:
        torch.set_num_threads(before)
    rounding = 1e-5 if dtype == torch.complex64 else 1e-13
    assert torch.allclose(g_f, expected_f, rtol=rounding, atol=rounding)
    assert torch.allclose(g_g, expected_g, rtol=rounding, atol=rounding)
