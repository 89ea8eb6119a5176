"""Run an ``mrzero`` command under ``torchrun`` on this machine: N CPU processes (gloo) with their
rendezvous on 127.0.0.1 at a free port, as the data-parallel training tests need."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

TORCHRUN = Path(sys.executable).with_name("torchrun")
MRZERO = Path(sys.executable).with_name("mrzero")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_mrzero(*args: str, processes: int = 2, timeout: float = 300) -> subprocess.CompletedProcess:
    """``torchrun --nproc-per-node PROCESSES mrzero ARGS`` with one torch thread per process; fails the
    test with both outputs when the command fails."""
    command = [
        str(TORCHRUN),
        "--nnodes",
        "1",
        "--nproc-per-node",
        str(processes),
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(free_port()),
        str(MRZERO),
        *args,
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done
