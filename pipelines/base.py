"""The pipeline contract shared by the server, offline reprocessing and the Gadgetron adapter.

A *stage* is a generator function ``stage(items, ctx) -> iterator`` that consumes an iterator
of items (MRD acquisitions, waveforms, buffers, images) and yields items, in the spirit of
Gadgetron's gadgets. A *pipeline* is a stage whose input is the raw MRD stream (acquisitions
and waveforms, in arrival order) and whose output is ``ismrmrd.Image`` objects, yielded as soon
as they are ready. ``chain`` composes stages left to right.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import ismrmrd

Stage = Callable[[Iterable[Any], "Context"], Iterator[Any]]


class PipelineError(RuntimeError):
    """A pipeline cannot process its input; the message is sent to the client as it is."""


@dataclass
class Context:
    """What a pipeline knows about its connection besides the data items."""

    header: ismrmrd.xsd.ismrmrdHeader
    #: The client's JSON parameters (FIRE: ``{"parameters": {...}}`` flattened to the inner dict), as
    #: sent; stages read the validated ``params`` instead.
    parameters: dict[str, Any] = field(default_factory=dict)
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("pipelines"))
    #: Sends a text (log) message to the client; a no-op offline.
    notify: Callable[[str], None] = lambda text: None
    #: Name the pipeline was selected by (after aliasing/overrides), for image meta and logs.
    pipeline_name: str = ""
    #: The site's bundle store (``sequences/bundle.py``), where MRzero pipelines find a scan's
    #: trajectory and head; chosen by the server's operator, never by a client. None: no store.
    bundle_store: Path | None = None
    #: Torch device the site's operator chose for pipelines (``mrzero serve --device``,
    #: ``MRZERO_DEVICE``): ``cpu``, ``cuda`` or ``cuda:N``. None: a pipeline picks (CUDA when present).
    device: str | None = None

    @cached_property
    def params(self) -> Any:
        """The client's ``parameters``, validated: a frozen dataclass (``pipelines/parameters.py``).
        A registered pipeline binds its own declaration when it starts (``bind_params``); a stage
        run on its own validates against the pipeline ``pipeline_name`` (the default when empty).
        Raises ``ParameterError`` naming an unknown or invalid parameter."""
        from mrzero.pipelines.registry import get  # the registry imports this module

        return get(self.pipeline_name).parse(self.parameters)

    def bind_params(self, params: Any) -> None:
        """Use ``params`` as ``ctx.params``: the running pipeline's own validated parameters
        (``pipelines/registry.py`` binds them when a registered pipeline starts)."""
        self.__dict__["params"] = params


def chain(*stages: Stage) -> Stage:
    """Compose stages so that each one's output feeds the next."""

    def run(items: Iterable[Any], ctx: Context) -> Iterator[Any]:
        stream: Iterable[Any] = items
        for stage in stages:
            stream = stage(stream, ctx)
        yield from stream

    return run
