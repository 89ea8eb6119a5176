"""The unit helpers of core/units.py."""

import pytest

from mrzero.core import units


def test_round_trips_and_pixel_centre():
    assert units.rad_to_deg(units.deg_to_rad(37.0)) == pytest.approx(37.0)
    assert units.s_to_ms(units.ms_to_s(2.5)) == pytest.approx(2.5)
    assert units.per_m_to_cycles_per_fov(units.cycles_per_fov_to_per_m(16, 0.22), 0.22) == pytest.approx(16)
    assert units.pixel_positions(4) == [-0.5, -0.25, 0.0, 0.25]
    assert units.pixel_positions(3)[1] == 0.0


def test_gradient_amplitude_conversion_uses_the_proton_gamma():
    assert units.tesla_per_m_to_hz_per_m(0.04) == pytest.approx(1.70309914e6, rel=1e-6)
    with pytest.raises(ValueError, match="field of view"):
        units.cycles_per_fov_to_per_m(1.0, 0.0)
