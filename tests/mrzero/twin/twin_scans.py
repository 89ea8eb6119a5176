"""Digital-twin scans shared by the scanner tests, simulated once per session and argument set."""

from __future__ import annotations

from pathlib import Path

from mrzero.sequences.digital_twin import SHIPPED_BUNDLES, TwinScan, twin_scan

#: Names of the shipped bundles (``sequences/bundles``).
SHIPPED = sorted(p.parent.name for p in SHIPPED_BUNDLES.glob("*/protocol.json"))

_SCANS: dict[tuple, TwinScan] = {}


def scan_of(bundle: Path, coils: int = 1, snr: float | None = None, **options) -> TwinScan:
    """The twin scan of ``bundle`` (simulated once per session and argument set)."""
    plain = tuple(sorted((k, v if isinstance(v, str | int | float) else id(v)) for k, v in options.items()))
    key = (str(bundle), coils, snr, plain)
    if key not in _SCANS:
        _SCANS[key] = twin_scan(bundle, n_coils=coils, snr=snr, **options)
    return _SCANS[key]
