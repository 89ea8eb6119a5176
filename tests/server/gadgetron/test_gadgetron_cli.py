"""``mrzero gadgetron-external`` as a process: it refuses an unknown default pipeline at start,
and serves a Gadgetron connection with the pipeline of ``--pipeline``."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from mrzero.client import open_mrd
from mrzero.server.gadgetron.peer import opening, run_chain

COMMAND = [sys.executable, "-m", "mrzero.cli", "-v", "gadgetron-external", "--host", "127.0.0.1"]


def test_an_unknown_default_pipeline_fails_at_start():
    done = subprocess.run([*COMMAND, "--pipeline", "nope"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "--pipeline: unknown pipeline 'nope'; known pipelines:" in done.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.needs_ismrmrd_tools
def test_the_command_serves_a_chain_with_its_default_pipeline(shepp_logan):
    port = _free_port()
    proc = subprocess.Popen(
        [*COMMAND, "--port", str(port), "--pipeline", "cartesian"], stderr=subprocess.PIPE, text=True
    )
    try:
        for line in proc.stderr:  # wait until it listens
            if "Gadgetron external gadget listening on" in line:
                break
        else:
            pytest.fail(f"the command exited with {proc.wait()} before listening")
        mrd = open_mrd(shepp_logan)
        answer = run_chain(("127.0.0.1", port), opening({}, mrd.header_xml), mrd.items)
    finally:
        proc.terminate()  # SIGTERM, as a service manager stops it: drain, then exit 0
        code = proc.wait(60)
        proc.stderr.close()
    assert answer.closed and answer.errors == [] and len(answer.images) == 1
    assert code == 0
