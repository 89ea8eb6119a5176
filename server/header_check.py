"""Parsing a client's XML header where its cost is bounded: small ones here, large ones in a
child process with a time limit.

A header is the one input the server must understand before it can check a scan's data, and
parsing XML can cost far more than its size suggests (a megabyte of nested unknown elements
took tens of seconds of CPU). The listening process parses only small headers, whose cost their
size bounds; a larger one is parsed by a process from the fork server (milliseconds to start),
under :data:`PARSE_MEMORY_BYTES` of extra address space, and is killed after ``timeout_s``;
only the small :class:`mrzero.server.validation.ScanShape` comes back. The time limit counts
from the moment the process runs, so that a loaded machine's slow fork does not refuse a good
header. Headers over ``--max-header-kb`` are refused before that (``Connection``).
"""

from __future__ import annotations

from multiprocessing.connection import Connection as Pipe

from mrzero.server.framing import ProtocolError, parse_header
from mrzero.server.processes import CONTEXT
from mrzero.server.validation import ScanShape

#: Headers up to this size are parsed in the listening process: their cost is bounded by their
#: size (real headers have 10-30 KB; 64 K characters of the worst shape measured, nested unknown
#: elements, parse in under 0.1 s), and a child process would add a fork to every scan.
IN_PROCESS_CHARACTERS = 64 * 1024
#: Address space the parsing process may add to what it had at start.
PARSE_MEMORY_BYTES = 1 << 30
#: How long the parsing process may take to start (a fork of the fork server: milliseconds).
START_TIMEOUT_S = 60.0


def _parse(xml: str, out: Pipe) -> None:
    """Child process: the scan shape of ``xml``, or the error text."""
    from mrzero.server.worker import _limit_memory

    _limit_memory(PARSE_MEMORY_BYTES)
    out.send(None)  # started: the time limit counts from here, not from the fork
    try:
        out.send(ScanShape.of(parse_header(xml)))
    except ProtocolError as exc:
        out.send(str(exc))
    except (MemoryError, RecursionError) as exc:
        out.send(f"the XML header could not be parsed within the server's limits ({type(exc).__name__})")


def scan_shape(xml: str, timeout_s: float) -> ScanShape:
    """The :class:`ScanShape` of an MRD XML header; :class:`ProtocolError` if it is malformed, or
    takes longer than ``timeout_s`` or more memory than allowed to parse. Headers up to
    :data:`IN_PROCESS_CHARACTERS` are parsed here, larger ones in a child process."""
    if len(xml) <= IN_PROCESS_CHARACTERS:
        return ScanShape.of(parse_header(xml))
    receive, send = CONTEXT.Pipe(duplex=False)
    process = CONTEXT.Process(target=_parse, args=(xml, send), name="header parse", daemon=True)
    process.start()
    send.close()
    try:
        if not receive.poll(START_TIMEOUT_S) or receive.recv() is not None:
            raise ProtocolError("the XML header could not be parsed (the parsing process did not start)")
        if not receive.poll(timeout_s):
            raise ProtocolError(
                f"the XML header ({len(xml)} characters) took more than {timeout_s:g} s to parse; refused"
            )
        try:
            answer = receive.recv()
        except EOFError:
            raise ProtocolError("the XML header could not be parsed (the parsing process died)") from None
    finally:
        if process.is_alive():
            process.kill()
        process.join(5)
        receive.close()
    if isinstance(answer, str):
        raise ProtocolError(answer)
    return answer
