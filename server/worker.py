"""The pipeline worker: one process per connection, so that a pipeline that raises, hangs or
eats memory ends only its own connection.

Processes come from the server's fork server (``mrzero.server.processes``). The worker limits its
own address space (RLIMIT_AS) to what it had at start plus the configured memory limit.

Frames between server and worker (``multiprocessing`` pipes, one per direction):

* server -> worker: MRD wire bytes of one acquisition/waveform/image; ``b""`` ends the input.
* worker -> server: one tag byte then the payload: ``I`` an image's MRD wire bytes, ``T`` a
  text for the client, ``L`` a log line (``levelno<TAB>text``), ``E`` an error
  (``kind<TAB>text``, kind from ``mrzero.server.metrics.ERROR_KINDS``), ``D`` done.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import ismrmrd

from mrzero.server.framing import decode_wire, serialized
from mrzero.server.processes import CONTEXT, warm_up  # noqa: F401  (warm_up: mrzero.server.gadgetron imports it here)


class _PipeLogHandler(logging.Handler):
    def __init__(self, out: Connection):
        super().__init__()
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.out.send_bytes(b"L" + f"{record.levelno}\t{self.format(record)}".encode())
        except OSError:
            pass


def _limit_memory(extra_bytes: int) -> None:
    if extra_bytes <= 0:
        return
    import resource

    with open("/proc/self/status") as status:
        vm_kb = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    limit = vm_kb * 1024 + extra_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))


def _inputs(conn: Connection) -> Iterator[Any]:
    while True:
        wire = conn.recv_bytes()
        if not wire:
            return
        yield decode_wire(wire)


def _main(
    inputs: Connection,
    outputs: Connection,
    name: str,
    header_xml: str,
    parameters: dict[str, Any],
    modules: tuple[str, ...],
    sys_path: list[str],
    memory_limit_bytes: int,
    threads: int,
    bundle_store: str | None = None,
    device: str | None = None,
) -> None:
    """Worker process entry: run pipeline ``name`` over the inputs, report every result."""
    # Ctrl-C at a terminal reaches the whole process group: the server decides when a scan ends
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logger = logging.getLogger(f"pipelines.{name}")
    logger.handlers[:] = [_PipeLogHandler(outputs)]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        sys.path[:] = sys_path
        import importlib

        import torch

        torch.set_num_threads(threads)  # this worker process only

        for module in modules:
            importlib.import_module(module)
        from mrzero.pipelines.base import Context
        from mrzero.pipelines.mrd_header import parse_header
        from mrzero.pipelines.registry import get

        spec = get(name)
        ctx = Context(
            header=parse_header(header_xml),
            parameters=parameters,
            logger=logger,
            notify=lambda text: outputs.send_bytes(b"T" + text.encode()),
            pipeline_name=name,
            bundle_store=Path(bundle_store) if bundle_store else None,
            device=device,
        )
        _limit_memory(memory_limit_bytes)
        for item in spec.run(_inputs(inputs), ctx):
            if not isinstance(item, ismrmrd.Image):
                raise TypeError(f"pipeline {name!r} yielded a {type(item).__name__}, expected ismrmrd.Image")
            outputs.send_bytes(b"I" + serialized(item))
        outputs.send_bytes(b"D")
    except MemoryError:
        outputs.send_bytes(
            b"Ememory\t"
            + f"pipeline {name!r} exceeded the memory limit of {memory_limit_bytes >> 20} MB".encode()
        )
    except BaseException as exc:
        text, kind = str(exc), "pipeline_crash"
        if isinstance(exc, RuntimeError) and "allocate" in text:
            text = f"exceeded the memory limit of {memory_limit_bytes >> 20} MB ({text.splitlines()[0]})"
            kind = "memory"
        logger.debug("%s", traceback.format_exc())
        message = f"{type(exc).__name__}: {text}"
        if type(exc).__name__ == "PipelineError":
            message, kind = text, "pipeline"
        elif type(exc).__name__ == "BundleError":
            message, kind = text, "bundle_missing"
        try:
            outputs.send_bytes(f"E{kind}\tpipeline {name!r} failed: {message}".encode())
        except OSError:
            pass


def _widen(conn: Connection) -> None:
    """Give a pipe 1 MiB of buffer (Linux; 64 KiB by default, less than one 32-coil line), so
    the server and the worker hand over several acquisitions per context switch."""
    try:
        import fcntl

        fcntl.fcntl(conn.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except (ImportError, OSError):
        pass


class Worker:
    """The server side of one worker process, with a progress watchdog.

    ``owes`` is true while a send to the worker is in progress or after the input ended; a
    worker that owes progress and makes none (accepts no input, yields no output) for
    ``timeout_s`` is killed.
    """

    def __init__(
        self,
        name: str,
        header_xml: str,
        parameters: dict[str, Any],
        modules: tuple[str, ...],
        memory_limit_bytes: int,
        timeout_s: float,
        threads: int,
        bundle_store: Path | None = None,
        device: str | None = None,
    ):
        self.name = name
        self.timeout_s = timeout_s
        in_recv, self._in_send = CONTEXT.Pipe(duplex=False)
        _widen(self._in_send)
        self._out_recv, out_send = CONTEXT.Pipe(duplex=False)
        self.process = CONTEXT.Process(
            target=_main,
            name=f"pipeline {name}",
            daemon=True,
            args=(
                in_recv,
                out_send,
                name,
                header_xml,
                parameters,
                modules,
                list(sys.path),
                memory_limit_bytes,
                threads,
                str(bundle_store) if bundle_store else None,
                device,
            ),
        )
        self.process.start()
        in_recv.close()
        out_send.close()
        self._sending = False
        self._input_ended = False
        self._last_progress = time.monotonic()
        self.timed_out = False
        #: Kind (``mrzero.server.metrics.ERROR_KINDS``) of the error ``results`` ended with, if any.
        self.error_kind: str | None = None

    def send(self, wire: bytes | bytearray) -> None:
        """Forward one data message; raises ``OSError`` if the worker is gone."""
        self._sending = True
        try:
            self._in_send.send_bytes(wire)
        finally:
            self._sending = False
            self._last_progress = time.monotonic()

    def end_input(self) -> None:
        try:
            self._in_send.send_bytes(b"")
        except OSError:
            pass
        self._input_ended = True
        self._last_progress = time.monotonic()

    def results(self, poll_s: float = 0.2) -> Iterator[tuple[str, bytes]]:
        """Yield ``(tag, payload)`` frames until done/error; ends with ``E`` (the error text; its
        kind in :attr:`error_kind`) on an error, death or timeout."""
        while True:
            if self._out_recv.poll(poll_s):
                try:
                    frame = self._out_recv.recv_bytes()
                except (EOFError, OSError):
                    self.process.join(5)
                    self.error_kind = "worker_died"
                    yield (
                        "E",
                        (f"pipeline {self.name!r} worker died (exit code {self.process.exitcode})").encode(),
                    )
                    return
                self._last_progress = time.monotonic()
                tag, payload = chr(frame[0]), frame[1:]
                if tag == "E":
                    kind, _, payload = payload.partition(b"\t")
                    self.error_kind = kind.decode()
                yield tag, payload
                if tag in "DE":
                    return
            elif (
                self._sending or self._input_ended
            ) and time.monotonic() - self._last_progress > self.timeout_s:
                self.timed_out = True
                self.error_kind = "pipeline_timeout"
                self.stop()
                yield (
                    "E",
                    (
                        f"pipeline {self.name!r} made no progress for {self.timeout_s:g} s "
                        "(pipeline timeout); stopped"
                    ).encode(),
                )
                return

    def stop(self) -> None:
        """Kill the worker if it is still alive (a blocked ``send`` then raises)."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)

    def close(self) -> None:
        """Stop the worker and release the pipes; call once, from the connection's thread."""
        self.stop()
        for conn in (self._in_send, self._out_recv):
            conn.close()
