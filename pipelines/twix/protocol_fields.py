"""Looking up fields of a twix protocol (twixtools' parsed ``hdr`` dict) by dotted path.

The converter reads a few dozen protocol fields, some required and most optional. Spelling
each lookup as ``"MeasYaps.sKSpace.lBaseResolution"`` keeps the source readable and lets the
error for a missing required field name exactly the field that is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mrzero.pipelines.twix.reader import TwixError

_MISSING = object()


class Protocol:
    """Read-only view of one measurement's protocol buffers (``MeasYaps``, ``Meas``, ``Dicom``, ...)."""

    def __init__(self, hdr: dict[str, Any], path: Path):
        self.hdr, self.path = hdr, path

    def get(self, dotted: str, default: Any = None) -> Any:
        """The value at ``dotted`` (``a.b.0.c``: dict keys and list indices), or ``default``.

        Empty strings (twixtools' value for parameters that are declared but unset) count as
        missing.
        """
        node: Any = self.hdr
        for key in dotted.split("."):
            if isinstance(node, dict):
                node = node.get(key, _MISSING)
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                node = _MISSING
            if node is _MISSING:
                return default
        return default if node == "" else node

    def number(self, dotted: str, default: float | None = None) -> float | None:
        """A numeric field, or ``default`` when absent or not a number."""
        value = self.get(dotted)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return default
        return float(value)

    def require(self, dotted: str, why: str) -> float:
        """A numeric field the conversion cannot do without; :class:`TwixError` names it if absent."""
        value = self.number(dotted)
        if value is None:
            raise TwixError(self.path, f"protocol lacks {dotted} (needed for {why})")
        return value

    def first(self, *dotted: str, default: Any = None) -> Any:
        """The value of the first of ``dotted`` that is present."""
        for candidate in dotted:
            value = self.get(candidate)
            if value is not None:
                return value
        return default
