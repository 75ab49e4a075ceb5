"""ONNX: from the torch model through torch.onnx's dynamo exporter, or from the Keras model (Keras's torch
engine, whose ``Model.export(format="onnx")`` goes through the same exporter). Batch axis dynamic."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

from .metadata import INPUT_NAME

DEFAULT_OPSET = 18  # torch.onnx's dynamo exporter's own; ONNX Runtime >= 1.14 runs it
EXPORT_BATCH = 2  # traced at 2 so no axis is specialised to 1


def write_from_torch(model: Any, path: Path, size: tuple[int, int], opset: int, metadata: dict[str, str],
                     output: str) -> None:
    import torch

    x = torch.zeros(EXPORT_BATCH, model.spec.in_channels, *size)
    batch = torch.export.Dim("batch", min=1)
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates each step
        program = torch.onnx.export(model.eval(), (x,), dynamo=True, dynamic_shapes=({0: batch},),
                                    input_names=[INPUT_NAME], output_names=[output], opset_version=opset,
                                    verbose=False)
    program.save(str(path))
    set_metadata(path, metadata)


def write_from_keras(model: Any, path: Path, size: tuple[int, int], opset: int, metadata: dict[str, str],
                     output: str) -> None:
    import keras

    signature = [keras.InputSpec(shape=(None, *size, model.spec.in_channels), dtype="float32", name=INPUT_NAME)]
    with contextlib.redirect_stdout(io.StringIO()):
        model.export(str(path), format="onnx", input_signature=signature, opset_version=opset, verbose=False)
    set_metadata(path, metadata)


def set_metadata(path: Path, metadata: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, metadata)
    onnx.save(proto, str(path))


def read_metadata(path: str | Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
