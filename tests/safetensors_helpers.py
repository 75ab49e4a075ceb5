"""Safetensors bytes edited without the safetensors package (the framework-free env has none)."""

from __future__ import annotations

import json
import struct
from pathlib import Path


def strip_metadata(path: Path) -> None:
    """Rewrite a safetensors file without its ``__metadata__`` (so without the spec our writer stores)."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__")
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + raw[8 + n:])
