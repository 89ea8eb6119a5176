"""The Shepp-Logan demo: independent Cartesian raw data through the server, images to disk.

(The default main job, digital-twin scans of the shipped bundles, is ``mrzero.twin_demo.run_twin_demo``.)

``run_demo`` (``mrzero demo --shepp-logan``): Debian's ``ismrmrd_generate_cartesian_shepp_logan``
(ISMRMRD's C++ tools, an independent data source) writes multi-coil Cartesian raw data with a
noise-adjust scan; the server reconstructs it with the default pipeline.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mrzero.client import send_file
from mrzero.pipelines.image_files import write_pngs
from mrzero.server.limits import Settings
from mrzero.server.listener import Server

log = logging.getLogger(__name__)
GENERATOR = "ismrmrd_generate_cartesian_shepp_logan"


@dataclass(frozen=True)
class DemoResult:
    raw: Path
    journal_dir: Path
    images_h5: Path
    pngs: list[Path]
    texts: list[str]


def generate_shepp_logan(path: Path, matrix: int = 128, coils: int = 8) -> Path:
    """Multi-coil Shepp-Logan raw data (with noise-adjust scan) from Debian's ISMRMRD tools."""
    tool = shutil.which(GENERATOR)
    if tool is None:
        raise FileNotFoundError(
            f"{GENERATOR} not found: install Debian's ismrmrd-tools "
            "(apt-get install ismrmrd-tools, or `make setup`)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # the tool appends to an existing file
    subprocess.run(
        [tool, "-o", str(path), "-m", str(matrix), "-c", str(coils), "-C"],
        check=True,
        capture_output=True,
        text=True,
    )
    log.info("generated %s (%d x %d, %d coils)", path, matrix, matrix, coils)
    return path


def run_demo(
    output_dir: Path = Path("demo-output"), matrix: int = 128, coils: int = 8, config: str | None = None
) -> DemoResult:
    """Generate, serve, stream, save; raises ``RuntimeError`` if the server reports an error."""
    output_dir = Path(output_dir)
    raw = generate_shepp_logan(output_dir / "shepp_logan_raw.h5", matrix, coils)
    journal_dir = output_dir / "journal"
    server = Server(Settings(port=0, data_dir=journal_dir)).start()
    try:
        host, port = server.address
        reply = send_file(raw, host=host, port=port, config=config, output=output_dir / "images.h5")
    finally:
        server.stop()
    if reply.errors or not reply.images:
        raise RuntimeError("the server returned no images: " + "; ".join(reply.errors or reply.texts))
    pngs = write_pngs(reply.images, output_dir / "png", stem="shepp_logan")
    return DemoResult(raw, journal_dir, output_dir / "images.h5", pngs, reply.texts)
