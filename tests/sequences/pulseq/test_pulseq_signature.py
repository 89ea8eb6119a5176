"""Pulseq signatures computed from the bytes, checked against MATLAB's and pypulseq's own hashes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pulseq_samples import cartesian_gre

from mrzero.sequences.pulseq.export import export
from mrzero.sequences.pulseq.signature import (
    SignatureError,
    computed_signature,
    stored_signature,
    verified_signature,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "pulseq"


@pytest.mark.parametrize(
    "name, expected",
    [("gre_matlab", "30d78663e23869d85a1aef674c6568a1"), ("fid_matlab", "f71f558e9600076d1afc861c13a182f4")],
)
def test_matlab_signatures_verify(name, expected):
    assert verified_signature(DATA / f"{name}.seq") == expected


def test_export_signature_is_the_files(tmp_path):
    result = export(cartesian_gre(n=4), tmp_path / "gre.seq")
    assert computed_signature(result.path) == stored_signature(result.path) == result.signature


def test_edited_and_unsigned_files_are_refused(tmp_path):
    edited = tmp_path / "edited.seq"
    shutil.copy(DATA / "fid_matlab.seq", edited)
    edited.write_text(edited.read_text().replace("Name fid", "Name fix"))
    with pytest.raises(SignatureError, match="edited after it was signed"):
        verified_signature(edited)
    unsigned = tmp_path / "unsigned.seq"
    unsigned.write_text(edited.read_text().split("\n[SIGNATURE]")[0])
    with pytest.raises(SignatureError, match="no \\[SIGNATURE\\] section"):
        computed_signature(unsigned)
    weird = tmp_path / "sha.seq"
    weird.write_text(edited.read_text().replace("Type md5", "Type sha256"))
    with pytest.raises(SignatureError, match="'sha256' is not supported"):
        stored_signature(weird)
