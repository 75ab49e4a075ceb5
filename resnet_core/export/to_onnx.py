"""ONNX: from the torch model through torch.onnx's dynamo exporter, or from the Keras model (Keras's torch
engine, whose ``Model.export(format="onnx")`` goes through the same exporter). Batch axis dynamic.

The torch export keeps its BatchNormalization nodes (torch.onnx's optimiser would fold them into the convs),
so reading the file back (:mod:`resnet_core.io.onnx_graph`) gives the same spec and weights, bit for bit;
onnxruntime folds them itself when it creates a session, so inference is as fast.
"""

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
                                    verbose=False, optimize=False)
    optimize_keeping_norms(program.model)
    program.save(str(path))
    set_metadata(path, metadata)


def optimize_keeping_norms(model: Any) -> None:
    """torch.onnx's own optimisation (constant folding, its rewrite rules) but for the rule that folds batch norms
    into convs, in place on an onnx_ir model."""
    from onnxscript import optimizer, rewriter

    try:  # onnxscript's private names: should a release move them, export as torch.onnx does (norms folded)
        from onnxscript.rewriter.rules.common import _fuse_batchnorm

        rules = [r for r in rewriter._DEFAULT_REWRITE_RULES if r not in set(_fuse_batchnorm.rules)]
    except (ImportError, AttributeError):
        optimizer.optimize(model)
        return
    optimizer.fold_constants(model)
    rewriter.rewrite(model, pattern_rewrite_rules=rules)
    optimizer.remove_unused_nodes(model)


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
