"""PyTorch ``.pth``/``.pt``: read only through ``torch.load(weights_only=True)``, written as a bare state_dict.

A pickle that needs anything beyond tensors and plain containers is refused by torch's restricted
unpickler before any of it runs. Zip-format files are memory-mapped, so reading a model costs page
cache, not a second copy. Files we write stay loadable by ``model.load_state_dict(torch.load(f))``:
the spec rides in the state_dict's ``_metadata`` (the per-module dict torch already pickles with
every state_dict), under the root module's entry, which no module reads.
"""

from __future__ import annotations

import collections
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..arrays import to_numpy, to_torch
from ..errors import MissingDependencyError
from ..spec import ResNetSpec
from ..weights_info import WeightsInfo
from .formats import (
    LIBRARY_KEY,
    VERSION_KEY,
    Reader,
    TensorInfo,
    WeightsFileError,
    canonical_names,
    dtype_by_name,
    info_from_metadata,
    spec_from_metadata,
    spec_metadata,
)

# Checkpoint wrappers around the state_dict, as training scripts save them, in the order tried.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "weights")


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError("Reading and writing .pth/.pt files needs PyTorch: "
                                     "pip install 'resnet-core[torch]'") from exc
    return torch


def _numpy_dtype(tensor: Any) -> np.dtype:
    torch = _torch()
    if tensor.dtype == torch.bfloat16:
        return dtype_by_name("bfloat16")
    return np.dtype(str(tensor.dtype).replace("torch.", ""))


def _load(path: Path) -> Any:
    torch = _torch()
    with open(path, "rb") as f:
        magic = f.read(4)
    if not magic:
        raise WeightsFileError(f"{path} is empty, not a PyTorch file")
    is_zip = magic.startswith(b"PK")
    if not is_zip and not magic.startswith(b"\x80"):
        raise WeightsFileError(f"{path} is not a PyTorch file (neither a torch.save zip archive nor a pickle)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as exc:
        raise WeightsFileError(
            f"Refused to load {path}: its pickle holds more than tensors ({_reason(exc)}). It was read with "
            "torch.load(weights_only=True) and nothing in it was run; re-save the bare state_dict if you trust it"
        ) from None
    except Exception as exc:  # weights_only runs no code of the file's: whatever fails is the file's damage
        if isinstance(exc, (FileNotFoundError, PermissionError)):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise WeightsFileError(f"{path} is truncated or corrupt: torch.load failed ({first})") from None


def _reason(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "GLOBAL" in line or line.startswith("Unsupported"):
            return line.rstrip(".")
    return "constructs the restricted unpickler does not allow"


def _is_tensor(value: Any) -> bool:
    return isinstance(value, _torch().Tensor)


def _state_dict(obj: Any, path: Path) -> Mapping[str, Any]:
    """The state_dict inside ``obj``: bare, or under one of the usual wrapper keys."""
    if not isinstance(obj, Mapping):
        raise WeightsFileError(f"{path} holds a {type(obj).__name__}, not a state_dict (a dict of tensors)")
    if obj and all(_is_tensor(v) for v in obj.values()):
        return obj
    for key in WRAPPER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner and any(_is_tensor(v) for v in inner.values()):
            return _state_dict(inner, path)
    if any(_is_tensor(v) for v in obj.values()):
        odd = [f"{k} ({type(v).__name__})" for k, v in obj.items() if not _is_tensor(v)]
        raise WeightsFileError(f"{path}: the state_dict holds non-tensor entries: {', '.join(odd[:10])}")
    raise WeightsFileError(f"{path} holds no state_dict: top-level keys {sorted(map(str, obj))[:10]}; looked "
                           f"for a dict of tensors, bare or under {', '.join(WRAPPER_KEYS)}")


class TorchReader(Reader):
    format_name = "pytorch"

    def __init__(self, path: Path):
        super().__init__(path)
        state = _state_dict(_load(path), path)
        meta = dict((getattr(state, "_metadata", None) or {}).get("", {}) or {})
        self.stored_spec = spec_from_metadata(meta, path)
        self.stored_info = info_from_metadata(meta, path)
        self.producer = (f"resnet-core {meta[LIBRARY_KEY]} (weights format {meta.get(VERSION_KEY)})"
                         if LIBRARY_KEY in meta else "PyTorch state_dict")
        self._state = state
        self._names, naming = canonical_names(state)
        if naming is not None:
            self.producer += f", in {naming}' naming"
        self._tensors = {c: TensorInfo(tuple(state[s].shape), _numpy_dtype(state[s])) for c, s in self._names.items()}

    def raw(self) -> dict[str, TensorInfo]:
        return {name: TensorInfo(tuple(t.shape), _numpy_dtype(t)) for name, t in self._state.items()}

    def tensors(self, spec: ResNetSpec | None = None) -> dict[str, TensorInfo]:
        return dict(self._tensors)

    def read(self, name: str) -> np.ndarray:
        return to_numpy(self._state[self._names[name]])

    def close(self) -> None:
        self._state = {}


def open_reader(path: Path) -> TorchReader:
    return TorchReader(path)


def write(path: Path, spec: ResNetSpec, tensors: dict[str, Any], get: Callable[[str], np.ndarray],
          progress: Callable[[int], None], info: WeightsInfo | None = None) -> None:
    torch = _torch()
    state: collections.OrderedDict[str, Any] = collections.OrderedDict()
    for name, tensor in tensors.items():
        state[name] = to_torch(get(name))
        progress(tensor.nbytes)
    # torch.load_state_dict hands _metadata[""] to the root module only, which ignores keys it does not know.
    state._metadata = collections.OrderedDict({"": spec_metadata(spec, info)})  # type: ignore[attr-defined]
    torch.save(state, path)
