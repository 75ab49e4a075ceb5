"""Weight-file formats: the registry by extension, the reader/writer contract, dtypes and errors.

In memory, canonical weights are numpy arrays in PyTorch layouts under torchvision names. bfloat16
tensors are numpy arrays of ``ml_dtypes.bfloat16`` (numpy has no bfloat16 of its own), so every
format carries float32, float16 and bfloat16 bit for bit. Readers expose tensors lazily (one at a
time, often as views of a memory map) so a conversion never holds two copies of a model.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..arrays import bfloat16
from ..errors import InputError, ResNetCoreError
from ..spec import ResNetSpec, SpecError
from ..weights_info import WeightsInfo, WeightsInfoError, legacy_preprocessing

# Version of the metadata layout resnet-core writes into weight files. Readers refuse newer ones.
FORMAT_VERSION = 1
SPEC_KEY = "resnet_core.spec"
VERSION_KEY = "resnet_core.format_version"
LIBRARY_KEY = "resnet_core.version"
INFO_KEY = "resnet_core.weights_info"  # what the weights were trained with (a WeightsInfo as JSON)

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


class WeightsFileError(ResNetCoreError, ValueError):
    """A weights file is missing pieces, corrupt, truncated or not what its extension says."""


class FormatVersionError(WeightsFileError):
    """A file written by a newer resnet-core than this one."""


def dtype_by_name(name: str) -> np.dtype:
    """numpy dtype for ``name``; bfloat16 comes from ml_dtypes (installed with the ``io`` extra)."""
    if name == "bfloat16":
        return bfloat16()
    if name not in FLOAT_DTYPES:
        raise InputError(f"Unknown dtype {name!r}: expected one of {FLOAT_DTYPES}")
    return np.dtype(name)


def dtype_name(dtype: Any) -> str:
    """'float32', 'bfloat16', ... for numpy dtypes, including ml_dtypes's."""
    return np.dtype(dtype).name


@dataclass(frozen=True)
class TensorInfo:
    """Shape and dtype of a stored tensor, known before its bytes are read (check_weights accepts it)."""

    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


_R = TypeVar("_R", bound="Reader")


class Reader:
    """An open weights file. Subclasses fill the attributes and implement :meth:`tensors` and :meth:`read`."""

    format_name = ""

    def __init__(self, path: Path):
        self.path = path
        self.stored_spec: ResNetSpec | None = None  # a spec the file carries, if any
        self.stored_info: WeightsInfo | None = None  # the trained-with record the file carries, if any
        self.producer = ""  # who wrote the file, for ``resnet-core info``

    def raw(self) -> dict[str, TensorInfo]:
        """Every tensor as the file names it (needs no spec)."""
        raise NotImplementedError

    def tensors(self, spec: ResNetSpec | None) -> dict[str, TensorInfo]:
        """Tensors under canonical names and shapes. ``spec`` is needed only where names depend on it (Keras)."""
        raise NotImplementedError

    def read(self, name: str) -> np.ndarray:
        """One canonical tensor (call :meth:`tensors` first); may be a read-only view of the file."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self: _R) -> _R:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Writers take (path, spec, tensors in plan order, get(name) -> canonical array already cast,
# progress(nbytes)) and fetch one tensor at a time, so a conversion streams.


@dataclass(frozen=True)
class Format:
    name: str
    extensions: tuple[str, ...]
    module: str  # the resnet_core.io submodule that reads and writes it
    description: str
    reader: str = "open_reader"  # (path) -> Reader
    writer: str = "write"  # a Writer

    def open(self, path: Path) -> Reader:
        return getattr(importlib.import_module(self.module), self.reader)(path)

    def write(self, path: Path, spec: ResNetSpec, tensors: dict[str, TensorInfo], get: Callable[[str], np.ndarray],
              progress: Callable[[int], None], info: WeightsInfo | None = None) -> None:
        getattr(importlib.import_module(self.module), self.writer)(path, spec, tensors, get, progress, info=info)


FORMATS = (
    Format("safetensors", (".safetensors",), "resnet_core.io.safetensors_io",
           "canonical tensors, spec in the metadata"),
    Format("pytorch", (".pth", ".pt"), "resnet_core.io.torch_io", "a PyTorch state_dict (torch.save)"),
    Format("keras-weights", (".weights.h5",), "resnet_core.io.keras_h5",
           "Keras 3 model.save_weights / load_weights of the Keras model"),
    Format("keras", (".keras",), "resnet_core.io.keras_file", "a whole Keras 3 model (model.save); writing needs Keras",
           reader="open_keras_reader", writer="write_keras"),
    Format("onnx", (".onnx",), "resnet_core.io.onnx_graph",
           "an ONNX graph of a ResNet (read only: matched by topology, proven against onnxruntime)",
           reader="open_onnx_reader", writer="write_onnx"),
)


# Not weight formats, but files a source may be (resnet_core.sources.resolve): a spec, canonical arrays.
SPEC_SUFFIX = ".json"  # ResNetSpec.to_json
ARRAYS_SUFFIX = ".npz"  # canonical names to arrays, as the parity workers exchange them


def known_extensions() -> list[str]:
    return [ext for f in FORMATS for ext in f.extensions]


def format_for(path: str | os.PathLike) -> Format:
    """The format of ``path``, by its extension (case-insensitive; the longest match wins)."""
    name = Path(path).name.lower()
    pairs = sorted(((ext, fmt) for fmt in FORMATS for ext in fmt.extensions), key=lambda p: -len(p[0]))
    for ext, fmt in pairs:
        if name.endswith(ext) and len(name) > len(ext):
            return fmt
    hint = " (a Keras weights file must end in .weights.h5)" if name.endswith(".h5") else ""
    raise InputError(f"Unknown weights format for {str(path)!r}{hint}. Known extensions: "
                     f"{', '.join(known_extensions())}")


def spec_metadata(spec: ResNetSpec, info: WeightsInfo | None = None) -> dict[str, str]:
    """String metadata every resnet-core file carries: the spec as JSON, the format version and, when
    known, the trained-with record."""
    from .. import __version__

    meta = {SPEC_KEY: spec.to_json(), VERSION_KEY: str(FORMAT_VERSION), LIBRARY_KEY: __version__}
    if info is not None:
        meta[INFO_KEY] = info.to_json()
    return meta


def info_from_metadata(meta: dict[str, Any], path: Path | str) -> WeightsInfo | None:
    """The record stored by :func:`spec_metadata`; for files written before it existed, the stored spec's
    ``preprocessing`` (then a spec field) becomes the record."""
    text = meta.get(INFO_KEY)
    if text is not None:
        try:
            return WeightsInfo.from_json(_text(text))
        except (json.JSONDecodeError, TypeError, WeightsInfoError) as exc:
            raise WeightsFileError(f"{path}: the stored {INFO_KEY} is invalid ({exc})") from None
    spec_text = meta.get(SPEC_KEY)
    if spec_text is None:
        return None
    try:
        data = json.loads(_text(spec_text))
    except json.JSONDecodeError:
        return None  # reported by spec_from_metadata
    return legacy_info(data)


def legacy_info(spec_data: Any) -> WeightsInfo | None:
    """WeightsInfo(preprocessing=...) from a spec dict that still has the old field, else None."""
    if not isinstance(spec_data, dict):
        return None
    _, mode = legacy_preprocessing(spec_data)
    try:
        return None if mode is None else WeightsInfo(preprocessing=mode)
    except WeightsInfoError as exc:
        raise WeightsFileError(f"stored spec: {exc}") from None


def spec_from_metadata(meta: dict[str, Any], path: Path) -> ResNetSpec | None:
    """The spec stored by :func:`spec_metadata`, or None; newer format versions are refused."""
    version, text = meta.get(VERSION_KEY), meta.get(SPEC_KEY)
    if version is None and text is None:
        return None
    try:
        number = int(_text(version))
    except (TypeError, ValueError):
        raise WeightsFileError(f"{path}: invalid {VERSION_KEY} {version!r} in the file's metadata") from None
    if number > FORMAT_VERSION:
        from .. import __version__

        raise FormatVersionError(
            f"{path} was written in resnet-core weights format version {number}; this resnet-core "
            f"({__version__}) reads versions up to {FORMAT_VERSION}. Upgrade resnet-core to read it")
    if text is None:
        raise WeightsFileError(f"{path}: the metadata has {VERSION_KEY} but no {SPEC_KEY}")
    return spec_from_json(_text(text), path)


def spec_from_json(text: str, path: Path | str) -> ResNetSpec:
    try:
        return ResNetSpec.from_dict(json.loads(text))
    except (json.JSONDecodeError, TypeError, AttributeError) as exc:
        raise WeightsFileError(f"{path}: the stored spec is not valid JSON for a ResNetSpec ({exc})") from None
    except SpecError as exc:
        raise WeightsFileError(f"{path}: the stored spec is invalid: {exc}") from None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def canonical_names(names: Iterable[str]) -> tuple[dict[str, str], str | None]:
    """canonical name -> stored name, and the peer whose naming the file uses (None: torchvision's, which
    timm's ResNet shares); a peer's naming is translated by its own name table (transformers' ResNetModel /
    ResNetForImageClassification)."""
    # BatchNorm's num_batches_tracked counters are training state, not weights, and are skipped;
    # DataParallel's "module." prefix is removed when every name has it.
    kept = [n for n in names if not n.endswith(".num_batches_tracked")]
    prefix = "module."
    strip = bool(kept) and all(n.startswith(prefix) for n in kept)
    stored = {(n[len(prefix):] if strip else n): n for n in kept}
    if not any(n.startswith(("embedder.", "resnet.embedder.")) for n in stored):
        return stored, None
    from ..name_tables import TRANSFORMERS_TABLES as TABLES

    classifier = any(n.startswith("resnet.") for n in stored)
    table = TABLES["ResNetForImageClassification" if classifier else "ResNetModel"]
    renamed = {}
    for name, original in stored.items():
        found = table.canonical_name(name)
        if found is None:  # not transformers' naming throughout: keep the names, the checks will report them
            return stored, None
        renamed[found[0]] = original
    return renamed, "transformers"
