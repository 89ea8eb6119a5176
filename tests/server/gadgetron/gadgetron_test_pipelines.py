"""Test-only pipelines (imported by the external gadget's workers through ``pipeline_modules``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import ismrmrd

from mrzero.pipelines.base import Context, PipelineError
from mrzero.pipelines.registry import register


@register("test_echo_images", "test: returns the images it receives")
def echo_images(items: Iterable[Any], ctx: Context) -> Iterator[ismrmrd.Image]:
    for item in items:
        if isinstance(item, ismrmrd.Image):
            yield item


@register("test_fail_at_5", "test: fails at the fifth item")
def fail_at_5(items: Iterable[Any], ctx: Context) -> Iterator[ismrmrd.Image]:
    for i, _ in enumerate(items, 1):
        if i == 5:
            raise PipelineError("test pipeline refuses item 5")
    yield from ()
