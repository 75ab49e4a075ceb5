"""The export formats: which extension or name picks each, which model it comes from, what it needs."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

from ..errors import InputError


class ExportError(InputError):
    """A request an exporter cannot carry out (unknown format, a combination the format cannot express)."""


@dataclass(frozen=True)
class ExportFormat:
    name: str
    extensions: tuple[str, ...]  # "" for a folder
    folder: bool
    origins: tuple[str, ...]  # the models it is written from, default first: "torch" | "keras"
    description: str

    def default_origin(self) -> str:
        return self.origins[0]


FORMATS = (
    ExportFormat("onnx", (".onnx",), False, ("torch", "keras"),
                 "ONNX, from the torch model (torch.onnx dynamo exporter) or, with --from keras, the Keras one"),
    ExportFormat("pt2", (".pt2",), False, ("torch",), "torch.export ExportedProgram (torch.export.save)"),
    ExportFormat("saved_model", (), True, ("keras",), "TensorFlow SavedModel folder (Keras Model.export)"),
    ExportFormat("tflite", (".tflite",), False, ("keras",), "LiteRT flatbuffer, converted from the Keras model"),
)
BY_NAME = {f.name: f for f in FORMATS}

# (format, origin) -> the Keras engine the export runs on; torch exports run in the calling process.
KERAS_ENGINE = {("saved_model", "keras"): "tensorflow", ("tflite", "keras"): "tensorflow",
                ("onnx", "keras"): "torch"}

# (format, origin) -> [(import name, pip extra)] that must be importable to export.
REQUIREMENTS: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {
    ("onnx", "torch"): (("torch", "torch"), ("onnx", "onnx"), ("onnxscript", "onnx")),
    ("onnx", "keras"): (("keras", "keras"), ("torch", "torch"), ("onnx", "onnx"), ("onnxscript", "onnx")),
    ("pt2", "torch"): (("torch", "torch"),),
    ("saved_model", "keras"): (("keras", "tensorflow"), ("tensorflow", "tensorflow")),
    ("tflite", "keras"): (("keras", "litert"), ("tensorflow", "litert")),
}
QUANTIZE_REQUIREMENTS = (("onnxruntime", "onnx"), ("onnx", "onnx"))


def format_for(path: str | os.PathLike, name: str | None = None) -> ExportFormat:
    """The format ``name`` gives, else the one ``path``'s extension names."""
    if name is not None:
        key = name.lower().replace("-", "_")
        if key not in BY_NAME:
            raise ExportError(f"Unknown export format {name!r}. Expected one of {', '.join(BY_NAME)}")
        fmt = BY_NAME[key]
        if fmt.extensions and not str(path).lower().endswith(fmt.extensions):
            raise ExportError(f"A {fmt.name} file ends with {' or '.join(fmt.extensions)}; got {str(path)!r}")
        return fmt
    lower = str(path).lower()
    for fmt in FORMATS:
        if fmt.extensions and lower.endswith(fmt.extensions):
            return fmt
    known = ", ".join(e for f in FORMATS for e in f.extensions)
    raise ExportError(f"Cannot tell the export format of {str(path)!r}: expected an extension among {known}, "
                      "or --format saved_model for a SavedModel folder")


def missing_requirements(requirements: tuple[tuple[str, str], ...]) -> str | None:
    """One line naming what is not installed and the extra that installs it, or None. Imports nothing."""
    missing = [(module, extra) for module, extra in requirements if importlib.util.find_spec(module) is None]
    if not missing:
        return None
    extras = sorted({extra for _, extra in missing})
    return (f"needs {', '.join(m for m, _ in missing)}, which is not installed: "
            f"pip install 'resnet-core[{','.join(extras)}]'")
