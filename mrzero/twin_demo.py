"""The digital-twin scanner on the network: stream a simulated scan to an MRD server and keep the result.

This is the one module where the offline twin (``sequences/digital_twin.py``) meets the server
(``server/``): ``sequences`` must not import ``server`` (docs/architecture.md), so the glue that a
scanner's role plays, sending raw data over TCP and saving what comes back, lives here, beside
the console command that uses it.
"""

from __future__ import annotations

import json
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mrzero.client import Reply, stream
from mrzero.demo_overview import Comparison, overview_figure, scan_truth
from mrzero.pipelines.dicom import write_dicom
from mrzero.pipelines.image_files import write_images_h5, write_pngs
from mrzero.sequences.bundle import deploy_bundle
from mrzero.sequences.digital_twin import TwinScan, bundle_dir, twin_scan
from mrzero.sequences.mrd import write_mrd
from mrzero.server.limits import Settings
from mrzero.server.listener import Server


def stream_scan(
    scan: TwinScan,
    host: str,
    port: int,
    config: str | None = None,
    parameters: dict | None = None,
    progress: bool = False,
    timeout_s: float = 600.0,
    tls: ssl.SSLContext | None = None,
) -> Reply:
    """Stream ``scan`` to an MRD server (over TLS with a ``tls`` context); ``config`` defaults to
    the bundle's pipeline."""
    texts = [json.dumps({"parameters": parameters})] if parameters else []
    return stream(
        scan.acquisitions,
        scan.header_xml,
        host=host,
        port=port,
        config=config or scan.protocol["pipeline"],
        texts=texts,
        total=len(scan.acquisitions),
        progress=progress,
        timeout_s=timeout_s,
        tls=tls,
    )


def save_scan(scan: TwinScan, reply: Reply, out: str | Path) -> dict[str, Path]:
    """Write what was sent (``raw.h5``, MRD raw data) and what came back (``images.h5``, ``png/``,
    ``dicom/``)."""
    out = Path(out)
    saved = {"raw data": out / "raw.h5"}
    write_mrd(saved["raw data"], scan.header, scan.acquisitions, overwrite=True)
    if reply.images:
        saved["images (MRD)"] = write_images_h5(reply.images, out / "images.h5", header_xml=scan.header_xml)
        pngs = write_pngs(reply.images, out / "png", stem=scan.protocol["name"])
        saved["images (PNG)"] = pngs[0].parent
        dicom = write_dicom(
            reply.images, out / "dicom", scan.protocol["name"], scan.header, scan.protocol["pipeline"]
        )
        saved["images (DICOM)"] = dicom[0].parent
    return saved


# The embedded default main job (``mrzero demo``): the shipped bundles (``sequences/bundles``) are
# deployed to a temporary store, a server on a free 127.0.0.1 port searches it, and the twin scans
# the brain phantom with each bundle's ``.seq`` file; the server finds each bundle by its Pulseq
# signature and returns the learned GRE image and the T1 map, saved next to the raw data.
@dataclass(frozen=True)
class TwinDemoResult:
    journal_dir: Path
    #: Per bundle: what ``save_scan`` wrote (raw data, images, PNG and DICOM folders, overview figure).
    saved: dict[str, dict[str, Path]]
    texts: list[str]
    #: Per bundle: the returned images' error against the truth (``demo_overview``).
    errors: dict[str, Comparison]


#: The engine's pruning for the demo's scans: the tolerance the bundles are trained with (signal
#: error about 0.1 %, docs/simulation.md), ten times faster than the default 1e-5 at 32x32.
DEMO_ENGINE_SETTINGS: dict[str, object] = {"tolerance": 1e-3}


def run_twin_demo(
    output_dir: Path = Path("demo-output"),
    bundles: tuple[str, ...] = ("learned_gre", "t1_mapping"),
    coils: int = 4,
    snr: float | None = 100.0,
) -> TwinDemoResult:
    """Deploy, serve, scan with the twin, save; raises ``RuntimeError`` if the server reports an error."""
    output_dir = Path(output_dir)
    journal_dir = output_dir / "journal"
    saved, texts, errors = {}, [], {}
    with tempfile.TemporaryDirectory(prefix="mrzero-store-") as store:
        for name in bundles:
            deploy_bundle(bundle_dir(name), store)
        server = Server(Settings(port=0, data_dir=journal_dir, bundle_store=Path(store))).start()
        try:
            for name in bundles:
                scan = twin_scan(
                    bundle_dir(name), "brain", n_coils=coils, snr=snr, engine_settings=DEMO_ENGINE_SETTINGS
                )
                reply = stream_scan(scan, *server.address)
                if reply.errors or not reply.images:
                    raise RuntimeError(
                        f"{name}: the server returned no images: " + "; ".join(reply.errors or reply.texts)
                    )
                saved[name] = save_scan(scan, reply, output_dir / Path(name).name)
                truth = scan_truth(scan)
                if truth is not None:
                    figure = output_dir / Path(name).name / f"{Path(name).name}_overview.png"
                    errors[name] = overview_figure(Path(name).name, reply.images, truth, figure)
                    saved[name]["overview"] = figure
                texts += reply.texts
        finally:
            server.stop()
    return TwinDemoResult(journal_dir, saved, texts, errors)
