"""``savedataonly``: the server journals the raw data; this pipeline returns no images.

It accepts only the JSON parameters every pipeline knows (``PipelineParameters``). Registered as
journal-only, so the server starts no worker for it (the data would only be counted there); run
offline (``mrzero recon``, twix reprocessing) it counts the items it was given."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from mrzero.pipelines.base import Context
from mrzero.pipelines.registry import register


@register("savedataonly", "journal the raw data only; no reconstruction, no images", journal_only=True)
def save_data_only(items: Iterable[Any], ctx: Context) -> Iterator[Any]:
    n = 0
    for _ in items:
        n += 1
    ctx.logger.info("savedataonly: %d items journaled, no reconstruction", n)
    yield from ()
