"""The pipeline names a bundle may ask for (core) are exactly the registered bundle pipelines."""

from mrzero.core.bundles import BUNDLE_PIPELINES
from mrzero.pipelines import registry


def test_every_bundle_pipeline_is_registered():
    assert set(BUNDLE_PIPELINES) <= set(registry.names()), sorted(
        set(BUNDLE_PIPELINES) - set(registry.names())
    )
    assert "savedataonly" not in BUNDLE_PIPELINES  # keeps raw data only: no bundle reconstructs with it
