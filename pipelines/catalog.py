"""Imports every module that registers a pipeline. Add new pipeline modules here."""

import pipelines.savedata  # noqa: F401
