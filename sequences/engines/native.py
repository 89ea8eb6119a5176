"""The adjoint mixing of dual amplitudes as one compiled loop (C, built on first use), with the
pure-torch version as the fallback and the reference.

``KeyMix``'s backward pass (``sequences/engines/mixing.py``) is ``d`` elementwise combinations
of the incoming dual gradients with the pulse's per-voxel coefficients, gathered to the source
rows. As torch operations that is about 25 passes over ``[d, states, voxels]`` complex arrays
per pulse (each operation reads and writes whole arrays); one loop reads the four incoming rows
of every output row once and writes it once, 3-4x faster on one CPU thread, where it was about
a quarter of the fast engine's forward+backward time with moment and duration gradients.

The C source below is compiled with the system's C compiler (``$CC`` or ``cc``) into a cache
folder (``$MRZERO_KERNEL_CACHE``, default ``~/.cache/mrzero/kernels``), keyed by the source, the
flags and the CPU (it is built for the machine it runs on); later imports load it in
milliseconds. Without a compiler, on a failed build, for tensors not on the CPU or with
``MRZERO_NATIVE=0`` the engine runs the torch version, which gives the same values to rounding
(``tests/sequences/test_native.py``). ``ctypes`` releases the GIL, so with several torch threads
the rows are split over as many Python threads.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import torch

log = logging.getLogger(__name__)

#: ``dual_h``: ``dH[e, j] = P(i_f[j]) - conj(Q(i_c[j]))`` and ``moved[e] += Re sum conj(F[j]) dH[e, j]``;
#: ``dual_z``: ``dZ[e, j] = R(i_z[j])``, with ``P = w0 gF + w3 gZ``, ``Q = w1 gF + w4 gZ``,
#: ``R = w2 gF + w5 gZ`` per voxel (``w``: ``[6, v]``; rows ``>= k`` of ``gF``/``gZ`` read as zero).
SOURCE = r"""
#include <stdint.h>
#include <string.h>

#define ROW(base, e, rows, r, v) ((base) + (((int64_t)(e) * (rows) + (r)) * (v)) * 2)

#define DUALS(T, SUFFIX)                                                                         \
void dual_h_##SUFFIX(int64_t d, int64_t j_f, int64_t k, int64_t v, int64_t j0, int64_t j1,      \
                     const T *gf, const T *gz, const int64_t *i_f, const int64_t *i_c,          \
                     const T *w, const T *f, const T *zero, T *gh, double *moved) {             \
    const T *restrict w0 = w, *restrict w1 = w + 2 * v;                                         \
    const T *restrict w3 = w + 6 * v, *restrict w4 = w + 8 * v;                                 \
    for (int64_t j = j0; j < j1; j++) {                                                         \
        int64_t kf = i_f[j], kc = i_c[j];                                                       \
        const T *restrict fj = f + j * v * 2;                                                   \
        for (int64_t e = 0; e < d; e++) {                                                       \
            const T *restrict a = (gf && kf < k) ? ROW(gf, e, k, kf, v) : zero;                 \
            const T *restrict b = (gz && kf < k) ? ROW(gz, e, k, kf, v) : zero;                 \
            const T *restrict c = (gf && kc < k) ? ROW(gf, e, k, kc, v) : zero;                 \
            const T *restrict g = (gz && kc < k) ? ROW(gz, e, k, kc, v) : zero;                 \
            T *restrict out = ROW(gh, e, j_f, j, v);                                            \
            T sum = 0;                                                                          \
            _Pragma("omp simd reduction(+:sum)")                                                \
            for (int64_t x = 0; x < v; x++) {                                                   \
                T ar = a[2*x], ai = a[2*x+1], br = b[2*x], bi = b[2*x+1];                       \
                T cr = c[2*x], ci = c[2*x+1], gr = g[2*x], gi = g[2*x+1];                       \
                T pr = w0[2*x] * ar - w0[2*x+1] * ai + w3[2*x] * br - w3[2*x+1] * bi;           \
                T pi = w0[2*x] * ai + w0[2*x+1] * ar + w3[2*x] * bi + w3[2*x+1] * br;           \
                T qr = w1[2*x] * cr - w1[2*x+1] * ci + w4[2*x] * gr - w4[2*x+1] * gi;           \
                T qi = w1[2*x] * ci + w1[2*x+1] * cr + w4[2*x] * gi + w4[2*x+1] * gr;           \
                T hr = pr - qr, hi = pi + qi;                                                   \
                out[2*x] = hr;                                                                  \
                out[2*x+1] = hi;                                                                \
                sum += fj[2*x] * hr + fj[2*x+1] * hi;                                           \
            }                                                                                   \
            if (moved) moved[e] += sum;                                                         \
        }                                                                                       \
    }                                                                                           \
}                                                                                               \
                                                                                                \
void dual_z_##SUFFIX(int64_t d, int64_t j_z, int64_t k, int64_t v, int64_t j0, int64_t j1,      \
                     const T *gf, const T *gz, const int64_t *i_z, const T *w, const T *zero,   \
                     T *go) {                                                                   \
    const T *restrict w2 = w + 4 * v, *restrict w5 = w + 10 * v;                                \
    for (int64_t j = j0; j < j1; j++) {                                                         \
        int64_t kz = i_z[j];                                                                    \
        for (int64_t e = 0; e < d; e++) {                                                       \
            const T *restrict a = (gf && kz < k) ? ROW(gf, e, k, kz, v) : zero;                 \
            const T *restrict b = (gz && kz < k) ? ROW(gz, e, k, kz, v) : zero;                 \
            T *restrict out = ROW(go, e, j_z, j, v);                                            \
            _Pragma("omp simd")                                                                 \
            for (int64_t x = 0; x < v; x++) {                                                   \
                T ar = a[2*x], ai = a[2*x+1], br = b[2*x], bi = b[2*x+1];                       \
                out[2*x] = w2[2*x] * ar - w2[2*x+1] * ai + w5[2*x] * br - w5[2*x+1] * bi;       \
                out[2*x+1] = w2[2*x] * ai + w2[2*x+1] * ar + w5[2*x] * bi + w5[2*x+1] * br;     \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
}

#define INJECT(T, SUFFIX)                                                                        \
void readout_duals_##SUFFIX(int64_t d, int64_t j_g, int64_t v, int64_t rows, int64_t j0, int64_t j1, \
                            const int64_t *row, const T *prod, const int64_t *which,            \
                            const T *decay, const T *row_factor, const T *voxel_factor,         \
                            T *gf, T *gg) {                                                     \
    for (int64_t j = j0; j < j1; j++) {                                                         \
        const T *restrict ej = decay + j * v;                                                   \
        if (gf) {                                                                               \
            const T *restrict b = prod + j * v * 2;                                             \
            T *restrict out = gf + row[j] * v * 2;                                              \
            T a = row_factor[j];                                                                \
            _Pragma("omp simd")                                                                 \
            for (int64_t x = 0; x < v; x++) {                                                   \
                out[2*x] += b[2*x] * ej[x] * a;                                                 \
                out[2*x+1] += b[2*x+1] * ej[x] * a;                                             \
            }                                                                                   \
        }                                                                                       \
        for (int64_t e = 0; e < d; e++) {                                                       \
            const T *restrict b = prod + (which[e] * j_g + j) * v * 2;                          \
            const T *restrict r = voxel_factor + e * v;                                         \
            T *restrict out = gg + (e * rows + row[j]) * v * 2;                                 \
            T a = row_factor[(e + 1) * j_g + j];                                                \
            _Pragma("omp simd")                                                                 \
            for (int64_t x = 0; x < v; x++) {                                                   \
                T c = ej[x] * r[x] * a;                                                         \
                out[2*x] += b[2*x] * c;                                                         \
                out[2*x+1] += b[2*x+1] * c;                                                     \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
}

DUALS(float, f32)
DUALS(double, f64)
INJECT(float, f32)
INJECT(double, f64)
"""

FLAGS = ("-O3", "-march=native", "-fopenmp-simd", "-fno-math-errno", "-shared", "-fPIC")
_SUFFIX = {torch.complex64: "f32", torch.complex128: "f64"}
#: The real type the loops use for the real factors of each complex type.
_REAL = {torch.complex64: torch.float32, torch.complex128: torch.float64}


def _cpu_identity() -> str:
    """What the compiled code depends on besides its source: architecture and CPU flags."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        flags = next((line for line in text.splitlines() if line.startswith(("flags", "Features"))), "")
    except OSError:
        flags = platform.processor()
    return f"{platform.machine()} {flags}"


def _cache_folders() -> list[Path]:
    """Where the compiled kernels are kept: ``$MRZERO_KERNEL_CACHE``, else the user's cache
    folder, then (when that cannot be written) a per-user folder in the temporary directory."""
    configured = os.environ.get("MRZERO_KERNEL_CACHE")
    if configured:
        return [Path(configured)]
    user = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return [user / "mrzero" / "kernels", Path(tempfile.gettempdir()) / f"mrzero-kernels-{os.getuid()}"]


def _build(compiler: str, folder: Path, key: str) -> Path:
    """The shared library for ``key`` in ``folder``, compiled unless it is there already."""
    path = folder / f"duals-{key}.so"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            source = Path(tmp) / "duals.c"
            source.write_text(SOURCE)
            built = Path(tmp) / "duals.so"
            subprocess.run([compiler, *FLAGS, str(source), "-o", str(built)], check=True, capture_output=True)
            os.replace(built, path)  # atomic: concurrent builders leave one complete file
    return path


@cache
def library() -> ctypes.CDLL | None:
    """The compiled kernels (built once per source, flags and CPU); None where they cannot be
    built or ``MRZERO_NATIVE=0`` (the callers then run torch operations)."""
    if os.environ.get("MRZERO_NATIVE", "1") == "0":
        return None
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        log.info("no C compiler (%s): the dual loops run as torch operations", os.environ.get("CC", "cc"))
        return None
    key = hashlib.sha256("\0".join([SOURCE, *FLAGS, compiler, _cpu_identity()]).encode()).hexdigest()[:20]
    lib = None
    for folder in _cache_folders():
        try:
            lib = ctypes.CDLL(str(_build(compiler, folder, key)))
            break
        except (OSError, subprocess.CalledProcessError):
            continue
    if lib is None:
        log.warning("the dual loops could not be compiled or loaded: they run as torch operations (slower)")
        return None
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    for suffix in _SUFFIX.values():
        getattr(lib, f"dual_h_{suffix}").argtypes = [i64] * 6 + [ptr] * 9
        getattr(lib, f"dual_z_{suffix}").argtypes = [i64] * 6 + [ptr] * 6
        getattr(lib, f"readout_duals_{suffix}").argtypes = [i64] * 6 + [ptr] * 8
    return lib


@cache
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mrzero-duals")


# a forked child has none of the parent's pool threads: it starts its own pools
os.register_at_fork(after_in_child=_pool.cache_clear)


def _address(x: torch.Tensor | None) -> int | None:
    return None if x is None else x.data_ptr()


def _split(rows: int, run) -> None:
    """``run(j0, j1, part)`` over ``rows`` output rows: at once on one torch thread, else in
    chunks on as many Python threads (``part`` numbers the chunk)."""
    workers = min(torch.get_num_threads(), rows)
    if workers <= 1:
        run(0, rows, 0)
        return
    bounds = [rows * i // workers for i in range(workers + 1)]
    futures = [_pool(workers).submit(run, bounds[i], bounds[i + 1], i) for i in range(workers)]
    for future in futures:
        future.result()


def usable(*tensors: torch.Tensor | None) -> bool:
    """Whether the compiled kernels take these tensors (CPU, complex64 or complex128, one dtype)."""
    present = [t for t in tensors if t is not None]
    dtype = present[0].dtype
    return (
        dtype in _SUFFIX
        and all(t.device.type == "cpu" and t.dtype == dtype for t in present)
        and library() is not None
    )


def dual_adjoint(
    g_gf: torch.Tensor | None,
    g_gz: torch.Tensor | None,
    weights: torch.Tensor,
    f: torch.Tensor,
    i_f: torch.Tensor,
    i_c: torch.Tensor,
    i_z: torch.Tensor,
    need_h: bool,
    need_z: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """``(dH, dZ, d moved)`` of ``KeyMix``'s backward pass by the compiled loops (see there):
    ``g_gf``/``g_gz`` ``[d, k, V]`` (one may be None), ``weights`` ``[6, V]`` (the three weights
    of ``dG_F'`` in P, Q, R, then those of ``dG_Z'``), ``f`` ``[J_f, V]``; indices ``>= k`` read
    zero rows. ``dH`` is computed when ``need_h`` (its entries also give ``d moved``, float64)."""
    lib = library()
    present = g_gf if g_gf is not None else g_gz
    d, k, v = present.shape
    suffix = _SUFFIX[present.dtype]
    gf = None if g_gf is None else torch.view_as_real(g_gf.resolve_conj().contiguous())
    gz = None if g_gz is None else torch.view_as_real(g_gz.resolve_conj().contiguous())
    w = torch.view_as_real(weights.resolve_conj().contiguous())
    zero = present.new_zeros(v)
    i_f, i_c, i_z = (i.to(torch.int64).contiguous() for i in (i_f, i_c, i_z))
    common = (_address(gf), _address(gz))
    g_h = g_z = moved = None
    if need_h:
        j_f = i_f.shape[0]
        fr = torch.view_as_real(f.resolve_conj().contiguous())
        g_h = present.new_empty(d, j_f, v)
        parts = torch.zeros(max(1, min(torch.get_num_threads(), j_f)), d, dtype=torch.float64)
        kernel = getattr(lib, f"dual_h_{suffix}")

        def run_h(j0: int, j1: int, part: int) -> None:
            kernel(d, j_f, k, v, j0, j1, *common, i_f.data_ptr(), i_c.data_ptr(), w.data_ptr(),
                   fr.data_ptr(), zero.data_ptr(), g_h.data_ptr(), parts[part].data_ptr())  # fmt: skip

        _split(j_f, run_h)
        moved = parts.sum(0)
    if need_z:
        j_z = i_z.shape[0]
        g_z = present.new_empty(d, j_z, v)
        kernel_z = getattr(lib, f"dual_z_{suffix}")

        def run_z(j0: int, j1: int, part: int) -> None:
            kernel_z(
                d, j_z, k, v, j0, j1, *common, i_z.data_ptr(), w.data_ptr(), zero.data_ptr(), g_z.data_ptr()
            )

        _split(j_z, run_z)
    return g_h, g_z, moved


def readout_duals(
    rows: torch.Tensor,
    products: torch.Tensor,
    which: list[int],
    decay: torch.Tensor,
    row_factor: torch.Tensor,
    voxel_factor: torch.Tensor,
    g_f: torch.Tensor | None,
    g_g: torch.Tensor | None,
) -> None:
    """A readout group's state and dual gradients added in place (``Readout``'s backward pass):
    ``g_f[rows[j]] += B_0[j] E[j] a_0[j]`` and ``g_g[e, rows[j]] += B_{which[e]}[j] E[j] a_{e+1}[j] r_e``
    for the group's products ``B`` (complex ``[P, J_g, V]``), its T2' factors ``E`` (real
    ``[J_g, V]``), per-state factors ``a`` (``[1 + d, J_g]``) and per-voxel ones ``r`` (``[d, V]``).
    ``rows`` are distinct (a group's rows of the states), so the rows can be split over threads;
    ``g_g`` is None without duals (``which`` empty)."""
    lib = library()
    d, j_g, v = len(which), rows.shape[0], decay.shape[1]
    real = _REAL[products.dtype]  # the loops read the real factors in the products' precision
    suffix = _SUFFIX[products.dtype]
    prod = torch.view_as_real(products.resolve_conj().contiguous())
    which_t = torch.tensor(which, dtype=torch.int64)
    rows = rows.to(torch.int64).contiguous()
    decay = decay.to(real).contiguous()
    row_factor = row_factor.to(real).contiguous()
    voxel_factor = voxel_factor.to(real).contiguous()
    gf = None if g_f is None else torch.view_as_real(g_f)
    gg = None if g_g is None else torch.view_as_real(g_g)
    total = 0 if g_g is None else g_g.shape[1]
    kernel = getattr(lib, f"readout_duals_{suffix}")
    pointers = (rows, prod, which_t, decay, row_factor, voxel_factor)

    def run(j0: int, j1: int, part: int) -> None:
        kernel(d, j_g, v, total, j0, j1, *(x.data_ptr() for x in pointers), _address(gf), _address(gg))

    _split(j_g, run)
