"""Imports every module that registers a pipeline. Add new pipeline modules here."""

import mrzero.pipelines.cartesian  # noqa: F401
import mrzero.pipelines.learned.pipelines  # noqa: F401
import mrzero.pipelines.roar.pipeline  # noqa: F401
import mrzero.pipelines.savedata  # noqa: F401
