"""A pre-scan of a ``.seq`` file's text: size limits and references, before pypulseq parses it.

pypulseq's reader reports a broken file with a bare ``KeyError``/``ValueError`` and no position,
and reads any size (a 256,000-block file took 191 s and 7.4 GB). This scan is linear in the
text and cheap: it refuses files beyond :class:`ImportLimits` with the numbers and the option
that raises the limit, and broken files with the line and block at fault: a ``[BLOCKS]`` row
that is not eight integers, a block referring to an RF, gradient, ADC, delay or extension the
file does not define, or an event referring to a shape the ``[SHAPES]`` section lacks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class PulseqFileError(ValueError):
    """The file is broken or beyond the import's limits; the message names the line or block."""


@dataclass(frozen=True)
class ImportLimits:
    """What the import accepts; a larger file is refused before it is parsed."""

    max_blocks: int = 200_000
    max_samples: int = 4_000_000  # ADC samples in the whole file
    max_memory_gb: float = 4.0  # estimate of the model's working memory (repetitions x events)


#: Bytes per (repetition, event) cell while the model is built (float64 bounds, areas and
#: moments on three axes, the float32 tensors and temporaries).
BYTES_PER_CELL = 160


@dataclass
class FileFacts:
    """What the scan found: version, block count and the model's size."""

    version: tuple[int, int, int]
    n_blocks: int
    n_samples: int
    n_rf: int
    max_samples_between_rf: int

    @property
    def memory_gb(self) -> float:
        return (self.n_rf + 1) * (self.max_samples_between_rf + 2) * BYTES_PER_CELL / 1e9


def _sections(text: str) -> dict[str, list[tuple[int, list[str]]]]:
    """Data rows (line number, fields) of every section, comments and blank lines dropped."""
    sections: dict[str, list[tuple[int, list[str]]]] = {}
    current = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.split("#", 1)[0].strip()
        if not stripped:
            continue
        if stripped.startswith("[") or stripped.startswith("extension "):
            current = stripped
            sections.setdefault(current, [])
        elif current is not None:
            sections[current].append((number, stripped.split()))
    return sections


def _version(rows: list[tuple[int, list[str]]]) -> tuple[int, int, int]:
    values = {f[0]: f[1] for _, f in rows if len(f) == 2}
    try:
        return int(values["major"]), int(values["minor"]), int(values.get("revision", "0").split(".")[0])
    except (KeyError, ValueError) as err:
        raise PulseqFileError("the [VERSION] section must give 'major' and 'minor' as integers") from err


def _ids(rows: list[tuple[int, list[str]]], name: str) -> dict[int, tuple[int, list[str]]]:
    out = {}
    for number, fields in rows:
        try:
            out[int(fields[0])] = (number, fields)
        except ValueError as err:
            raise PulseqFileError(
                f"line {number}: {name} row {' '.join(fields)!r} must start with an integer id"
            ) from err
    return out


def _shape_ids(rows: list[tuple[int, list[str]]]) -> set[int]:
    return {int(f[1]) for _, f in rows if f[0] == "shape_id" and len(f) == 2 and f[1].isdigit()}


def scan(text: str, limits: ImportLimits) -> FileFacts:
    """Check ``text`` against ``limits`` and its own references; raise :class:`PulseqFileError`."""
    sections = _sections(text)
    if "[BLOCKS]" not in sections:
        raise PulseqFileError("not a Pulseq file (no [BLOCKS] section)")
    version = _version(sections.get("[VERSION]", []))
    blocks = sections["[BLOCKS]"]
    if len(blocks) > limits.max_blocks:
        raise PulseqFileError(
            f"the file has {len(blocks)} blocks, more than the import's limit of "
            f"{limits.max_blocks} (raise it with max_blocks / --max-blocks; pypulseq "
            "needs about 0.75 ms and 30 kB per block)"
        )
    rf = _ids(sections.get("[RF]", []), "[RF]")
    grads = _ids(sections.get("[GRADIENTS]", []) + sections.get("[TRAP]", []), "gradient")
    adc = _ids(sections.get("[ADC]", []), "[ADC]")
    delays = _ids(sections.get("[DELAYS]", []), "[DELAYS]")
    extensions = _ids(sections.get("[EXTENSIONS]", []), "[EXTENSIONS]")
    shapes = _shape_ids(sections.get("[SHAPES]", []))
    old = version < (1, 4, 0)
    columns = (
        ("RF", 2, rf, "[RF]"),
        ("GX", 3, grads, "[GRADIENTS]/[TRAP]"),
        ("GY", 4, grads, "[GRADIENTS]/[TRAP]"),
        ("GZ", 5, grads, "[GRADIENTS]/[TRAP]"),
        ("ADC", 6, adc, "[ADC]"),
        ("EXT", 7, extensions, "[EXTENSIONS]"),
    )
    n_samples = n_rf = run = longest = 0
    for number, fields in blocks:
        try:
            values = [int(v) for v in fields]
        except ValueError:
            values = []
        if len(values) != 8 or min(values) < 0:
            raise PulseqFileError(
                f"line {number}: [BLOCKS] row {' '.join(fields)!r} must be eight "
                "non-negative integers (NUM DUR RF GX GY GZ ADC EXT)"
            )
        block = values[0]
        if old and values[1] and values[1] not in delays:
            raise PulseqFileError(
                f"line {number}: block {block} refers to delay {values[1]}, which the "
                "[DELAYS] section does not define"
            )
        for name, col, known, where in columns:
            if values[col] and values[col] not in known:
                raise PulseqFileError(
                    f"line {number}: block {block} refers to {name} event {values[col]}, "
                    f"which the {where} section does not define"
                )
        if values[2]:
            n_rf += 1
            longest, run = max(longest, run), 0
        if values[6]:
            count = int(float(adc[values[6]][1][1]))
            n_samples += count
            run += count
    longest = max(longest, run)
    _check_shapes(rf, grads, shapes, version)
    facts = FileFacts(version, len(blocks), n_samples, n_rf, longest)
    if n_samples > limits.max_samples:
        raise PulseqFileError(
            f"the file acquires {n_samples} ADC samples, more than the import's limit of "
            f"{limits.max_samples} (raise it with max_samples / --max-samples)"
        )
    if facts.memory_gb > limits.max_memory_gb:
        raise PulseqFileError(
            f"the model of this file ({n_rf} RF pulses x up to {longest} samples between "
            f"two pulses) needs about {facts.memory_gb:.1f} GB, more than the import's "
            f"limit of {limits.max_memory_gb:.1f} GB (raise it with max_memory_gb / "
            "--max-memory-gb)"
        )
    return facts


def _check_shapes(rf: dict, grads: dict, shapes: set[int], version: tuple[int, int, int]) -> None:
    """Every shape an RF or arbitrary gradient refers to exists (id 0: none, or the default raster)."""
    rf_cols = (2, 3) if version < (1, 4, 0) else (2, 3, 4)
    grad_cols = (2,) if version < (1, 4, 0) else ((4, 5) if version >= (1, 5, 0) else (2, 3))
    for kind, rows, cols in (("RF", rf, rf_cols), ("gradient", grads, grad_cols)):
        for event, (number, fields) in rows.items():
            if kind == "gradient" and len(fields) == 6:  # a trapezoid row: no shapes
                continue
            for col in cols:
                if col >= len(fields) or not re.fullmatch(r"\d+", fields[col]):
                    raise PulseqFileError(
                        f"line {number}: {kind} event {event} has no integer shape id in "
                        f"column {col + 1} ({' '.join(fields)!r})"
                    )
                shape = int(fields[col])
                if shape and shape not in shapes:
                    raise PulseqFileError(
                        f"line {number}: {kind} event {event} refers to shape {shape}, "
                        "which the [SHAPES] section does not define"
                    )
