"""safetensors: the canonical file. Read through a memory map and written tensor by tensor.

The format is an 8-byte little-endian header length, a JSON header and the raw bytes. Handling it
here (rather than through the ``safetensors`` package, which the tests use as the reference) keeps
bfloat16 exact on every numpy, needs no framework, and streams: a write never holds the whole model
and a read returns views of the mapped file. Every header is validated before any tensor is used.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..spec import ResNetSpec
from ..weights_info import WeightsInfo
from .formats import (
    LIBRARY_KEY,
    VERSION_KEY,
    Reader,
    TensorInfo,
    WeightsFileError,
    canonical_names,
    dtype_name,
    info_from_metadata,
    spec_from_metadata,
    spec_metadata,
)
from .pipeline import prefetch

# safetensors dtype codes -> numpy dtype names ("bfloat16" and the float8s come from ml_dtypes).
CODES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
    "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
}
NAMES = {v: k for k, v in CODES.items()}
MAX_HEADER = 100 * 1024 * 1024  # the reference implementation's limit


def _numpy_dtype(code: str) -> np.dtype:
    name = CODES[code]
    if name in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):
        import ml_dtypes

        return np.dtype(getattr(ml_dtypes, name))
    return np.dtype(name).newbyteorder("<")


class SafetensorsReader(Reader):
    format_name = "safetensors"

    def __init__(self, path: Path):
        super().__init__(path)
        self._entries, meta, self._data_start = _parse_header(path)
        self.metadata = meta
        self.stored_spec = spec_from_metadata(meta, path)
        self.stored_info = info_from_metadata(meta, path)
        if LIBRARY_KEY in meta:
            self.producer = f"resnet-core {meta[LIBRARY_KEY]} (weights format {meta.get(VERSION_KEY)})"
        else:
            self.producer = "safetensors" + (f" (format {meta['format']!r})" if "format" in meta else "")
        self._names, naming = canonical_names(self._entries)
        if naming is not None:
            self.producer += f", in {naming}' naming"
        self._map: np.memmap | None = None

    def raw(self) -> dict[str, TensorInfo]:
        return {name: info for name, (info, _, _) in self._entries.items()}

    def tensors(self, spec: ResNetSpec | None = None) -> dict[str, TensorInfo]:
        return {canonical: self._entries[stored][0] for canonical, stored in self._names.items()}

    def read(self, name: str) -> np.ndarray:
        info, begin, end = self._entries[self._names[name]]
        if begin == end:
            return np.zeros(info.shape, info.dtype)
        if self._map is None:
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r", offset=self._data_start)
        return self._map[begin:end].view(info.dtype).reshape(info.shape)

    def close(self) -> None:
        self._map = None


def open_reader(path: Path) -> SafetensorsReader:
    return SafetensorsReader(path)


def _corrupt(path: Path, problem: str) -> WeightsFileError:
    return WeightsFileError(f"{path} is not a valid safetensors file (truncated or corrupt?): {problem}")


def _parse_header(path: Path) -> tuple[dict[str, tuple[TensorInfo, int, int]], dict[str, str], int]:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise _corrupt(path, f"the file has {size} bytes, fewer than the 8-byte header length")
        (length,) = struct.unpack("<Q", head)
        if length > MAX_HEADER or 8 + length > size:
            raise _corrupt(path, f"the header claims {length} bytes but the file has {size}")
        raw = f.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _corrupt(path, f"the header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise _corrupt(path, "the header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _corrupt(path, "__metadata__ must map strings to strings")
    data_size = size - 8 - length
    entries: dict[str, tuple[TensorInfo, int, int]] = {}
    for name, entry in header.items():
        entries[name] = _entry(path, name, entry)
    spans = sorted((begin, end, name) for name, (_, begin, end) in entries.items())
    cursor = 0
    for begin, end, name in spans:
        if begin != cursor:
            raise _corrupt(path, f"tensor {name!r} starts at byte {begin}, expected {cursor} (overlap or gap)")
        cursor = end
    if cursor > data_size:
        raise _corrupt(path, f"the tensors need {cursor} bytes of data but the file holds {data_size}")
    if cursor < data_size:
        raise _corrupt(path, f"{data_size - cursor} bytes after the last tensor")
    return entries, meta, 8 + length


def _entry(path: Path, name: str, entry: Any) -> tuple[TensorInfo, int, int]:
    if not isinstance(entry, dict) or {"dtype", "shape", "data_offsets"} - set(entry):
        raise _corrupt(path, f"tensor {name!r} needs dtype, shape and data_offsets")
    code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if code not in CODES:
        raise WeightsFileError(f"{path}: tensor {name!r} has dtype {code!r}, which resnet-core does not read. "
                               f"Known: {', '.join(CODES)}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise _corrupt(path, f"tensor {name!r} has shape {shape!r}")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(o, int) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]):
        raise _corrupt(path, f"tensor {name!r} has data_offsets {offsets!r}")
    dtype = _numpy_dtype(code)
    info = TensorInfo(tuple(shape), dtype)
    if offsets[1] - offsets[0] != math.prod(shape) * dtype.itemsize:
        raise _corrupt(path, f"tensor {name!r} of shape {tuple(shape)} and dtype {code} spans "
                             f"{offsets[1] - offsets[0]} bytes")
    return info, offsets[0], offsets[1]


def write(path: Path, spec: ResNetSpec, tensors: dict[str, TensorInfo], get: Callable[[str], np.ndarray],
          progress: Callable[[int], None], info: WeightsInfo | None = None) -> None:
    header: dict[str, Any] = {"__metadata__": {"format": "pt", **spec_metadata(spec, info)}}
    offset = 0
    for name, tensor in tensors.items():
        header[name] = {"dtype": NAMES[dtype_name(tensor.dtype)], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + tensor.nbytes]}
        offset += tensor.nbytes
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)  # 8-byte aligned data, as the reference writer does
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name, array in prefetch(tensors, lambda name: np.ascontiguousarray(get(name)),
                                    lambda name: tensors[name].nbytes):
            announced = tensors[name]
            if array.shape != announced.shape or array.dtype != announced.dtype:  # pragma: no cover - a reader bug
                raise RuntimeError(f"{name}: got {array.dtype}{array.shape}, announced {announced.dtype}"
                                   f"{announced.shape}")
            if array.dtype.byteorder == ">":  # pragma: no cover - big-endian hosts
                array = array.byteswap()
            f.write(array.reshape(-1).view(np.uint8).data)
            progress(array.nbytes)
