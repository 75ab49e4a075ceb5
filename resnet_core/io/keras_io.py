"""Keras 3 files: ``.weights.h5`` read and written with h5py alone, ``.keras`` written through Keras.

``model.save_weights`` stores each layer at ``layers/<snake_case class>[_N]/vars/<i>``, numbered in
``model.layers`` order, which Keras derives from the graph (depth from the output, then traversal
order). :func:`keras_layout` reproduces that order from :func:`resnet_core.keras_graph.keras_graph`,
the very layer list the Keras adapter instantiates, so a file is written with no Keras model, in any
engine or none; the tests check the layout against real models and files on every engine. Reading
goes by the layer name Keras records on each group (``vars.attrs["name"]``) and falls back on the
layout for files without names.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import struct
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, MissingDependencyError, ResNetCoreError
from ..keras_graph import VARIABLES, KerasLayer, keras_graph
from ..layouts import Layout
from ..mapping import KERAS_VARIABLE, keras_table
from ..plan import CANONICAL_SUFFIX, Plan, make_plan
from ..spec import ResNetSpec
from .formats import (
    LIBRARY_KEY,
    SPEC_KEY,
    VERSION_KEY,
    Reader,
    TensorInfo,
    WeightsFileError,
    dtype_by_name,
    spec_from_json,
    spec_from_metadata,
    spec_metadata,
)
from .pipeline import prefetch
from .transpose import to_framework

ROLE_OF = {variable: role for role, variable in KERAS_VARIABLE.items()}
KERAS_CLASS = "KerasResNet"
KERAS_REGISTERED = "resnet_core>KerasResNet"
WEIGHTS_MEMBER = "model.weights.h5"


def snake_case(name: str) -> str:
    """keras.src.utils.naming.to_snake_case: how Keras names a layer's group in a weights file."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


@dataclass(frozen=True)
class StoredLayer:
    """One layer of the Keras model as a weights file stores it."""

    name: str
    cls: str  # Keras class name
    inputs: tuple[str, ...]
    variables: tuple[str, ...]
    group: str  # h5 path, e.g. "layers/conv2d_3"


def _ordered(layers: dict[str, KerasLayer], output: str) -> list[str]:
    """model.layers order, as keras.src.ops.function.map_graph computes it."""
    index: dict[str, int] = {}
    post: list[str] = []  # nodes from inputs to output (DFS post-order)
    finished: set[str] = set()
    index[output] = 0
    stack = [(output, iter(layers[output].inputs))]
    while stack:
        node, pending = stack[-1]
        parent = next(pending, None)
        if parent is None:
            stack.pop()
            finished.add(node)
            post.append(node)
        elif parent not in finished:
            index.setdefault(parent, len(index))
            stack.append((parent, iter(layers[parent].inputs)))
    depth: dict[str, int] = {}
    for node in reversed(post):
        d = depth.setdefault(node, 0)
        for parent in layers[node].inputs:
            depth[parent] = max(d + 1, depth.get(parent, 0))
    return sorted(post, key=lambda n: (-depth[n], index[n]))


def keras_layout(plan: Plan) -> list[StoredLayer]:
    """Every layer of the Keras model of ``plan`` in ``model.layers`` order, with its h5 group.

    The layers are the Keras adapter's own (:func:`resnet_core.keras_graph.keras_graph`); only Keras's
    ordering and group naming are reproduced here.
    """
    graph, output = keras_graph(plan)
    layers = {layer.name: layer for layer in graph}
    counts: dict[str, int] = {}
    out = []
    for name in _ordered(layers, output):
        layer = layers[name]
        snake = snake_case(layer.cls)
        n = counts[snake] = counts.get(snake, -1) + 1
        out.append(StoredLayer(layer.name, layer.cls, layer.inputs, layer.variables,
                               f"layers/{snake}" + (f"_{n}" if n else "")))
    # The table and the graph must agree on every weighted layer, or the file would be wrong.
    table: dict[str, list[str]] = {}
    for row in keras_table(plan):
        table.setdefault(row.layer, []).append(row.variable)
    graph = {layer.name: list(layer.variables) for layer in out if layer.variables}
    if graph != table:  # pragma: no cover - guards the graph and the conversion table against drifting apart
        raise NotImplementedError(
            "The Keras weights layout and the conversion table disagree for this plan: "
            f"only in the layout {sorted(set(graph) - set(table))}, "
            f"only in the table {sorted(set(table) - set(graph))}")
    return out


# --- .weights.h5 --------------------------------------------------------------------------------------------

def _h5py():
    try:
        import h5py
    except ImportError as exc:
        raise MissingDependencyError("Keras weight files need h5py: pip install 'resnet-core[io]'") from exc
    return h5py


def write(path: Path, spec: ResNetSpec, tensors: dict[str, TensorInfo], get: Callable[[str], np.ndarray],
          progress: Callable[[int], None]) -> None:
    """A ``.weights.h5`` exactly as ``model.save_weights`` of the Keras model writes it, plus the spec as
    root attributes (which Keras ignores)."""
    h5py = _h5py()
    plan = make_plan(spec)
    rows = {row.path: row for row in keras_table(plan)}
    layout = keras_layout(plan)
    variables = [(layer.name, i, rows[f"{layer.name}/{v}"]) for layer in layout for i, v in enumerate(layer.variables)]

    def prepare(item: tuple[str, int, Any]) -> np.ndarray:
        row = item[2]
        return to_framework(row.layout, get(row.canonical))

    with h5py.File(path, "w") as f:
        for key, value in spec_metadata(spec).items():
            f.attrs[key] = value
        f.create_group("vars").attrs["name"] = spec.name  # the model's own (empty) entry, as Keras writes it
        groups = {}
        for layer in layout:
            groups[layer.name] = f.create_group(layer.group).create_group("vars")
            groups[layer.name].attrs["name"] = layer.name
        for (name, i, _), value in prefetch(variables, prepare, lambda item: tensors[item[2].canonical].nbytes):
            dataset = groups[name].create_dataset(str(i), data=value)
            if value.dtype.name == "bfloat16":  # as Keras's H5IOStore stores it: opaque 2-byte values, tagged
                dataset.attrs["dtype"] = "bfloat16"
            progress(value.nbytes)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _canonical_guess(layer: str, variable: str) -> str:
    """Canonical name for a Keras path whose spec is unknown: '_' in layer names stood for '.'."""
    return f"{layer.replace('_', '.')}.{CANONICAL_SUFFIX[ROLE_OF[variable]]}"


def _peer_table(layers: list[str]) -> Any:
    """keras.applications' name table when the file's layers are named as keras.applications names them
    (``model.save_weights`` of its ResNet50/101/152 or V2), else None. keras-hub's files are not read by
    name: its v1 and vd blocks differ only in a weightless pooling layer, which a weights file does not show.
    """
    if "conv1_conv" not in layers or not any(n.startswith("conv2_block1_") for n in layers):
        return None
    from ..name_tables import KERAS_APPLICATIONS, KERAS_APPLICATIONS_V2

    v2 = "post_bn" in layers or any(n.endswith("_preact_bn") for n in layers)
    return KERAS_APPLICATIONS_V2 if v2 else KERAS_APPLICATIONS


def _layout_guess(cls: str, variable: str) -> Layout:
    if variable == "kernel":
        return {"Conv2D": Layout.CONV, "StdConv2D": Layout.CONV, "Conv1D": Layout.CONV1D}.get(cls, Layout.DENSE)
    return Layout.SAME


# What h5py raises on a damaged file, depending on which HDF5 call meets the damage first (found by fuzzing).
H5_DAMAGE = (OSError, KeyError, ValueError, RuntimeError, TypeError)


class KerasH5Reader(Reader):
    format_name = "keras-weights"

    def __init__(self, path: Path, fileobj: Any = None):
        super().__init__(path)
        h5py = _h5py()
        self._fileobj = fileobj
        try:
            self._file = h5py.File(fileobj if fileobj is not None else path, "r")
        except H5_DAMAGE as exc:
            if fileobj is not None:
                fileobj.close()
            raise WeightsFileError(f"{path} is not a readable HDF5 file (truncated or corrupt?): {exc}") from None
        self._groups: dict[str, tuple[str, str | None, list[Any]]] = {}  # key -> (class, layer name, datasets)
        try:
            self._scan(h5py)
            attrs = {k: _text(v) for k, v in self._file.attrs.items() if k in (SPEC_KEY, VERSION_KEY, LIBRARY_KEY)}
        except H5_DAMAGE as exc:
            self.close()
            if isinstance(exc, ResNetCoreError):
                raise
            raise WeightsFileError(f"{path} is not a valid Keras weights file (truncated or corrupt?): {exc}") \
                from None
        self.stored_spec = spec_from_metadata(attrs, path)
        self.producer = (f"resnet-core {attrs[LIBRARY_KEY]} (weights format {attrs.get(VERSION_KEY)})"
                         if LIBRARY_KEY in attrs else "Keras save_weights")
        # keras.applications' name table when the layers keep its names; tensors() reads through it.
        self._peer = _peer_table([name for _, name, datasets in self._groups.values() if datasets and name])
        if self._peer is not None:
            self.producer += ", in keras.applications' naming"
        self._map: dict[str, tuple[Any, Layout]] = {}

    def _scan(self, h5py: Any) -> None:
        layers = self._file.get("layers")
        if not isinstance(layers, h5py.Group):
            raise WeightsFileError(f"{self.path} is not a Keras 3 weights file: it has no 'layers' group")
        classes = {snake_case(c): c for c in VARIABLES}
        for key, group in layers.items():
            variables = group.get("vars") if isinstance(group, h5py.Group) else None
            if not isinstance(variables, h5py.Group):
                continue
            name = variables.attrs.get("name")
            keys = list(variables.keys())
            if not all(k.isdigit() for k in keys):
                raise WeightsFileError(f"{self.path}: unexpected entries {keys} in layers/{key}/vars")
            datasets = [variables[k] for k in sorted(keys, key=int)]
            if not all(isinstance(d, h5py.Dataset) for d in datasets):
                raise WeightsFileError(f"{self.path}: layers/{key}/vars holds entries that are not datasets")
            cls = classes.get(re.sub(r"_\d+$", "", key), key)
            if datasets and cls not in VARIABLES:
                raise WeightsFileError(f"{self.path}: layer group layers/{key} holds weights, but no layer of a "
                                       "resnet-core Keras model is of that kind")
            if len(datasets) > len(VARIABLES.get(cls, ())):
                raise WeightsFileError(f"{self.path}: layers/{key} holds {len(datasets)} variables")
            self._groups[key] = (cls, None if name is None else _text(name), datasets)

    def raw(self) -> dict[str, TensorInfo]:
        return {f"layers/{key}/vars/{i}": self._info(ds)
                for key, (_, _, datasets) in self._groups.items() for i, ds in enumerate(datasets)}

    def _info(self, ds: Any) -> TensorInfo:
        tagged = _text(ds.attrs.get("dtype", "")) == "bfloat16"
        return TensorInfo(tuple(ds.shape), dtype_by_name("bfloat16") if tagged else np.dtype(ds.dtype))

    def tensors(self, spec: ResNetSpec | None) -> dict[str, TensorInfo]:
        try:
            return self._tensors(spec)
        except ResNetCoreError:
            raise
        except H5_DAMAGE as exc:
            raise WeightsFileError(f"{self.path} is not a valid Keras weights file (truncated or corrupt?): {exc}") \
                from None

    def _tensors(self, spec: ResNetSpec | None) -> dict[str, TensorInfo]:
        named = all(name is not None for _, name, datasets in self._groups.values() if datasets)
        if spec is None and not named:
            raise WeightsFileError(f"{self.path} names no layers (written by an older Keras), so its architecture "
                                   "cannot be inferred; pass --arch")
        rows = {} if spec is None else {row.path: row for row in keras_table(make_plan(spec))}
        by_group = {} if named or spec is None else {x.group: x.name for x in keras_layout(make_plan(spec))}
        peer = self._peer if named else None
        self._map = {}
        for key, (cls, name, datasets) in self._groups.items():
            layer = name if named else by_group.get(f"layers/{key}", f"layers/{key}")
            for variable, ds in zip(VARIABLES.get(cls, ()), datasets, strict=False):
                row = rows.get(f"{layer}/{variable}")
                found = None if peer is None else peer.canonical_name(f"{layer}/{variable}")
                if found is not None:
                    self._map[found[0]] = (ds, found[1])
                elif row is not None:
                    self._map[row.canonical] = (ds, row.layout)
                else:
                    self._map[_canonical_guess(layer, variable)] = (ds, _layout_guess(cls, variable))
        out = {}
        for canonical, (ds, layout) in self._map.items():
            info = self._info(ds)
            shape = tuple(info.shape[i] for i in layout.inverse_axes) if layout.axes and \
                len(info.shape) == len(layout.axes) else info.shape
            out[canonical] = TensorInfo(shape, info.dtype)
        return out

    def read(self, name: str) -> np.ndarray:
        ds, layout = self._map[name]
        try:
            value, tag = ds[()], _text(ds.attrs.get("dtype", ""))
        except H5_DAMAGE as exc:
            raise WeightsFileError(f"{self.path}: cannot read {name} (truncated or corrupt?): {exc}") from None
        if tag == "bfloat16":
            value = value.view(dtype_by_name("bfloat16")) if value.dtype.kind == "V" else \
                value.astype(dtype_by_name("bfloat16"))
        elif value.dtype.kind == "V":
            raise WeightsFileError(f"{self.path}: {name} is stored as opaque {value.dtype} bytes")
        if layout.axes and value.ndim == len(layout.axes):
            value = np.ascontiguousarray(layout.to_canonical(value))
        return value

    def close(self) -> None:
        file = getattr(self, "_file", None)
        if file is not None:
            file.close()
            self._file = None
        if getattr(self, "_fileobj", None) is not None:
            self._fileobj.close()
            self._fileobj = None


# --- .keras -------------------------------------------------------------------------------------------------

class _Window(io.RawIOBase):
    """A read-only, seekable window on part of a file: an uncompressed zip member, read in place."""

    def __init__(self, path: Path, start: int, size: int):
        self._f = open(path, "rb")  # noqa: SIM115 - closed with the window
        self._start, self._size, self._pos = start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        n = max(0, min(len(buffer), self._size - self._pos))
        self._f.seek(self._start + self._pos)
        got = self._f.readinto(memoryview(buffer)[:n])
        self._pos += got
        return got

    def close(self) -> None:
        self._f.close()
        super().close()


class KerasFileReader(KerasH5Reader):
    format_name = "keras"

    def __init__(self, path: Path):
        try:
            with zipfile.ZipFile(path) as zf:
                config = json.loads(zf.read("config.json"))
                meta = json.loads(zf.read("metadata.json")) if "metadata.json" in zf.namelist() else {}
                member = zf.getinfo(WEIGHTS_MEMBER)
                fileobj: Any = (_Window(path, _data_offset(path, member), member.file_size)
                                if member.compress_type == zipfile.ZIP_STORED else io.BytesIO(zf.read(member)))
        except zipfile.BadZipFile as exc:
            raise WeightsFileError(f"{path} is not a .keras file (truncated or corrupt zip archive: {exc})") from None
        except KeyError as exc:
            raise WeightsFileError(f"{path} is not a .keras model file: it has no {exc.args[0]}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise WeightsFileError(f"{path}: config.json is not valid JSON ({exc})") from None
        if not isinstance(config, dict) or (config.get("registered_name"), config.get("class_name")) != \
                (KERAS_REGISTERED, KERAS_CLASS):
            found = config.get("class_name") if isinstance(config, dict) else type(config).__name__
            raise WeightsFileError(f"{path} holds a Keras {found!r} model, not a resnet-core KerasResNet")
        spec_data = (config.get("config") or {}).get("spec")
        if not isinstance(spec_data, dict):
            raise WeightsFileError(f"{path}: the model config has no spec")
        super().__init__(path, fileobj)
        self.stored_spec = spec_from_json(json.dumps(spec_data), path)
        self.producer = f"Keras {meta.get('keras_version', '?')} model.save"


def _data_offset(path: Path, member: zipfile.ZipInfo) -> int:
    with open(path, "rb") as f:
        f.seek(member.header_offset)
        header = f.read(30)
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise WeightsFileError(f"{path} is a corrupt zip archive (bad local header for {member.filename})")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return member.header_offset + 30 + name_len + extra_len


def open_reader(path: Path) -> KerasH5Reader:
    return KerasH5Reader(path)


def open_keras_reader(path: Path) -> KerasFileReader:
    return KerasFileReader(path)


def write_keras(path: Path, spec: ResNetSpec, tensors: dict[str, TensorInfo], get: Callable[[str], np.ndarray],
                 progress: Callable[[int], None]) -> None:
    """A whole model through Keras (needs Keras in the process), built in the weights' dtype."""
    from ..backends import load_adapter

    adapter = load_adapter("keras")
    import keras

    dtypes = sorted({info.dtype.name for info in tensors.values()})
    if len(dtypes) > 1:
        raise InputError(f"A .keras model holds one dtype, but these weights mix {', '.join(dtypes)}; "
                         "pass --dtype to cast them")
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtypes[0] if dtypes else "float32")
    try:
        model = adapter.KerasResNet(spec)
    finally:
        keras.config.set_dtype_policy(before)
    for row in keras_table(make_plan(spec)):
        variable = getattr(model.get_layer(row.layer), row.variable)
        value = row.layout.to_framework(get(row.canonical))
        variable.assign(value)
        progress(value.nbytes)
    with _without_tensorflow_probe():
        model.save(path)


@contextlib.contextmanager
def _without_tensorflow_probe() -> Iterator[None]:
    """Keep ``model.save`` from importing TensorFlow on the jax and torch engines.

    Keras's serializer imports TensorFlow, when installed, only to ask whether objects are TF types;
    while TF is not loaded, none can be. The import costs seconds, and TF loaded beside torch's
    triton crashes the process (a segfault importing triton after TF). Keras-private, so best effort.
    """
    lazy = getattr(sys.modules.get("keras.src.utils.module_utils"), "tensorflow", None)
    if "tensorflow" in sys.modules or lazy is None or getattr(lazy, "_available", True) is not None:
        yield
        return
    lazy._available = False
    try:
        yield
    finally:
        if getattr(lazy, "module", None) is None:
            lazy._available = None
