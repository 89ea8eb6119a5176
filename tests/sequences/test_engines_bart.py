"""Both engines against BART's exact extended-phase-graph signals (Debian's ``bart epg``).

BART's FLASH mode (``-F``) samples right after each pulse with ideal (``-s 0``) or RF
(``-s 1``: quadratic phase with a 50 deg increment, as found by matching) spoiling and one
dephasing order per TR; its bSSFP mode (``-B``)
samples at TE. Its phase conventions differ from ours, so magnitudes are compared.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from engine_cases import ENGINE_OPTIONS, bssfp, one_voxel, spoiled_gre_fid

from mrzero.sequences.simulate import simulate

pytestmark = pytest.mark.needs_bart
ENGINES = sorted(ENGINE_OPTIONS)


def read_cfl(base: Path) -> np.ndarray:
    """A BART ``.cfl/.hdr`` pair: dimensions from the header, raw complex64, column-major."""
    lines = (base.with_suffix(".hdr")).read_text().splitlines()
    dims = [int(d) for d in lines[lines.index("# Dimensions") + 1].split()]
    data = np.fromfile(base.with_suffix(".cfl"), dtype=np.complex64)
    return data.reshape(dims, order="F")


def bart_epg(tmp_path: Path, *args: str) -> np.ndarray:
    """Run ``bart epg ARGS signal states`` and return the signal per pulse."""
    if shutil.which("bart") is None:
        pytest.fail("bart is not installed: `apt-get install bart` (Debian) is a test dependency")
    out = tmp_path / "signal"
    subprocess.run(
        ["bart", "epg", *args, str(out), str(tmp_path / "states")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return read_cfl(out).reshape(-1)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("spoiling", [0, 1])
def test_spoiled_flash_matches_bart(tmp_path, engine, spoiling):
    t1, t2, tr, flip_deg, n = 0.8, 0.06, 8e-3, 25.0, 120
    ref = bart_epg(
        tmp_path,
        "-F",
        "-1",
        str(t1),
        "-2",
        str(t2),
        "-r",
        str(tr),
        "-e",
        str(tr / 2),
        "-f",
        str(flip_deg),
        "-s",
        str(spoiling),
        "-n",
        str(n),
    )
    assert ref.shape == (n,)
    # ideal spoiling: transverse magnetisation dies before each pulse (T2 << TR reproduces it)
    phantom = one_voxel(t1=t1, t2=t2 if spoiling else 1e-4)
    seq = spoiled_gre_fid(n, math.radians(flip_deg), tr, increment_deg=50.0)
    ours = simulate(seq, phantom, engine, **ENGINE_OPTIONS[engine])[0].abs().numpy()
    np.testing.assert_allclose(ours, np.abs(ref), atol=1e-4, rtol=0)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("flip_deg", "offres_hz"), [(30.0, 0.0), (50.0, 15.0), (15.0, -40.0)])
def test_bssfp_steady_state_matches_bart(tmp_path, engine, flip_deg, offres_hz):
    t1, t2, tr, n = 0.4, 0.1, 6e-3, 500
    ref = bart_epg(
        tmp_path,
        "-B",
        "-1",
        str(t1),
        "-2",
        str(t2),
        "-r",
        str(tr),
        "-e",
        str(tr / 2),
        "-f",
        str(flip_deg),
        "-o",
        str(offres_hz),
        "-n",
        "4000",
    )
    signal = simulate(
        bssfp(n, math.radians(flip_deg), tr),
        one_voxel(t1=t1, t2=t2, b0=offres_hz),
        engine,
        **ENGINE_OPTIONS[engine],
    )[0]
    assert abs(float(signal[-1].abs()) - float(np.abs(ref[-1]))) < 1e-4
    assert abs(float(signal[-2].abs()) - float(np.abs(ref[-2]))) < 1e-4
    assert torch.isfinite(signal).all()
