"""Export a model to a deployable artifact: ONNX, torch.export (.pt2), TensorFlow SavedModel, LiteRT (.tflite).

Each format is written from one of our models: torch formats from the torch model in this process, the
TensorFlow ones from the Keras model on the TensorFlow engine (in a child process unless this process
already runs that engine). Outputs appear whole or not at all. ``import resnet_core.export`` imports no
framework.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from ..errors import MissingDependencyError
from .formats import (
    FORMATS,
    KERAS_ENGINE,
    QUANTIZE_REQUIREMENTS,
    REQUIREMENTS,
    ExportError,
    ExportFormat,
    format_for,
    missing_requirements,
)
from .metadata import artifact_metadata, output_name
from .quantize import QUANTIZE_MODES
from .source import Source, resolve_source
from .to_onnx import DEFAULT_OPSET

DEFAULT_SIZE = (224, 224)


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    origin: str  # the model it was written from: torch | keras
    spec: str
    source: str  # where the weights came from
    size: tuple[int, int]
    opset: int | None
    quantize: str | None
    seconds: float
    metadata: dict[str, str]


def _check_request(fmt: ExportFormat, origin: str | None, quantize: str | None, calibration: Any) -> str:
    origin = origin or fmt.default_origin()
    if origin not in ("torch", "keras"):
        raise ExportError(f"Unknown model to export from {origin!r}. Expected 'torch' or 'keras'")
    if origin not in fmt.origins:
        raise ExportError(f"{fmt.name} is written from the {fmt.default_origin()} model only, not from {origin}")
    if quantize is not None:
        if quantize not in QUANTIZE_MODES:
            raise ExportError(f"Unknown quantisation {quantize!r}. Expected one of {', '.join(QUANTIZE_MODES)}")
        if fmt.name != "onnx":
            raise ExportError(f"quantize={quantize} needs an .onnx output (ONNX Runtime static quantisation); "
                              f"{fmt.name} cannot hold it")
        if calibration is None:
            raise ExportError(f"quantize={quantize} needs calibration=IMAGES.npy (NCHW, preprocessed)")
    elif calibration is not None:
        raise ExportError("calibration= is only used with quantize=int8")
    return origin


def _check_installed(fmt: ExportFormat, origin: str, quantize: str | None) -> None:
    needs = REQUIREMENTS[(fmt.name, origin)] + (QUANTIZE_REQUIREMENTS if quantize else ())
    missing = missing_requirements(needs)
    if missing is not None:
        raise MissingDependencyError(f"Exporting {fmt.name} from the {origin} model {missing}")


def _size(size: Any, images: Any) -> tuple[int, int]:
    if size is None:
        return tuple(images.shape[2:]) if images is not None else DEFAULT_SIZE
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
        raise ExportError(f"size must be a positive int or (height, width). Received: {size!r}")
    if images is not None and tuple(images.shape[2:]) != tuple(size):
        raise ExportError(f"The calibration images are {images.shape[2]}x{images.shape[3]} but the export size is "
                          f"{size[0]}x{size[1]}")
    return int(size[0]), int(size[1])


def export(model_or_source: Any, path: str | os.PathLike, format: str | None = None, origin: str | None = None,
           size: int | tuple[int, int] | None = None, opset: int = DEFAULT_OPSET, quantize: str | None = None,
           calibration: str | os.PathLike | None = None, spec: Any = None, overwrite: bool = False) -> ExportResult:
    """Write ``model_or_source`` to ``path`` as the format its extension (or ``format``) names.

    The source is a resnet_core model, a ``(spec, weights)`` pair, or anything :func:`resnet_core.build` takes
    (a weights file, a model folder, a hub name; a preset name, ResNetSpec or spec ``.json`` gets random weights).
    ``origin`` picks the model the artifact is written from ("torch" or "keras"; default: the format's own).
    The batch axis is dynamic; height and width are fixed at ``size`` (default 224, or the calibration
    images'). ``quantize="int8"`` (ONNX only) calibrates on ``calibration``, an ``.npy`` of preprocessed
    NCHW images. The input layout and preprocessing are written into the artifact's metadata.

    Args:
        model_or_source: A model built by resnet_core, a ``(spec, weights)`` pair, a weights file (or
            canonical ``.npz``), a model folder, an ``hf-hub:``/``torchvision:``/``local-dir:`` name, or an
            architecture (preset name, ResNetSpec, spec ``.json``).
        path: The output: ``.onnx``, ``.pt2``, ``.tflite``, or a folder for a SavedModel.
        format: The format when the extension does not say (``"saved_model"``).
        origin: ``"torch"`` or ``"keras"``, the model the artifact is written from.
        size: Input height and width (one int for both).
        opset: The ONNX opset.
        quantize: ``"int8"`` for a statically quantized ONNX model.
        calibration: An ``.npy`` of preprocessed NCHW images, for ``quantize``.
        spec: The architecture of a weights file that does not store one.
        overwrite: Replace an existing output.

    Returns:
        An :class:`ExportResult`: the path, format, origin, spec, size, opset and quantization written.

    Raises:
        ExportError: An unknown format, or a combination it cannot express (origin, quantize, opset, size).
        OutputExistsError: ``path`` exists and ``overwrite`` is false.
        MissingDependencyError: The exporter's framework or package is not installed.
        UnknownNameError: ``model_or_source`` is a bare name and no preset.
        MissingFileError: ``model_or_source`` is a path that does not exist.

    Example:
        The format is settled before any framework loads:

        >>> import resnet_core as rc
        >>> rc.export("resnet18", "resnet18.bin")
        Traceback (most recent call last):
        ...
        resnet_core.export.formats.ExportError: Cannot tell the export format of 'resnet18.bin': expected ...

        With PyTorch and onnx installed:

        ```python
        result = rc.export("resnet50", "resnet50.onnx", size=224)
        result.format, result.origin  # ('onnx', 'torch')
        ```
    """
    from ..io.atomic import atomic_folder, atomic_output, check_folder_output, check_output

    start = time.perf_counter()
    path = Path(path)
    fmt = format_for(path, format)
    origin = _check_request(fmt, origin, quantize, calibration)
    if not isinstance(opset, int) or not 7 <= opset <= 30:
        raise ExportError(f"opset must be an ONNX opset number (e.g. {DEFAULT_OPSET}). Received: {opset!r}")
    (check_folder_output if fmt.folder else check_output)(path, overwrite)
    source = resolve_source(model_or_source, spec)
    _check_installed(fmt, origin, quantize)
    images = None
    if quantize:
        from .quantize import load_calibration

        images = load_calibration(cast("str | os.PathLike", calibration), source.spec.in_channels)  # checked above
    hw = _size(size, images)
    layout = "NCHW" if origin == "torch" else "NHWC"
    metadata = artifact_metadata(source.spec, layout, hw, source.info)
    if fmt.folder:
        with atomic_folder(path, overwrite) as tmp:
            _write(fmt, origin, source, tmp, hw, opset, metadata)
    else:
        with atomic_output(path, overwrite, suffix=fmt.extensions[0]) as tmp:
            if quantize:
                _write_quantized(fmt, origin, source, tmp, hw, opset, metadata, images)
            else:
                _write(fmt, origin, source, tmp, hw, opset, metadata)
    return ExportResult(path, fmt.name, origin, source.spec.name, source.note, hw,
                        opset if fmt.name == "onnx" else None, quantize, time.perf_counter() - start, metadata)


def _write(fmt: ExportFormat, origin: str, source: Source, tmp: Path, size: tuple[int, int], opset: int,
           metadata: dict[str, str]) -> None:
    from .writers import write_in_engine, write_torch

    if origin == "torch":
        write_torch(fmt.name, source, tmp, size, opset, metadata)
    else:
        write_in_engine(KERAS_ENGINE[(fmt.name, origin)], fmt.name, source, tmp, size, opset, metadata)


def _write_quantized(fmt: ExportFormat, origin: str, source: Source, tmp: Path, size: tuple[int, int], opset: int,
                     metadata: dict[str, str], images: Any) -> None:
    import tempfile

    from .quantize import quantize_int8

    with tempfile.TemporaryDirectory(prefix="resnet-core-export-") as scratch:
        fp32 = Path(scratch) / "model.onnx"
        _write(fmt, origin, source, fp32, size, opset, metadata)
        quantize_int8(fp32, tmp, images, metadata)


def read_metadata(path: str | os.PathLike, format: str | None = None) -> dict[str, str]:
    """The metadata an artifact written by :func:`export` carries (layout, preprocessing, spec)."""
    import importlib

    fmt = format_for(path, format) if format or not Path(path).is_dir() else format_for(path, "saved_model")
    return importlib.import_module(f"{__name__}.to_{fmt.name}").read_metadata(path)


__all__ = ["DEFAULT_OPSET", "FORMATS", "ExportError", "ExportResult", "export", "output_name", "read_metadata",
           "resolve_source"]
