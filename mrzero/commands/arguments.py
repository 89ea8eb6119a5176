"""Argument types the client-side commands share (send, scan, demo, convert): ranges are checked
when the command line is parsed, so a bad number ends at once with exit status 2 and one line."""

from __future__ import annotations

from mrzero.commands.server_options import bounded

#: A server's TCP port.
PORT = bounded(int, 1, 65535, "a TCP port")
#: Receive coils of a simulated scan.
COILS = bounded(int, 1, 128, "a coil count")
#: Signal-to-noise ratio (RMS signal over noise standard deviation).
SNR = bounded(float, 1e-3, 1e9, "a positive SNR")
#: Seconds a client waits for a silent server.
WAIT_SECONDS = bounded(float, 1e-3, 1e6, "a positive number of seconds")
#: Image matrix of a generated scan.
MATRIX = bounded(int, 8, 1024, "an image matrix size")
