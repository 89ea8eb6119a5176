"""The explicit registry of named pipelines: the only names a network client can reach.

Pipelines register themselves with ``@register(name, description, parameters)`` in their own
modules, and ``pipelines/catalog.py`` imports each of those modules by its fixed name. A client's
config name is only ever looked up in this dictionary: nothing it sends imports a module or reads a
path. ``parameters`` is the pipeline's declared JSON parameters (``pipelines/parameters.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from mrzero.pipelines.base import Context, Stage
from mrzero.pipelines.parameters import PipelineParameters, parse_parameters

#: The pipeline an empty or absent config name selects.
DEFAULT_PIPELINE = "cartesian"


@dataclass(frozen=True)
class PipelineSpec:
    name: str
    description: str
    run: Stage
    #: The frozen dataclass of the JSON parameters the pipeline accepts.
    parameters: type = PipelineParameters
    #: Nothing to reconstruct: a server keeps the raw data and starts no worker for it.
    journal_only: bool = False

    def parse(self, raw: dict[str, Any]) -> Any:
        """The client's JSON parameters, validated (``ParameterError`` naming the parameter)."""
        return parse_parameters(self.parameters, raw, self.name)


class UnknownPipelineError(KeyError):
    """A config name that is not in the registry; the message names the known pipelines."""

    def __init__(self, name: str, known: list[str]):
        super().__init__(name)
        self.name, self.known = name, known

    def __str__(self) -> str:
        return f"unknown pipeline {self.name!r}; known pipelines: {', '.join(self.known)}"


_REGISTRY: dict[str, PipelineSpec] = {}


def register(
    name: str, description: str, parameters: type = PipelineParameters, journal_only: bool = False
) -> Callable[[Stage], Stage]:
    """Decorator: make ``run`` reachable under ``name``, accepting the JSON ``parameters`` declared;
    ``journal_only``: the pipeline makes nothing of the data (see :class:`PipelineSpec`)."""

    def add(run: Stage) -> Stage:
        if name in _REGISTRY:
            raise ValueError(f"pipeline {name!r} registered twice")
        _REGISTRY[name] = PipelineSpec(
            name, description, _validating(run, name, parameters), parameters, journal_only
        )
        return run

    return add


def _validating(run: Stage, name: str, parameters: type) -> Stage:
    """``run`` after binding the context's JSON parameters, validated against ``parameters``, to
    ``ctx.params`` (whatever name the context carries: this is the pipeline that runs)."""

    def start(items: Iterable[Any], ctx: Context) -> Iterator[Any]:
        ctx.bind_params(parse_parameters(parameters, ctx.parameters, name))
        yield from run(items, ctx)

    return start


def _load_catalog() -> None:
    import mrzero.pipelines.catalog  # noqa: F401  (fixed module: registers the shipped mrzero.pipelines)


def names() -> list[str]:
    """Registered pipeline names, sorted."""
    _load_catalog()
    return sorted(_REGISTRY)


def get(name: str | None) -> PipelineSpec:
    """The pipeline for a client's config name; empty/None selects ``DEFAULT_PIPELINE``."""
    _load_catalog()
    key = (name or "").strip() or DEFAULT_PIPELINE
    try:
        return _REGISTRY[key]
    except KeyError:
        raise UnknownPipelineError(key, sorted(_REGISTRY)) from None
