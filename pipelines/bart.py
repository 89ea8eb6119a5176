"""BART interoperability: ``.cfl/.hdr`` files and running Debian's ``bart`` command.

BART is the reference peer of the reconstruction tests and benchmarks. Its files are a text
header (``# Dimensions`` then the sizes of 16 dimensions) and raw little-endian complex64 data
in column-major order (first dimension fastest). ``write_cfl``/``read_cfl`` map a NumPy array
of shape ``(d0, d1, ...)`` to BART dimensions ``d0, d1, ...`` one to one.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

BART_DIMS = 16


class BartError(RuntimeError):
    """``bart`` is missing, failed, or wrote a file that cannot be read."""


def write_cfl(base: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as ``base.hdr`` + ``base.cfl`` (at most 16 dimensions)."""
    array = np.asarray(array)
    if array.ndim > BART_DIMS:
        raise BartError(f"BART files hold at most {BART_DIMS} dimensions, got {array.ndim}")
    dims = list(array.shape) + [1] * (BART_DIMS - array.ndim)
    Path(f"{base}.hdr").write_text("# Dimensions\n" + " ".join(map(str, dims)) + "\n")
    array.astype(np.complex64).ravel(order="F").tofile(f"{base}.cfl")


def read_cfl(base: str | Path) -> np.ndarray:
    """Read ``base.hdr`` + ``base.cfl``; trailing singleton dimensions are dropped."""
    lines = Path(f"{base}.hdr").read_text().splitlines()
    try:
        dims = [int(n) for n in lines[lines.index("# Dimensions") + 1].split()]
    except (ValueError, IndexError) as error:
        raise BartError(f"{base}.hdr has no readable '# Dimensions' line") from error
    while len(dims) > 1 and dims[-1] == 1:
        dims.pop()
    data = np.fromfile(f"{base}.cfl", dtype=np.complex64)
    if data.size != int(np.prod(dims)):
        raise BartError(f"{base}.cfl holds {data.size} values, its header promises {int(np.prod(dims))}")
    return data.reshape(dims, order="F")


def bart_available() -> bool:
    """Whether the ``bart`` command is on the PATH."""
    return shutil.which("bart") is not None


def run_bart(*args: str | Path, cwd: str | Path | None = None) -> str:
    """Run ``bart ARGS...`` and return its standard output; raise ``BartError`` on failure."""
    if not bart_available():
        raise BartError("the 'bart' command is not installed (Debian package 'bart')")
    result = subprocess.run(["bart", *map(str, args)], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        command = " ".join(map(str, args))
        raise BartError(f"bart {command} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout
