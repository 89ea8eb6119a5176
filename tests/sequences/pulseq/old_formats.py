"""Rewrite pypulseq's v1.5 output in the older v1.4.1 format that MATLAB wrote for years.

Used to build small files that reproduce what real old files do to readers: no RF ``use``
field, unreferenced library events, soft delays and triggers.
"""

from __future__ import annotations

import re


def _rewrite_rows(text: str, section: str, rewrite) -> str:
    """Apply ``rewrite(fields) -> fields`` to every data row of ``section``."""
    match = re.search(rf"^\[{section}\][ \t]*\n(.*?)(?=^\s*$|^\[|^#)", text, re.MULTILINE | re.DOTALL)
    if match is None:
        return text
    rows = [" ".join(rewrite(row.split())) for row in match.group(1).splitlines() if row.strip()]
    return text[: match.start(1)] + "\n".join(rows) + "\n" + text[match.end(1) :]


def as_v141(text: str, unused_arbitrary_gradient: bool = False) -> str:
    """The v1.5 file ``text`` as a v1.4.1 file (RF without ``use``/centre/ppm, ADC without ppm).

    ``unused_arbitrary_gradient`` adds a ``[GRADIENTS]`` row no block refers to, as MATLAB
    leaves behind after ``modGradAxis``/``setBlock``.
    """
    text = re.sub(r"^minor 5$", "minor 4", text, flags=re.MULTILINE)
    text = re.sub(r"^revision \d+$", "revision 1", text, flags=re.MULTILINE)
    text = text.split("\n[SIGNATURE]")[0] + "\n"
    text = _rewrite_rows(text, "RF", lambda f: [f[0], f[1], f[2], f[3], f[4], f[6], f[9], f[10]])
    text = _rewrite_rows(text, "ADC", lambda f: [f[0], f[1], f[2], f[3], f[6], f[7]])
    text = _rewrite_rows(text, "GRADIENTS", lambda f: [f[0], f[1], f[4], f[5], f[6]])
    if unused_arbitrary_gradient:
        used = [int(m) for m in re.findall(r"^\s*(\d+)\s", _section(text, "TRAP"), re.MULTILINE)]
        row = f"{max(used) + 1} 1000 1 0 0\n"
        text = text.replace("[TRAP]", "[GRADIENTS]\n" + row + "\n[TRAP]", 1)
    return text


def _section(text: str, name: str) -> str:
    match = re.search(rf"^\[{name}\][ \t]*\n(.*?)(?=^\s*$|^\[)", text, re.MULTILINE | re.DOTALL)
    return match.group(1) if match else ""
