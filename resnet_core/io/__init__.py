"""Weight files: lossless conversion between safetensors, PyTorch, Keras ``.weights.h5`` and ``.keras``.

Importing this package imports no framework; each format loads its library (torch, h5py, keras) on use.
"""

from .api import (
    ConvertResult,
    LoadedWeights,
    OpenedWeights,
    convert,
    describe,
    open_weights,
    read_weights,
    resolve_spec,
    write_weights,
)
from .formats import FORMAT_VERSION, FORMATS, FormatVersionError, WeightsFileError, format_for, known_extensions
from .infer import InferenceError, infer_spec

__all__ = [
    "FORMATS", "FORMAT_VERSION", "ConvertResult", "FormatVersionError", "InferenceError", "LoadedWeights",
    "OpenedWeights", "WeightsFileError", "convert", "describe", "format_for", "infer_spec", "known_extensions",
    "open_weights", "read_weights", "resolve_spec", "write_weights",
]
