"""Bundle protocol.json files load through the typed loader: every shipped bundle's protocol is
accepted as written, and a mistyped or unknown key is refused naming the file and the dotted key."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mrzero.core.bundles import PROTOCOL_FILE, BundleError, read_protocol

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p.parent for p in ROOT.glob("*/**/bundles/*/protocol.json"))


def test_the_shipped_bundles_are_found():
    assert {p.name for p in SHIPPED} >= {"learned_gre", "t1_mapping", "roar_small"}


@pytest.mark.parametrize("bundle", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_protocol_loads_unchanged(bundle):
    assert read_protocol(bundle) == json.loads((bundle / PROTOCOL_FILE).read_text())


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: p["encoding"].update(n_samples="many"), "encoding.n_samples: expected int, got 'many'"),
        (lambda p: p["encoding"].update(n_samples=-1), "encoding.n_samples: expected a number >= 0, got -1"),
        (
            lambda p: p["trajectory"].update(fille="x.npy"),
            "unknown protocol key 'trajectory.fille'; trajectory",
        ),
        (lambda p: p.update(signature="xyz"), "signature: expected text matching [0-9a-f]{32}, got 'xyz'"),
        (lambda p: p["files"].pop("seq"), "files.seq: required protocol key is missing"),
        (lambda p: p.update(te_ms="3"), "te_ms: expected float | null, got '3'"),
    ],
)
def test_a_bad_protocol_is_refused_naming_the_file_and_the_key(tmp_path, edit, message):
    bundle = tmp_path / "b"
    shutil.copytree(ROOT / "sequences" / "bundles" / "learned_gre", bundle)
    protocol = json.loads((bundle / PROTOCOL_FILE).read_text())
    edit(protocol)
    (bundle / PROTOCOL_FILE).write_text(json.dumps(protocol))
    with pytest.raises(BundleError) as err:
        read_protocol(bundle)
    assert str(err.value).startswith(f"{bundle / PROTOCOL_FILE}: {message}")
