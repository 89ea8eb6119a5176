"""Declared JSON parameters of the pipelines: one frozen dataclass per pipeline, checked on arrival.

A client (FIRE's ``{"parameters": {...}}``, ``mrzero send --parameters``, a Gadgetron node's
properties) sends a flat JSON object. Each registered pipeline declares the keys it accepts as a
frozen dataclass of fields made with ``parameter`` (type, default, range or choices, help), and
``core/config.py`` loads the client's object into it: an unknown key or an invalid value ends the
scan with an error text naming the parameter, the value and what is allowed. Stages read the
validated values from ``ctx.params`` (``pipelines/base.py``), never from the raw dict.

How a pipeline declares a parameter, next to its registration (``pipelines/registry.py``)::

    from dataclasses import dataclass
    from typing import Literal

    from mrzero.pipelines.parameters import ImageParameters, parameter

    @dataclass(frozen=True)
    class CartesianParameters(ImageParameters):
        partial_fourier: Literal["pocs", "homodyne", "zero_fill"] = parameter(
            "zero_fill", "how the unsampled part of partial-Fourier k-space is filled")
        coil_compression: int = parameter(0, "virtual coils to compress to (0: off)", ge=0)

    cartesian = register("cartesian", "...", CartesianParameters)(chain(...))

and a stage reads ``ctx.params.coil_compression`` (an ``int >= 0`` by then). Choices are
``Literal`` types; ranges are ``ge``/``gt``/``le``/``lt``, other checks ``rule=(what, predicate)``
and text ``pattern=``; ``X | None`` with default ``None`` means "not given" (the stage picks,
e.g. from the bundle). Groups of parameters that a shared
stage reads are dataclasses below (``CoilParameters`` for ``combine_stage`` ...); a pipeline
inherits the groups of the stages it chains, and may redeclare a field to change its default.
``mrzero pipelines`` and ``docs/pipelines.md`` list every declaration (``parameter_docs``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

from mrzero.core.bundles import NAME_PATTERN
from mrzero.core.config import ConfigError, FieldDoc, describe, load, setting
from mrzero.pipelines.base import PipelineError

#: Largest ``series_index``. MRD's ``ImageHeader.image_series_index`` is a uint16 (at most 65535),
#: and ``roar`` writes its S0 and R2* maps to ``series_index + 1`` and ``+ 2``; one limit for every
#: pipeline keeps every series a scan produces inside the uint16 and the same JSON valid everywhere.
SERIES_INDEX_MAX = 65533


class ParameterError(PipelineError):
    """A client's JSON parameter is unknown or invalid; the message names it, its value, what is allowed."""


def parameter(default: Any, help: str, **bounds: Any) -> Any:
    """A declared JSON parameter: default, one line of help, and the bounds of ``core.config.setting``."""
    return setting(default, help, **bounds)


@dataclass(frozen=True)
class PipelineParameters:
    """What every pipeline accepts: FIRE's pipeline choice and the bundle a scan names."""

    config: str | None = parameter(None, "FIRE: the pipeline's name (selects the pipeline)")
    customconfig: str | None = parameter(None, "FIRE: a pipeline name that wins over config")
    bundle: str | None = parameter(
        None,
        "deployed bundle to reconstruct with (default: the header's Pulseq signature)",
        pattern=NAME_PATTERN.pattern,
    )


@dataclass(frozen=True)
class PrewhitenParameters(PipelineParameters):
    """``prewhiten_stage`` (``pipelines/stages/noise.py``)."""

    prewhiten: bool = parameter(True, "whiten the coils with the noise scans' covariance")


@dataclass(frozen=True)
class TriggerParameters(PipelineParameters):
    """``accumulate_stage`` (``pipelines/stages/accumulate.py``)."""

    trigger: Literal["slice", "contrast", "phase", "repetition", "set", "average", "segment", "none"] = (
        parameter("repetition", "counter whose change emits all open images ('none': at the end of the scan)")
    )


@dataclass(frozen=True)
class CoilParameters(PipelineParameters):
    """``combine_stage`` (``pipelines/stages/combine.py``)."""

    combine: Literal["rss", "adaptive"] = parameter(
        "rss", "coil combination: root-sum-of-squares or adaptive (Walsh)"
    )
    adaptive_kernel: int = parameter(
        7, "smoothing width of the adaptive combination", ge=1, le=63, rule=("odd", lambda v: v % 2 == 1)
    )


@dataclass(frozen=True)
class SeriesParameters(PipelineParameters):
    """The series number of the images a pipeline returns."""

    series_index: int = parameter(1, "MRD image_series_index of the images", ge=0, le=SERIES_INDEX_MAX)


@dataclass(frozen=True)
class OutputParameters(SeriesParameters):
    """``scale_stage`` and ``output_stage``: one scale for the series, 16-bit or float images."""

    scale: float | Literal["auto", "dft"] | None = parameter(
        None, "image scale: a factor, 'auto' or 'dft' (default 'auto' for uint16 output, 1 for float)", gt=0
    )
    output: Literal["uint16", "float"] = parameter("uint16", "image data type: 16-bit magnitude or float")


@dataclass(frozen=True)
class ImageParameters(OutputParameters, CoilParameters, TriggerParameters, PrewhitenParameters):
    """The Cartesian image chain: prewhitening, accumulation, coil combination, scaling, output."""


#: The keys every pipeline accepts (``PipelineParameters``).
COMMON_PARAMETERS = frozenset(f.name for f in fields(PipelineParameters))


def parse_parameters(schema: type, raw: dict[str, Any], pipeline: str) -> Any:
    """The client's JSON ``raw`` loaded into ``schema``; ``ParameterError`` saying what is wrong."""
    try:
        return load(schema, raw, kind="parameter")
    except ConfigError as exc:
        if exc.accepted:
            raise ParameterError(
                f"pipeline {pipeline!r}: unknown JSON parameter {exc.path!r} (= {raw[exc.path]!r}); "
                f"accepted: {', '.join(exc.accepted)}"
            ) from None
        raise ParameterError(f"pipeline {pipeline!r}: JSON parameter {exc}") from None


def parameter_docs(schema: type) -> list[FieldDoc]:
    """The declared parameters of a pipeline (name, type, default, range, help), sorted by name."""
    return sorted(describe(schema), key=lambda d: d.name)
