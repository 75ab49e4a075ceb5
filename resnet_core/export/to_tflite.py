"""LiteRT (.tflite), converted from the Keras model on the TensorFlow engine by Keras's own LiteRT export;
the metadata is a named buffer in the flatbuffer's ``metadata`` table."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

from ..errors import InputError
from .metadata import INPUT_NAME

METADATA_NAME = "resnet_core"


def write_from_keras(model: Any, path: Path, size: tuple[int, int], opset: int, metadata: dict[str, str],
                     output: str) -> None:
    import keras

    signature = [keras.InputSpec(shape=(None, *size, model.spec.in_channels), dtype="float32", name=INPUT_NAME)]
    with contextlib.redirect_stdout(io.StringIO()):
        model.export(str(path), format="litert", input_signature=signature, verbose=False)
    _add_metadata(path, json.dumps(metadata).encode())


def _add_metadata(path: Path, payload: bytes) -> None:
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    buffer = schema.BufferT()
    buffer.data = list(payload)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    flatbuffer_utils.write_model(model, str(path))


def read_metadata(path: str | Path) -> dict[str, str]:
    """Read with the flatbuffer schema alone (no interpreter)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    for entry in model.metadata or []:
        name = entry.name.decode() if isinstance(entry.name, bytes) else entry.name
        if name == METADATA_NAME:
            return json.loads(bytes(model.buffers[entry.buffer].data))
    raise InputError(f"{path} has no {METADATA_NAME!r} metadata: not a .tflite written by resnet-core export")
