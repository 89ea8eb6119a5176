"""A fat-saturation pulse in a Pulseq file acts on fat, not on water, in the digital twin."""

from __future__ import annotations

import math

import numpy as np
import pypulseq as pp
import pytest
import torch

from mrzero.sequences.phantom import FatSpecies, Phantom
from mrzero.sequences.pulseq.import_ import import_seq
from mrzero.sequences.simulate import simulate

GAMMA = 42.577478e6
FAT_HZ = -3.4e-6 * GAMMA * 3.0
FOV = 0.2


def fat_sat_fid(path, with_fat_sat: bool = True) -> np.ndarray:
    """[fat-sat Gaussian 110 deg, 8 ms at -3.4 ppm] + z spoiler + 90 deg block pulse + FID; sample times."""
    system = pp.Opts(max_grad=30, grad_unit="mT/m", max_slew=120, slew_unit="T/m/s", B0=3.0)
    seq = pp.Sequence(system)
    seq.set_definition("FOV", [FOV, FOV, FOV])
    if with_fat_sat:
        seq.add_block(
            pp.make_gauss_pulse(
                math.radians(110),
                duration=8e-3,
                bandwidth=abs(FAT_HZ),
                freq_offset=FAT_HZ,
                system=system,
                use="saturation",
            )
        )
        seq.add_block(pp.make_trapezoid("z", area=8 / FOV, duration=2e-3, system=system))
    excitation = pp.make_block_pulse(math.pi / 2, duration=0.2e-3, system=system, use="excitation")
    adc = pp.make_adc(64, dwell=40e-6, system=system)
    seq.add_block(excitation)
    seq.add_block(adc)
    seq.write(str(path), create_signature=False)
    return (np.arange(64) + 0.5) * 40e-6 + pp.calc_duration(excitation) - excitation.delay - 0.1e-3


def water_fat_voxel(water: float, fat: float) -> Phantom:
    full = lambda v: torch.full((1, 1), float(v))  # noqa: E731
    return Phantom(
        pd=full(water),
        t1=full(1e3),
        t2=full(1e3),
        t2dash=full(0.0),
        b0=full(0.0),
        b1=full(1.0),
        fov=(FOV, FOV, FOV),
        fat=FatSpecies(full(fat), t1=1e3, t2=1e3),
    )


def components(signal: np.ndarray, times: np.ndarray) -> tuple[complex, complex]:
    """Least-squares water and fat amplitudes of S(t) = W + F exp(-2 pi i f_fat t)."""
    basis = np.stack([np.ones_like(times), np.exp(-2j * math.pi * FAT_HZ * times)], axis=1)
    (w, f), *_ = np.linalg.lstsq(basis, signal, rcond=None)
    return complex(w), complex(f)


@pytest.mark.parametrize("engine", ["fast", "isochromat"])
def test_fat_saturation_in_a_file_saturates_fat_and_spares_water(tmp_path, engine):
    times = fat_sat_fid(tmp_path / "fs.seq")
    imported = import_seq(tmp_path / "fs.seq")
    assert imported.rf_frequency[0] == pytest.approx(FAT_HZ, rel=1e-6)
    assert any("played out in 64 steps" in n for n in imported.notes)
    options = {"spins": 64} if engine == "isochromat" else {}
    signal = simulate(imported.sequence, water_fat_voxel(0.6, 0.4), engine=engine, **options)[0].numpy()
    water, fat = components(signal.astype(complex), times)
    assert water == pytest.approx(0.6j, abs=3e-3)  # water untouched by the fat-sat pulse
    assert fat == pytest.approx(0.4j * math.cos(math.radians(110)), abs=3e-3)  # fat's Mz after 110 deg


def test_without_the_frequency_offset_the_pulse_would_hit_water(tmp_path):
    """What the import did before: the fat-sat pulse on resonance saturates water too."""
    times = fat_sat_fid(tmp_path / "fs.seq")
    imported = import_seq(tmp_path / "fs.seq", off_resonant_rf=False)
    assert imported.sequence.rf_offsets is None
    water, _ = components(
        simulate(imported.sequence, water_fat_voxel(0.6, 0.4))[0].numpy().astype(complex), times
    )
    assert abs(water - 0.6j) > 0.5


def test_slice_offset_pulses_excite_the_phantoms_slice_and_are_reported(tmp_path):
    """A sinc pulse with its slice gradient at +4 mm: the offset moves the slice, not the spectrum."""
    system = pp.Opts(max_grad=30, grad_unit="mT/m", max_slew=120, slew_unit="T/m/s")
    seq = pp.Sequence(system)
    seq.set_definition("FOV", [FOV, FOV, 3e-3])
    rf, gz, gz_reph = pp.make_sinc_pulse(
        math.pi / 2,
        duration=2e-3,
        slice_thickness=3e-3,
        time_bw_product=4,
        system=system,
        return_gz=True,
        use="excitation",
    )
    rf.freq_offset = gz.amplitude * 4e-3  # Hz: 4 mm along z
    seq.add_block(rf, gz)
    seq.add_block(gz_reph)
    seq.add_block(pp.make_adc(16, dwell=40e-6, system=system))
    seq.write(str(tmp_path / "offset.seq"), create_signature=False)
    imported = import_seq(tmp_path / "offset.seq")
    assert imported.sequence.rf_offsets is None  # on resonance for the phantom's slice
    assert any(
        "slice-selective pulse(s) off the isocentre (slices at +4.0..+4.0 mm)" in n for n in imported.notes
    )
    signal = simulate(imported.sequence, water_fat_voxel(1.0, 0.0))[0]
    assert float(abs(signal[0])) == pytest.approx(1.0, abs=1e-3)  # the slice is fully excited


def test_export_refuses_a_sequence_with_played_out_pulses(tmp_path):
    """The export writes on-resonance pulses: a fat-sat sequence would come out wrong, so it is refused."""
    from mrzero.sequences.pulseq.export import ExportError, export

    fat_sat_fid(tmp_path / "fs.seq")
    imported = import_seq(tmp_path / "fs.seq")
    with pytest.raises(ExportError, match=r"repetition\(s\) \[0\] hold pulses played off resonance"):
        export(imported.sequence, tmp_path / "again.seq")
    assert not (tmp_path / "again.seq").exists()
