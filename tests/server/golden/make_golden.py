"""Writes the golden byte streams of quirky MRD clients (run from the repository root:
``.venv/bin/python tests/server/golden/make_golden.py``). The files are committed; the tests
replay them over real sockets.

* ``fire_quirks.bin``: config-file name followed by a NUL and garbage bytes (the C++ client's
  uninitialised memory), a FIRE JSON text before the header, a header ending in NULs,
  acquisitions, close.
* ``json_override.bin``: a config-file name that no server knows, the header, then a FIRE
  JSON text whose ``customconfig`` selects the pipeline, acquisitions, close.
* ``no_close.bin``: config, header, acquisitions, and no close message.
* ``dependency_query.bin``: config then close, before any header.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from scans_for_tests import (  # noqa: E402
    acquisition_message,
    config_file_message,
    header_xml,
    scan,
    wire_text,
)

from mrzero.server.framing import MessageId, close_message  # noqa: E402

GARBAGE = bytes(range(0x80, 0xC0)) + b"gadgetron_default.xml\xff\xfe"


def main() -> None:
    acqs = b"".join(acquisition_message(a) for a in scan(coils=2, nx=16, ny=16, seed=3))
    header = wire_text(MessageId.HEADER, header_xml(coils=2, nx=16, ny=16).encode() + b"\0\0\0")
    fire = json.dumps({"parameters": {"config": "test_rss", "customconfig": ""}}).encode()
    override = json.dumps({"parameters": {"config": "test_raises", "customconfig": "test_rss"}}).encode()
    streams = {
        "fire_quirks.bin": config_file_message(b"test_rss", GARBAGE)
        + wire_text(MessageId.TEXT, fire + b"\0")
        + header
        + acqs
        + close_message(),
        "json_override.bin": config_file_message(b"no_such_pipeline")
        + header
        + wire_text(MessageId.TEXT, override)
        + acqs
        + close_message(),
        "no_close.bin": config_file_message(b"test_rss") + header + acqs,
        "dependency_query.bin": config_file_message(b"test_rss", GARBAGE) + close_message(),
    }
    for name, data in streams.items():
        (HERE / name).write_bytes(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
