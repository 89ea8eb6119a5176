"""Siemens twix raw data (``.dat``) to MRD: reading, protocol -> header, readouts -> acquisitions."""

from mrzero.pipelines.twix.convert import Conversion, TwixMeasurement, convert_twix, load_twix
from mrzero.pipelines.twix.reader import TwixError

__all__ = ["Conversion", "TwixError", "TwixMeasurement", "convert_twix", "load_twix"]
