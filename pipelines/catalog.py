"""Imports every module that registers a pipeline. Add new pipeline modules here."""

import pipelines.cartesian  # noqa: F401
import pipelines.mrzero.pipelines  # noqa: F401
import pipelines.roar.pipeline  # noqa: F401
import pipelines.savedata  # noqa: F401
