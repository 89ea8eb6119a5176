"""The Pulseq signature: the MD5 hash of a ``.seq`` file up to its ``[SIGNATURE]`` section.

The server identifies a scan's bundle by this hash, so it is computed here from the bytes, the
way the file format defines it (the newline before ``[SIGNATURE]`` belongs to the signature and
is not hashed), not taken on trust from the file.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

_MARK = b"\n[SIGNATURE]"


class SignatureError(ValueError):
    """A file has no, or a malformed, ``[SIGNATURE]`` section."""


def computed_signature(path: str | Path) -> str:
    """MD5 (hex) of the file's bytes before the newline that precedes ``[SIGNATURE]``."""
    data = Path(path).read_bytes()
    end = data.find(_MARK)
    if end < 0:
        raise SignatureError(f"{path}: no [SIGNATURE] section; the file was written unsigned")
    return hashlib.md5(data[:end]).hexdigest()


def stored_signature(path: str | Path) -> str:
    """The hash written in the file's ``[SIGNATURE]`` section (``Type md5``)."""
    data = Path(path).read_bytes()
    end = data.find(_MARK)
    if end < 0:
        raise SignatureError(f"{path}: no [SIGNATURE] section; the file was written unsigned")
    section = data[end:].decode("ascii", errors="replace")
    kind = re.search(r"^Type\s+(\S+)", section, re.MULTILINE)
    value = re.search(r"^Hash\s+([0-9a-fA-F]+)", section, re.MULTILINE)
    if kind is None or value is None:
        raise SignatureError(f"{path}: [SIGNATURE] section lacks its Type or Hash line")
    if kind.group(1).lower() != "md5":
        raise SignatureError(f"{path}: signature type {kind.group(1)!r} is not supported (only md5)")
    return value.group(1).lower()


def verified_signature(path: str | Path) -> str:
    """The file's signature, after checking that the stored hash matches its bytes."""
    stored, computed = stored_signature(path), computed_signature(path)
    if stored != computed:
        raise SignatureError(
            f"{path}: stored signature {stored} does not match the file's bytes "
            f"({computed}); "
            "the file was edited after it was signed"
        )
    return computed
