"""A synthetic Siemens EPI twix file, written with twixtools' writer: one slice of single-shot,
ramp-sampled EPI (``epi_kspace.RAMP_READOUT``) with three phase-correction navigators (``PHASCOR``),
reflected lines (``REFLECT``) and a known odd/even error, from a known image, its regridding
parameters in the ``Meas`` buffer as Siemens EPI sequences write them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import twix_writer as tw
import twixtools
from epi_kspace import RAMP_READOUT, EpiReadout, epi_readouts

from mrzero.core.ops.epi import TrapezoidReadout

SLICE = 0


def regrid_fields(readout: TrapezoidReadout) -> dict[str, list[float]]:
    """The ``Meas`` buffer's regridding arrays (one entry per readout type, microseconds)."""
    return {
        "alRegridMode": [2, 2],
        "alRegridRampupTime": [round(readout.ramp_up_s * 1e6)] * 2,
        "alRegridFlattopTime": [round(readout.flat_top_s * 1e6)] * 2,
        "alRegridRampdownTime": [round(readout.ramp_down_s * 1e6)] * 2,
        "alRegridDelaySamplesTime": [round(readout.adc_delay_s * 1e6)] * 2,
        "alRegridDestSamples": [readout.n_samples] * 2,
        "aflRegridADCDuration": [readout.n_samples * readout.dwell_s * 1e6] * 2,
    }


def _meas(fields: dict[str, list[float]]) -> str:
    rows = [
        '<ParamString."tPatientPosition">  { "HFS"  }',
        '<ParamDouble."flReadoutOSFactor">  { <Precision> 16  2.0  }',
    ]
    for name, values in fields.items():
        if name.startswith("afl"):
            rows.append(
                f'<ParamDouble."{name}">  {{ <Precision> 6  {" ".join(f"{v:.6f}" for v in values)}  }}'
            )
        else:
            rows.append(f'<ParamLong."{name}">  {{ {" ".join(str(int(v)) for v in values)}  }}')
    return "\n".join(["<XProtocol>", "{", *rows, "}", ""])


def epi_protocol() -> dict:
    """The EPI image measurement's MeasYaps: one slice, EPI factor = lines, no acceleration."""
    params = {k: v for k, v in tw.yaps().items() if not k.startswith(("sPat.", "sSliceArray.asSlice[1]"))}
    params.update(
        {
            "tProtocolName": "synth_epi",
            "tSequenceFileName": "%SiemensSeq%\\ep2d_fid",
            "sFastImaging.lEPIFactor": tw.LINES,
            "lContrasts": 1,
            "sSliceArray.lSize": 1,
            "sRXSPEC.alDwellTime[0]": round(2 * RAMP_READOUT.dwell_s * 1e9),
        }
    )
    return params


def write_epi_twix(
    path: Path, images: np.ndarray, constant: float, shift: float, with_regrid_fields: bool = True
) -> list[EpiReadout]:
    """Write the EPI scan of ``images`` ``[coil, LINES, 2 BASE]`` to ``path``; returns its readouts."""
    readouts = epi_readouts(images, RAMP_READOUT, constant=constant, shift=shift)
    mdbs = []
    first = True
    for k, r in enumerate(readouts):
        flags = ["PHASCOR"] * r.navigator + ["REFLECT"] * r.reflected
        if not r.navigator and first:
            flags.append("FIRSTSCANINSLICE")
            first = False
        if k == len(readouts) - 1:
            flags += ["LASTSCANINSLICE", "LASTSCANINMEAS"]
        readout = tw.Readout({"Lin": r.line, "Sli": SLICE, "Seg": int(r.reflected)}, flags, SLICE)
        mdbs.append(tw.make_mdb(r.data, readout, tw.SLICE_POSITIONS[SLICE]))
    end = twixtools.mdb.Mdb_local()
    end.add_flag("ACQEND")
    buffers = tw.buffers(epi_protocol())
    buffers["Meas"] = _meas(regrid_fields(RAMP_READOUT) if with_regrid_fields else {})
    twixtools.write_twix([{"hdr_str": tw.header_bytes(buffers), "mdb": [*mdbs, end]}], str(path))
    return readouts
