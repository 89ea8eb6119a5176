"""Small synthetic MRD scans and raw-socket helpers for the server tests (no shared data)."""

from __future__ import annotations

import socket
import struct

import ismrmrd
import numpy as np

from mrzero.client import Reply, receive
from mrzero.server.framing import MessageId

HEADER_TEMPLATE = """<?xml version="1.0"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
  <acquisitionSystemInformation><receiverChannels>{coils}</receiverChannels></acquisitionSystemInformation>
  <experimentalConditions><H1resonanceFrequency_Hz>63500000</H1resonanceFrequency_Hz></experimentalConditions>
  <encoding>
    <encodedSpace><matrixSize><x>{nx}</x><y>{ny}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>256</x><y>256</y><z>5</z></fieldOfView_mm></encodedSpace>
    <reconSpace><matrixSize><x>{nx}</x><y>{ny}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>256</x><y>256</y><z>5</z></fieldOfView_mm></reconSpace>
    <encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>{ny_max}</maximum>
      <center>{ny_center}</center></kspace_encoding_step_1></encodingLimits>
    <trajectory>cartesian</trajectory>
  </encoding>
</ismrmrdHeader>"""


def header_xml(coils: int = 4, nx: int = 32, ny: int = 32) -> str:
    return HEADER_TEMPLATE.format(coils=coils, nx=nx, ny=ny, ny_max=ny - 1, ny_center=ny // 2)


def scan(coils: int = 4, nx: int = 32, ny: int = 32, seed: int = 0) -> list[ismrmrd.Acquisition]:
    """Fully sampled Cartesian k-space of a random smooth object seen by ``coils`` coils."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[-0.5 : 0.5 : 1j * ny, -0.5 : 0.5 : 1j * nx]
    obj = (x**2 + y**2 < 0.16).astype(np.float32) * (1 + rng.random()) + 0.5 * (abs(x - 0.1) < 0.05)
    sens = np.stack(
        [
            np.exp(-((x - 0.3 * np.cos(c)) ** 2 + (y - 0.3 * np.sin(c)) ** 2))
            for c in np.linspace(0, 2 * np.pi, coils, endpoint=False)
        ]
    )
    kspace = np.fft.fftshift(
        np.fft.fft2(np.fft.ifftshift(sens * obj, axes=(-2, -1)), norm="ortho"), axes=(-2, -1)
    ).astype(np.complex64)
    acqs = []
    for ky in range(ny):
        acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(kspace[:, ky, :]))
        acq.idx.kspace_encode_step_1 = ky
        acq.scan_counter = ky
        acq.center_sample = nx // 2
        acq.read_dir[:] = (1, 0, 0)
        acq.phase_dir[:] = (0, 1, 0)
        acq.slice_dir[:] = (0, 0, 1)
        if ky == 0:
            acq.set_flag(ismrmrd.ACQ_FIRST_IN_SLICE)
        if ky == ny - 1:
            acq.set_flag(ismrmrd.ACQ_LAST_IN_SLICE)
        acqs.append(acq)
    return acqs


def wire_text(msg_id: int, text: bytes) -> bytes:
    return struct.pack("<HI", msg_id, len(text)) + text


def config_file_message(name: bytes, garbage: bytes = b"") -> bytes:
    """A 1024-byte config-file message: name, NUL, then ``garbage`` (as C++ clients send)."""
    payload = (name + b"\0" + garbage).ljust(1024, b"\0")[:1024]
    return struct.pack("<H", MessageId.CONFIG_FILE) + payload


def acquisition_message(acq: ismrmrd.Acquisition) -> bytes:
    return struct.pack("<H", MessageId.ACQUISITION) + acq.to_bytes()


def read_reply(sock: socket.socket) -> Reply:
    """Everything the server sends until close or EOF."""
    return receive(sock, Reply())


def exchange(address: tuple[str, int], stream: bytes, half_close: bool = True) -> Reply:
    """Send raw bytes over a real socket, signal end of input, collect the reply."""
    with socket.create_connection(address, timeout=60) as sock:
        sock.sendall(stream)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return read_reply(sock)
