"""BART ``.cfl/.hdr`` files: round trip, BART's own reading of our files, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from mrzero.pipelines.bart import BartError, read_cfl, run_bart, write_cfl


def test_cfl_round_trip_keeps_shape_order_and_values(tmp_path):
    array = (np.arange(24) + 1j * np.arange(24)[::-1]).reshape(2, 3, 4).astype(np.complex64)
    write_cfl(tmp_path / "a", array)
    assert (tmp_path / "a.hdr").read_text().splitlines()[1].split()[:4] == ["2", "3", "4", "1"]
    np.testing.assert_array_equal(read_cfl(tmp_path / "a"), array)


@pytest.mark.needs_bart
def test_bart_reads_our_files_column_major(tmp_path):
    array = np.arange(6, dtype=np.complex64).reshape(2, 3)
    write_cfl(tmp_path / "a", array)
    run_bart("transpose", "0", "1", "a", "b", cwd=tmp_path)
    np.testing.assert_array_equal(read_cfl(tmp_path / "b"), array.T)


def test_truncated_data_and_bad_headers_are_reported(tmp_path):
    write_cfl(tmp_path / "a", np.ones((4, 4), np.complex64))
    (tmp_path / "a.cfl").write_bytes(b"\0" * 8)
    with pytest.raises(BartError, match="holds 1 values, its header promises 16"):
        read_cfl(tmp_path / "a")
    (tmp_path / "a.hdr").write_text("nonsense\n")
    with pytest.raises(BartError, match="no readable '# Dimensions' line"):
        read_cfl(tmp_path / "a")
    with pytest.raises(BartError, match="failed"):
        run_bart("fft", "-u", "3", "missing", "out", cwd=tmp_path)
