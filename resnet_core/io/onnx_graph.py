"""ResNets read from ONNX files: the graph matched to a spec by its topology, never by its names.

Exporters name initializers as they please (``onnx::Conv_117``, ``conv1.weight``, ``StatefulPartitionedCall/...``),
so the names are ignored: the graph is walked from its input and matched piece by piece (the stem's conv units
and pool, each residual ``Add`` with its main path and its shortcut, the head's pooling and classifier). Each
matched initializer gets its canonical (torchvision/timm) name in that order, the spec is inferred from the
names and shapes as for any weights file (:mod:`resnet_core.io.infer`), and every conv's stride, padding,
dilation and group count and every pool is checked against that spec's plan. The first node that does not fit
is named in the error.

Exporters rewrite graphs in ways that do not change the network, and the matcher undoes them: constant
subgraphs are evaluated, float casts, ``Identity`` and ``Dropout`` pass through, layout ``Transpose`` nodes
(Keras's NHWC graphs) are followed by tracking each tensor's axis order, explicit zero ``Pad`` nodes merge
into the convolution or pool they feed when the padding is PyTorch's symmetric one. Norms folded into the
convs (onnxruntime's optimiser, torch.onnx's eval-mode exports, Keras's per-channel ``Sub``/``Mul``/``Add``)
leave biased convs and no norm: their canonical names are the convs' ``weight`` and ``bias``, which the
folded-norm spec option reads.

Reading needs the ``onnx`` package only. The proof that the match is right, our torch model against
onnxruntime's run of the same file, is :func:`verify_against_onnxruntime`.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, MissingDependencyError
from ..plan import AvgPool, Conv, ConvNorm, MaxPool, Plan, make_plan
from ..spec import ResNetSpec
from .formats import TensorInfo, WeightsFileError, spec_from_json
from .infer import InferenceError, candidate_specs

NCHW: tuple[int, ...] = (0, 1, 2, 3)
TRANSPARENT = ("Identity", "Dropout")
FLOAT_TYPES = (1, 10, 11, 16)  # FLOAT, FLOAT16, DOUBLE, BFLOAT16 (onnx.TensorProto)
SPEC_PROP = "resnet_core_spec"  # resnet-core's own exports store their spec under this metadata key
DYNAMIC_SIZE = (67, 71)  # the proof's input size when the graph's is dynamic: odd, so pads and ceil modes matter
RTOL = 1e-5


class OnnxGraphError(WeightsFileError, InputError):
    """An ONNX graph that is not a ResNet this library expresses; the message names the first node that does not fit."""


class UnverifiedImportWarning(UserWarning):
    """An ONNX import that could not be run against onnxruntime (not installed): the match is unproven."""


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError("Reading .onnx files needs the onnx package: pip install 'resnet-core[onnx]'"
                                     ) from None
    return onnx


def load_model(path: Path) -> Any:
    """The file's ModelProto; a damaged or non-ONNX file is one :class:`WeightsFileError` naming it."""
    onnx = _onnx()
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path))
    except (DecodeError, RuntimeError, ValueError, UnicodeDecodeError) as exc:
        raise WeightsFileError(f"{path} is not an ONNX model (truncated, or not an ONNX protobuf: "
                               f"{type(exc).__name__})") from None
    if not model.graph.node or not model.graph.input:
        raise WeightsFileError(f"{path} is not an ONNX model: it has no graph (truncated, or another protobuf)")
    return model


def _describe(node: Any) -> str:
    return f"{node.op_type} node {node.name!r}" if node.name else f"{node.op_type} node (unnamed, output " \
        f"{node.output[0]!r})"


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _ints(value: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in value)


@dataclass
class Unit:
    """A matched conv unit: Conv, then a BatchNormalization or a per-channel affine (folded into the conv),
    then an optional ReLU."""

    node: Any
    kernel: np.ndarray
    bias: np.ndarray | None
    stride: int
    padding: int
    dilation: int
    groups: int
    norm: dict[str, np.ndarray] | None = None  # weight, bias, running_mean, running_var
    eps: float | None = None
    relu: bool = False


@dataclass
class Pool:
    node: Any
    kind: str  # "max" | "avg"
    kernel: int
    stride: int
    padding: int
    ceil: bool
    count_include_pad: bool


@dataclass
class Matched:
    """What the walk found, in network order, before names are given."""

    stem: list[Unit]
    stem_pool: Pool | None
    blocks: list[tuple[list[Unit], Unit | None, Pool | None, Any]]  # main, shortcut, its pool, the Add node
    fc: tuple[np.ndarray, np.ndarray, Any] | None  # weight (out, in), bias, node
    head_pool: Any  # the global pooling node, or None (feature map out)
    input_layout: str  # "NCHW" | "NHWC"
    input_size: tuple[int | None, int | None]
    input_batch: int | None
    input_dtype: int
    se: dict[int, tuple[Unit, Unit]] = field(default_factory=dict)  # id(Add node) -> squeeze-excitation fc1, fc2


@dataclass
class OnnxImport:
    """A matched ONNX file: canonical weights, the spec, and what proves them."""

    path: Path
    spec: ResNetSpec
    weights: dict[str, np.ndarray]
    nodes: dict[str, Any]  # canonical module name -> the node it came from
    matched: Matched
    producer: str
    verified: bool | None = None  # None: not yet run; False: onnxruntime missing
    max_relative_error: float | None = None
    note: str = ""


class _Graph:
    """Nodes, producers, consumers and constants; constant subgraphs evaluated, pass-through nodes bypassed."""

    def __init__(self, model: Any, path: Path):
        from onnx import numpy_helper

        self.path = path
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        graph = model.graph
        self.consts: dict[str, np.ndarray] = {}
        for init in graph.initializer:
            self.consts[init.name] = numpy_helper.to_array(init)
        inits = set(self.consts)
        self.inputs = [i for i in graph.input if i.name not in inits]
        self.outputs = [o.name for o in graph.output]
        self.nodes: list[Any] = []
        for node in graph.node:
            if node.domain not in ("", "ai.onnx"):
                raise OnnxGraphError(f"{path}: {_describe(node)} is from operator domain {node.domain!r}; a ResNet "
                                     "this library expresses uses standard ONNX operators only")
            if self._fold(node):
                continue
            self.nodes.append(node)
        self.alias: dict[str, str] = {}
        self.consumers: dict[str, list[Any]] = {}
        for node in self.nodes:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def _fold(self, node: Any) -> bool:
        """Evaluate a node whose inputs are all constants (shape arithmetic, casts of float16 initializers)."""
        from onnx import numpy_helper

        if node.op_type == "Constant":
            attrs = _attrs(node)
            if "value" in attrs:
                value = numpy_helper.to_array(attrs["value"])
            else:
                key = next(iter(attrs))
                value = np.asarray(attrs[key], np.float32 if key.startswith("value_float") else np.int64)
            self.consts[node.output[0]] = value
            return True
        if node.op_type == "CastLike" and node.input[0] in self.consts:  # cast like the (float) data
            self.consts[node.output[0]] = self.consts[node.input[0]].astype(np.float32)
            return True
        if not node.input or not all(name in self.consts or name == "" for name in node.input):
            return False
        from onnx.reference import ReferenceEvaluator

        try:
            results = ReferenceEvaluator(node, opsets={"": self.opset}).run(
                None, {name: self.consts[name] for name in node.input if name})
        except Exception:  # noqa: BLE001 - a node the reference cannot evaluate is matched (and refused) later
            return False
        for name, value in zip(node.output, results, strict=False):
            self.consts[name] = np.asarray(value)
        return True

    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(name)

    def users(self, name: str) -> list[Any]:
        """The nodes reading ``name``'s values (a dynamic batch's ``Shape`` reads only its shape)."""
        return [n for n in self.consumers.get(name, []) if n.op_type not in ("Shape", "Size")]


class _Walker:
    """Follows the data path from the input, tracking each tensor's axis order (``perm[i]``: the NCHW axis that
    the tensor's axis ``i`` holds), so Keras's NHWC graphs read like PyTorch's."""

    def __init__(self, graph: _Graph):
        self.g = graph
        self.path = graph.path
        self.se: dict[int, tuple[Unit, Unit]] = {}

    def fail(self, node: Any, why: str) -> OnnxGraphError:
        return OnnxGraphError(f"{self.path}: {_describe(node)} does not fit a ResNet: {why}")

    def sole(self, tensor: str, after: Any | None) -> Any:
        users = self.g.users(tensor)
        if len(users) != 1:
            if tensor in self.g.outputs and not users:
                raise OnnxGraphError(f"{self.path}: the graph ends at {tensor!r} where a ResNet continues"
                                     + (f" (after {_describe(after)})" if after is not None else ""))
            where = _describe(after) if after is not None else f"tensor {tensor!r}"
            raise OnnxGraphError(f"{self.path}: the output of {where} feeds {len(users)} nodes "
                                 f"({', '.join(_describe(u) for u in users[:3])}) where a ResNet has one")
        return users[0]

    def skip(self, tensor: str, perm: tuple[int, ...]
             ) -> tuple[str, tuple[int, ...], Any | None, list[int] | None, float]:
        """Past pass-through nodes, transposes and zero pads: (tensor, perm, the next node or None at a
        fork/output, pads in NCHW order (t, l, b, r) or None, the pad value)."""
        pads: list[int] | None = None
        value = 0.0
        while True:
            users = self.g.users(tensor)
            if len(users) != 1:
                return tensor, perm, None, pads, value
            node = users[0]
            data = [i for i in node.input if i and i not in self.g.consts]
            if node.op_type in TRANSPARENT or (node.op_type == "Cast" and _attrs(node).get("to") in FLOAT_TYPES):
                tensor = node.output[0]
                continue
            if node.op_type == "Transpose":
                p = _ints(_attrs(node)["perm"])
                perm = tuple(perm[i] for i in p)
                tensor = node.output[0]
                continue
            if node.op_type == "Pad" and len(data) == 1 and pads is None:
                pads, value = self._pads(node, perm)
                tensor = node.output[0]
                continue
            return tensor, perm, node, pads, value

    def _pads(self, node: Any, perm: tuple[int, ...]) -> tuple[list[int], float]:
        attrs = _attrs(node)
        if attrs.get("mode", b"constant") not in (b"constant", "constant"):
            raise self.fail(node, f"{attrs['mode']!r} padding (a ResNet pads with zeros)")
        raw = self.g.const(node.input[1]) if len(node.input) > 1 else np.asarray(attrs.get("pads", ()))
        if raw is None:
            raise self.fail(node, "its pads are computed at run time")
        value = self.g.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        rank = len(raw) // 2
        begin, end = [int(v) for v in raw[:rank]], [int(v) for v in raw[rank:]]
        if len(node.input) > 3 and node.input[3]:  # opset 18 axes
            given = self.g.const(node.input[3])
            if given is None:
                raise self.fail(node, "its axes are computed at run time")
            axes = [int(a) % 4 for a in given]
            full_b, full_e = [0] * 4, [0] * 4
            for a, b, e in zip(axes, begin, end, strict=True):
                full_b[a], full_e[a] = int(b), int(e)
            begin, end = full_b, full_e
        canon_b, canon_e = [0] * 4, [0] * 4
        for i in range(4):
            canon_b[perm[i]], canon_e[perm[i]] = int(begin[i]), int(end[i])
        if canon_b[:2] != [0, 0] or canon_e[:2] != [0, 0]:
            raise self.fail(node, "it pads the batch or channel axis")
        pad_value = float(np.asarray(value).reshape(-1)[0]) if value is not None and np.size(value) else 0.0
        return [canon_b[2], canon_b[3], canon_e[2], canon_e[3]], pad_value

    # -- pieces -------------------------------------------------------------------------------------------

    def spatial(self, node: Any, perm: tuple[int, ...]) -> None:
        if perm != NCHW:
            raise self.fail(node, "it runs on a tensor whose axes are not in NCHW order")

    def pads_of(self, node: Any, attrs: dict[str, Any], extra: list[int] | None) -> int:
        if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID", b"", ""):
            raise self.fail(node, f"auto_pad={attrs['auto_pad']!r} (PyTorch pads symmetrically)")
        pads = list(_ints(attrs.get("pads", (0, 0, 0, 0))))
        if extra is not None:
            pads = [a + b for a, b in zip(pads, extra, strict=True)]
        if len(set(pads)) != 1:
            raise self.fail(node, f"pads {pads} (top, left, bottom, right) are not PyTorch's symmetric padding")
        return pads[0]

    def unit(self, node: Any, perm: tuple[int, ...], pads: list[int] | None
             ) -> tuple[Unit, str, tuple[int, ...], Any | None, list[int] | None, float]:
        """A Conv and what follows it up to the next conv/pool/fork; returns the unit and the walk's state."""
        self.spatial(node, perm)
        attrs = _attrs(node)
        kernel = self.g.const(node.input[1])
        if kernel is None or kernel.ndim != 4:
            raise self.fail(node, "its weight is not a constant 4D kernel")
        strides, dil = _ints(attrs.get("strides", (1, 1))), _ints(attrs.get("dilations", (1, 1)))
        if len(set(strides)) != 1 or len(set(dil)) != 1 or kernel.shape[2] != kernel.shape[3]:
            raise self.fail(node, f"strides {strides}, dilations {dil}, kernel {kernel.shape[2:]} differ per axis")
        bias = self.g.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if len(node.input) > 2 and node.input[2] and bias is None:
            raise self.fail(node, "its bias is not a constant")
        kernel = kernel.astype(np.float32)
        bias = None if bias is None else bias.astype(np.float32)
        unit = Unit(node, kernel, bias, strides[0], self.pads_of(node, attrs, pads), dil[0], int(attrs.get("group", 1)))
        tensor, perm, nxt, pads, value = self.skip(node.output[0], perm)
        if nxt is not None and nxt.op_type == "BatchNormalization" and pads is None:
            self.spatial(nxt, perm)
            names = ("weight", "bias", "running_mean", "running_var")
            params = [self.g.const(i) for i in nxt.input[1:5]]
            if any(p is None for p in params) or len(nxt.output) > 1 and any(nxt.output[1:]):
                raise self.fail(nxt, "a batch norm in training mode (its statistics are not constants)")
            unit.norm = {n: np.asarray(p, np.float32) for n, p in zip(names, params, strict=True)}
            unit.eps = float(_attrs(nxt).get("epsilon", 1e-5))
            tensor, perm, nxt, pads, value = self.skip(nxt.output[0], perm)
        else:  # a per-channel affine (Keras's batch norm: x - mean, * scale, + beta) folds into the conv
            while nxt is not None and pads is None and nxt.op_type in ("Sub", "Mul", "Add", "Div"):
                other = [i for i in nxt.input if i != tensor]
                vec = self.g.const(other[0]) if len(other) == 1 else None
                if vec is None:
                    break  # the residual Add
                channels = self._channel_vector(nxt, vec, perm, kernel.shape[0])
                if nxt.op_type == "Mul" or nxt.op_type == "Div":
                    scale = channels if nxt.op_type == "Mul" else 1.0 / channels
                    unit.kernel = (unit.kernel * scale[:, None, None, None]).astype(np.float32)
                    unit.bias = None if unit.bias is None else (unit.bias * scale).astype(np.float32)
                else:
                    shift = channels if nxt.op_type == "Add" else -channels
                    unit.bias = (shift if unit.bias is None else unit.bias + shift).astype(np.float32)
                tensor, perm, nxt, pads, value = self.skip(nxt.output[0], perm)
        if nxt is not None and nxt.op_type == "Relu" and pads is None:
            unit.relu = True
            tensor, perm, nxt, pads, value = self.skip(nxt.output[0], perm)
        return unit, tensor, perm, nxt, pads, value

    def _channel_vector(self, node: Any, vec: np.ndarray, perm: tuple[int, ...], channels: int) -> np.ndarray:
        arr = np.asarray(vec, np.float64)
        if node.op_type in ("Sub", "Div") and self.g.const(node.input[0]) is not None:
            raise self.fail(node, "a constant minus (or over) the data is no per-channel affine")
        if arr.ndim == 0 or arr.size == 1:
            return np.full(channels, float(arr.reshape(-1)[0]))
        shape = (1,) * (4 - arr.ndim) + arr.shape
        axis = perm.index(1)
        if arr.size != channels or shape[axis] != channels:
            raise self.fail(node, f"its constant of shape {vec.shape} is not one value per channel")
        return arr.reshape(-1)

    def pool(self, node: Any, perm: tuple[int, ...], pads: list[int] | None, value: float) -> Pool:
        self.spatial(node, perm)
        attrs = _attrs(node)
        kernel, strides = _ints(attrs["kernel_shape"]), _ints(attrs.get("strides", (1, 1)))
        if len(set(kernel)) != 1 or len(set(strides)) != 1 or set(_ints(attrs.get("dilations", (1, 1)))) != {1}:
            raise self.fail(node, f"kernel {kernel}, strides {strides} (a ResNet pools square windows)")
        kind = "max" if node.op_type == "MaxPool" else "avg"
        if pads is not None and kind == "avg":
            raise self.fail(node, "an explicit pad before an average pool")
        if pads is not None and not (value == -math.inf or value == 0.0):
            raise self.fail(node, f"padding with {value} before a max-pool")
        return Pool(node, kind, kernel[0], strides[0], self.pads_of(node, attrs, pads), bool(attrs.get("ceil_mode", 0)),
                    bool(attrs.get("count_include_pad", 0)))

    def skip_from(self, node: Any, perm: tuple[int, ...]
                  ) -> tuple[str, tuple[int, ...], Any | None, list[int] | None, float]:
        """:meth:`skip` starting at a pass-through ``node`` that is one of a fork's users."""
        if node.op_type == "Transpose":
            p = _ints(_attrs(node)["perm"])
            return self.skip(node.output[0], tuple(perm[i] for i in p))
        if node.op_type == "Pad":
            pads, value = self._pads(node, perm)
            t, p2, nxt, more, _ = self.skip(node.output[0], perm)
            if more is not None:
                raise self.fail(node, "two pads in a row")
            return t, p2, nxt, pads, value
        return self.skip(node.output[0], perm)


def match_graph(model: Any, path: Path) -> Matched:
    """Walk the graph from its input; every node on the data path must be part of a ResNet."""
    graph = _Graph(model, path)
    if len(graph.inputs) != 1:
        names = ", ".join(i.name for i in graph.inputs)
        raise OnnxGraphError(f"{path}: the graph has {len(graph.inputs)} inputs ({names}); a ResNet has one")
    w = _Walker(graph)
    source = graph.inputs[0]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in source.type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise OnnxGraphError(f"{path}: the input {source.name!r} has rank {len(dims)}; a ResNet takes 4D images")
    # The input's axis order: whatever makes the first Conv see NCHW.
    seen, first = _axes_at_first_conv(graph, source.name)
    if first is None or first.op_type != "Conv":
        node = first or (graph.users(source.name) or [None])[0]
        if node is None:
            raise OnnxGraphError(f"{path}: nothing reads the input {source.name!r}")
        raise w.fail(node, "a ResNet starts with a convolution")
    start = tuple(int(np.argsort(seen)[i]) for i in range(4))
    layouts: dict[tuple[int, ...], str] = {(0, 1, 2, 3): "NCHW", (0, 2, 3, 1): "NHWC"}
    layout = layouts.get(start)
    if layout is None:
        raise w.fail(first, f"the input's axes reach it in the order {seen}")
    h_axis, w_axis = start.index(2), start.index(3)
    tensor, perm, nxt, pads, value = w.skip(source.name, start)

    stem: list[Unit] = []
    while nxt is not None and nxt.op_type == "Conv":
        if len(stem) == 4 or len(stem) == 3 and _attrs(nxt).get("strides", [1])[0] == 1:
            raise w.fail(nxt, f"a convolution in a row of {len(stem) + 1} from the input (a ResNet's stem has 1 "
                              "or 3, and a strided one in place of its max-pool)")
        unit, tensor, perm, nxt, pads, value = w.unit(nxt, perm, pads)
        if unit.groups != 1:
            raise w.fail(unit.node, f"a grouped convolution ({unit.groups} groups) in the stem")
        stem.append(unit)
    if not stem:
        raise w.fail(nxt, "a ResNet starts with a convolution")
    stem_pool = None
    if nxt is not None and nxt.op_type == "MaxPool":
        stem_pool = w.pool(nxt, perm, pads, value)
        tensor, perm, nxt, pads, value = w.skip(nxt.output[0], perm)
    if pads is not None:
        raise w.fail(nxt or graph.users(tensor)[0], "an explicit pad that feeds no conv or max-pool")

    blocks: list[tuple[list[Unit], Unit | None, Pool | None, Any]] = []
    while nxt is None and len(graph.users(tensor)) == 2:
        tensor, perm, block = _block(w, tensor, perm)
        blocks.append(block)
        tensor, perm, nxt, pads, value = w.skip(tensor, perm)
    head_pool, fc = None, None
    if nxt is not None and nxt.op_type in ("GlobalAveragePool", "ReduceMean"):
        head_pool = nxt
        if nxt.op_type == "GlobalAveragePool":
            w.spatial(nxt, perm)
        else:
            attrs = _attrs(nxt)
            given = graph.const(nxt.input[1]) if len(nxt.input) > 1 else None
            axes = attrs.get("axes") or (None if given is None else [int(a) for a in given.reshape(-1)])
            if axes is None or sorted(perm[int(a) % 4] for a in axes) != [2, 3]:
                raise w.fail(nxt, f"a mean over axes {axes} (a ResNet averages over height and width)")
        tensor, nxt = nxt.output[0], None
        tensor, perm, nxt, _, _ = w.skip(tensor, perm)
        while nxt is not None and nxt.op_type in ("Flatten", "Reshape", "Squeeze"):
            tensor, perm, nxt, _, _ = w.skip(nxt.output[0], NCHW)
        if nxt is not None:
            tensor, fc = _classifier(w, nxt)
            if len(graph.users(tensor)):
                raise w.fail(graph.users(tensor)[0], "a ResNet's logits are its output")
    elif nxt is not None:
        raise w.fail(nxt, "expected a residual block, global average pooling or the output here")
    if tensor not in graph.outputs:
        raise OnnxGraphError(f"{path}: the walk ended at {tensor!r}, which is not the graph's output")
    if not blocks:
        raise w.fail(head_pool or stem[-1].node, "no residual block precedes it (a ResNet adds shortcuts)")
    return Matched(stem, stem_pool, blocks, fc, head_pool, layout, (dims[h_axis], dims[w_axis]), dims[0],
                   source.type.tensor_type.elem_type, w.se)


def _axes_at_first_conv(graph: _Graph, tensor: str) -> tuple[tuple[int, ...], Any | None]:
    """The input's axis order as the first node past transposes, casts and pads sees it, and that node."""
    perm = NCHW
    while len(graph.users(tensor)) == 1:
        node = graph.users(tensor)[0]
        if node.op_type == "Transpose":
            perm = tuple(perm[i] for i in _ints(_attrs(node)["perm"]))
        elif node.op_type not in ("Pad", "Cast", *TRANSPARENT):
            return perm, node
        tensor = node.output[0]
    return perm, None


def _block(w: _Walker, tensor: str, perm: tuple[int, ...]
           ) -> tuple[str, tuple[int, ...], tuple[list[Unit], Unit | None, Pool | None, Any]]:
    """One residual block from its input fork to its Add (and the ReLU after it)."""
    branches = []
    se: list[tuple[Unit, Unit]] = []
    for user in w.g.users(tensor):
        units: list[Unit] = []
        pool = None
        nxt, pads, value, t, p = user, None, 0.0, tensor, perm
        if nxt.op_type in ("Transpose", "Cast", "Pad", *TRANSPARENT):  # a branch of its own: follow it
            t, p, nxt, pads, value = w.skip_from(nxt, perm)
        if nxt is not None and nxt.op_type == "AveragePool":
            pool = w.pool(nxt, p, pads, value)
            t, p, nxt, pads, value = w.skip(nxt.output[0], p)
        while nxt is not None and nxt.op_type == "Conv":
            unit, t, p, nxt, pads, value = w.unit(nxt, p, pads)
            units.append(unit)
        if nxt is None and units and len(w.g.users(t)) == 2:
            found, t, p, nxt = _squeeze_excite(w, t, p)
            se.append(found)
        if nxt is None or nxt.op_type != "Add":
            node = nxt or (w.g.users(t) or [user])[0]
            raise w.fail(node, "expected the residual Add ending a block's branch")
        branches.append((units, pool, nxt, p))
    (a, pa, add_a, perm_a), (b, pb, add_b, perm_b) = branches
    if add_a is not add_b:
        raise w.fail(add_b, "the two branches of a block meet at different Adds")
    if perm_a != perm_b:
        raise w.fail(add_a, "it adds tensors whose axes are in different orders")
    (main, main_pool), (short, pool) = ((a, pa), (b, pb)) if len(a) >= len(b) else ((b, pb), (a, pa))
    if main_pool is not None:  # anti-aliased networks pool inside the main path: no option here reads it
        raise w.fail(main_pool.node, "an average pool on a block's main path")
    if len(short) > 1 or not main:
        raise w.fail(add_a, f"a shortcut of {len(short)} convolutions")
    if short and short[0].relu:
        raise w.fail(short[0].node, "a ReLU on the projection shortcut")
    if pool is not None and not short:
        raise w.fail(pool.node, "a pooled shortcut without a projection conv")
    if main[-1].relu:
        raise w.fail(main[-1].node, "a ReLU before the residual Add (the block's last conv is linear)")
    t, p, nxt, pads, _ = w.skip(add_a.output[0], perm_a)
    if nxt is None or nxt.op_type != "Relu" or pads is not None:
        raise w.fail(nxt or add_a, "expected the ReLU after the residual Add")
    if se:
        w.se[id(add_a)] = se[0]
    return nxt.output[0], p, (main, short[0] if short else None, pool, add_a)


def _squeeze_excite(w: _Walker, tensor: str, perm: tuple[int, ...]
                    ) -> tuple[tuple[Unit, Unit], str, tuple[int, ...], Any | None]:
    """x * sigmoid(fc2(relu(fc1(mean(x))))) after a main path's last conv: (fc1, fc2) and the walk past the Mul."""
    users = w.g.users(tensor)
    mul = next((u for u in users if u.op_type == "Mul"), None)
    pool = next((u for u in users if u.op_type in ("GlobalAveragePool", "ReduceMean")), None)
    if mul is None or pool is None:
        raise w.fail(users[0], "a fork inside a block's main path that is no squeeze-excitation")
    product = mul.output[0]
    if pool.op_type == "GlobalAveragePool":
        w.spatial(pool, perm)
    else:
        given = w.g.const(pool.input[1]) if len(pool.input) > 1 else None
        axes = _attrs(pool).get("axes") or (None if given is None else [int(a) for a in given.reshape(-1)])
        if axes is None or sorted(perm[int(a) % 4] for a in axes) != [2, 3] or not _attrs(pool).get("keepdims", 1):
            raise w.fail(pool, "a squeeze that is no mean over height and width")
    _, p, nxt, _, _ = w.skip(pool.output[0], perm)
    if nxt is None or nxt.op_type != "Conv":
        raise w.fail(nxt or pool, "expected the squeeze-excitation's first 1x1 conv")
    fc1, _, p, nxt, _, _ = w.unit(nxt, p, None)
    if nxt is None or nxt.op_type != "Conv" or not fc1.relu:
        raise w.fail(nxt or fc1.node, "expected the squeeze-excitation's ReLU and second 1x1 conv")
    fc2, _, p, nxt, _, _ = w.unit(nxt, p, None)
    if nxt is None or nxt.op_type != "Sigmoid" or fc2.relu:
        raise w.fail(nxt or fc2.node, "expected the squeeze-excitation's sigmoid gate")
    _, p, nxt, _, _ = w.skip(nxt.output[0], p)
    if nxt is not mul:
        raise w.fail(nxt or mul, "expected the squeeze-excitation's gate to scale the main path")
    t, p, nxt, _, _ = w.skip(product, perm)
    return (fc1, fc2), t, p, nxt


def _classifier(w: _Walker, node: Any) -> tuple[str, tuple[np.ndarray, np.ndarray, Any]]:
    """Gemm, or MatMul then Add: (the logits tensor, (weight as (out, in), bias, node))."""
    if node.op_type == "Gemm":
        attrs = _attrs(node)
        weight = w.g.const(node.input[1])
        bias = w.g.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if weight is None or attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
            raise w.fail(node, "a classifier that is not x @ W.T + b with constant W")
        weight = weight if attrs.get("transB", 0) else weight.T
        if bias is None:
            bias = np.zeros(weight.shape[0], np.float32)
        t, _, nxt, _, _ = w.skip(node.output[0], NCHW)
        if nxt is not None:
            raise w.fail(nxt, "a ResNet's logits are its output")
        return t, (weight.astype(np.float32), np.asarray(bias, np.float32).reshape(-1), node)
    if node.op_type == "MatMul":
        weight = w.g.const(node.input[1])
        if weight is None or weight.ndim != 2:
            raise w.fail(node, "a classifier whose weight is not a constant matrix")
        t, _, nxt, _, _ = w.skip(node.output[0], NCHW)
        bias = np.zeros(weight.shape[1], np.float32)
        if nxt is not None and nxt.op_type == "Add":
            other = [i for i in nxt.input if i != t]
            found = w.g.const(other[0]) if len(other) == 1 else None
            if found is None:
                raise w.fail(nxt, "the classifier's bias is not a constant")
            bias = np.asarray(found, np.float32).reshape(-1)
            t, _, nxt, _, _ = w.skip(nxt.output[0], NCHW)
        if nxt is not None:
            raise w.fail(nxt, "a ResNet's logits are its output")
        return t, (weight.T.astype(np.float32), bias, node)
    raise w.fail(node, "expected the classifier (Gemm, or MatMul and Add)")


# -- canonical names ------------------------------------------------------------------------------------------

def canonical(matched: Matched) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, float]]:
    """Canonical weights in network order, the node each module came from, and each norm's epsilon."""
    weights: dict[str, np.ndarray] = {}
    nodes: dict[str, Any] = {}
    eps: dict[str, float] = {}
    units = [*matched.stem, *(u for main, short, _, _ in matched.blocks for u in (*main, short) if u is not None)]
    # Biases are the network's when any is non-zero (a folded graph, conv_bias); all zero, they are an exporter's
    # placeholder (torch.onnx without its optimiser) and the convs have none. Decided once, so a folded conv
    # whose bias happens to be zero (zero_init_residual) keeps it.
    biased = any(u.bias is not None and np.any(u.bias) for u in units)

    def put(unit: Unit, conv: str, norm: str) -> None:
        weights[f"{conv}.weight"] = unit.kernel
        nodes[conv] = unit.node
        if biased:
            weights[f"{conv}.bias"] = unit.bias if unit.bias is not None else np.zeros(unit.kernel.shape[0], np.float32)
        if unit.norm is not None:
            for role, value in unit.norm.items():
                weights[f"{norm}.{role}"] = value
            eps[norm] = float(str(np.float32(unit.eps)))  # the attribute is float32: 1e-5, not 9.99999974e-06

    if len(matched.stem) == 1:
        put(matched.stem[0], "conv1", "bn1")
    elif len(matched.stem) in (3, 4):
        put(matched.stem[0], "conv1.0", "conv1.1")
        put(matched.stem[1], "conv1.3", "conv1.4")
        put(matched.stem[2], "conv1.6", "bn1")
        if len(matched.stem) == 4:  # ResNet-RS: a strided conv unit where the max-pool was
            put(matched.stem[3], "maxpool.0", "maxpool.1")
    else:
        raise OnnxGraphError(f"{_describe(matched.stem[min(3, len(matched.stem) - 1)].node)} does not fit a ResNet: "
                             f"a stem of {len(matched.stem)} convolutions (a ResNet's has 1 or 3)")
    if matched.stem_pool is not None:
        nodes["maxpool"] = matched.stem_pool.node
    # A stage starts where a block projects its input (new width or stride), or dilates more than the block
    # before (output_stride 16 or 8: a dilated stage of the same width needs no projection).
    stage, index, dilation = 1, 0, 1
    for number, (main, short, pool, add) in enumerate(matched.blocks):
        widest = max(u.dilation for u in main)
        if number and (short is not None or widest > dilation):
            stage, index = stage + 1, 0
        dilation = widest
        prefix = f"layer{stage}.{index}"
        for k, unit in enumerate(main, 1):
            put(unit, f"{prefix}.conv{k}", f"{prefix}.bn{k}")
        if id(add) in matched.se:
            for k, unit in enumerate(matched.se[id(add)], 1):
                weights[f"{prefix}.se.fc{k}.weight"] = unit.kernel
                weights[f"{prefix}.se.fc{k}.bias"] = unit.bias if unit.bias is not None else \
                    np.zeros(unit.kernel.shape[0], np.float32)
                nodes[f"{prefix}.se.fc{k}"] = unit.node
        if short is not None:
            first = 1 if pool is not None else 0
            if pool is not None:
                nodes[f"{prefix}.downsample.0"] = pool.node
            put(short, f"{prefix}.downsample.{first}", f"{prefix}.downsample.{first + 1}")
        index += 1
    if matched.fc is not None:
        weights["fc.weight"], weights["fc.bias"], nodes["fc"] = matched.fc
    return weights, nodes, eps


# -- the spec and the plan check --------------------------------------------------------------------------------

def _conv_problem(conv: Conv, unit_node: Any, matched_units: dict[Any, Unit]) -> str | None:
    unit = matched_units[id(unit_node)]
    got = (unit.stride, unit.padding, unit.dilation, unit.groups)
    want = (conv.stride, conv.padding, conv.dilation, conv.groups)
    if got == want:
        return None
    return (f"{_describe(unit_node)} has stride {got[0]}, padding {got[1]}, dilation {got[2]}, groups {got[3]}; "
            f"{conv.name} of the recovered spec has {want[0]}, {want[1]}, {want[2]}, {want[3]}")


def plan_problems(plan: Plan, matched: Matched, nodes: dict[str, Any]) -> list[str]:
    """Every difference between the graph's convs and pools and the plan's, each naming its node."""
    units = {id(u.node): u for u in matched.stem}
    for pair in matched.se.values():
        units.update({id(u.node): u for u in pair})
    for main, short, _, _ in matched.blocks:
        units.update({id(u.node): u for u in main})
        if short is not None:
            units[id(short.node)] = short
    problems = []
    for module in plan.modules():
        if isinstance(module, Conv) and module.name in nodes:
            problem = _conv_problem(module, nodes[module.name], units)
            if problem:
                problems.append(problem)
    for entry in [*plan.stem.units, *(u for b in plan.blocks for u in (*b.main, b.shortcut))]:
        if isinstance(entry, ConvNorm) and entry.conv.name in nodes:
            unit = units[id(nodes[entry.conv.name])]
            if unit.relu != (entry.act is not None):
                problems.append(f"{_describe(unit.node)} is {'' if unit.relu else 'not '}followed by a ReLU; "
                                f"{entry.conv.name} of the recovered spec is {'' if entry.act else 'not '}activated")
    pool = plan.stem.pool
    got = matched.stem_pool
    if (pool is None) != (got is None) or not isinstance(pool, (MaxPool, type(None))):
        problems.append(f"{_describe(got.node) if got else 'the stem'}: the stem's pool differs from the plan's "
                        f"({pool})")
    elif got is not None and isinstance(pool, MaxPool) and (got.kernel, got.stride, got.padding) != (
            pool.kernel_size, pool.stride, pool.padding):
        problems.append(f"{_describe(got.node)} pools {got.kernel}x{got.kernel} at stride {got.stride}, padding "
                        f"{got.padding}; the plan's {pool.kernel_size}, {pool.stride}, {pool.padding}")
    for block, (_, _, found, add) in zip(plan.blocks, matched.blocks, strict=False):
        want = block.shortcut_pool
        if (want is None) != (found is None):
            problems.append(f"{_describe(found.node if found else add)}: the shortcut's pool differs from the plan's "
                            f"({want})")
        elif isinstance(want, AvgPool) and found is not None:
            mode = "ceil" if found.ceil and not found.count_include_pad else "floor" if not found.ceil and \
                not found.padding else "other"
            if (found.kernel, found.stride, mode) != (want.kernel_size, want.stride, want.mode):
                problems.append(f"{_describe(found.node)} averages {found.kernel}x{found.kernel} at stride "
                                f"{found.stride} ({mode}); the plan's {want.kernel_size}, {want.stride} ({want.mode})")
    if len(plan.blocks) != len(matched.blocks):
        problems.append(f"the graph has {len(matched.blocks)} residual blocks, the plan {len(plan.blocks)}")
    if plan.head.pool != ("avg" if matched.head_pool is not None else None) and plan.spec.include_top is False:
        problems.append(f"the head pools {'by average' if matched.head_pool is not None else 'nothing'}, the plan's "
                        f"{plan.head.pool}")
    return problems


def _variants(spec: ResNetSpec, eps: dict[str, float], matched: Matched) -> list[ResNetSpec]:
    """``spec`` with what the graph shows and weights do not: the norms' epsilon, where the bottleneck strides,
    dilated last stages (output stride 16 or 8) and a features-only head's pooling."""
    changes: dict[str, Any] = {}
    if eps:
        values = set(eps.values())
        if len(values) > 1:
            raise OnnxGraphError(f"the graph's batch norms use different epsilons {sorted(values)}; a ResNet uses one")
        changes["bn_eps"] = values.pop()
    if matched.fc is None:
        changes["pooling"] = "avg" if matched.head_pool is not None else None
    dilated = max(u.dilation for main, _, _, _ in matched.blocks for u in main) > 1
    strides = (16, 8) if dilated else (spec.output_stride,)
    out = []
    for stride in strides:
        for extra in ({}, {"stride_in_1x1": True}):
            try:
                out.append(spec.replace(**changes, **extra, output_stride=stride))
            except ValueError:
                continue
    return out


def recover(model: Any, path: Path) -> OnnxImport:
    """Match the graph, name its tensors, and find the spec whose plan has exactly its convs and pools."""
    matched = match_graph(model, path)
    weights, nodes, eps = canonical(matched)
    stored = next((p.value for p in model.metadata_props if p.key == SPEC_PROP), None)
    candidates: list[ResNetSpec] = []
    if stored is not None:
        candidates.append(spec_from_json(stored, path))
    try:
        found = candidate_specs(weights)
    except InferenceError as exc:
        if not candidates:
            raise OnnxGraphError(f"{path}: the graph's tensors fit no spec ({exc})") from None
        found = []
    candidates += [v for s in found for v in _variants(s, eps, matched)]
    first_problems: list[str] | None = None
    for spec in candidates:
        try:
            plan = make_plan(spec)
        except ValueError:
            continue
        if {p.name: p.shape for p in plan.params} != {k: v.shape for k, v in weights.items()}:
            continue
        problems = plan_problems(plan, matched, nodes)
        if not problems:
            producer = " ".join(x for x in (model.producer_name, model.producer_version) if x) or "unknown"
            how = "spec stored in the file, checked against its graph" if stored is not None and spec == candidates[0] \
                else "spec recovered from the graph's topology"
            return OnnxImport(path, spec, weights, nodes, matched, f"ONNX (opset {_opset(model)}, by {producer})",
                              note=how)
        first_problems = first_problems or problems
    if first_problems:
        raise OnnxGraphError(f"{path}: {first_problems[0]}")
    raise OnnxGraphError(f"{path}: the graph's tensors fit no spec")


def _opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


# -- the proof ---------------------------------------------------------------------------------------------

def verify_against_onnxruntime(found: OnnxImport, model: Any | None = None, seed: int = 0) -> OnnxImport:
    """Run the file with onnxruntime and our torch model on the same random images; accept within 1e-5 relative.

    Without onnxruntime (or torch) the import is marked unverified, with a warning: never silently accepted.
    """
    try:
        import onnxruntime as ort
        import torch
    except ImportError as exc:
        found.verified = False
        found.note += f"; UNVERIFIED: {exc.name} is not installed, so the file was not run against our model"
        warnings.warn(f"{found.path}: the ONNX import is unverified ({exc.name} is not installed): the graph was "
                      "matched but not run against our model", UnverifiedImportWarning, stacklevel=3)
        return found
    from ..arrays import relative_error
    from ..backends.torch_adapter import build
    from ..plan import make_plan

    m = found.matched
    h, w = (m.input_size[0] or DYNAMIC_SIZE[0], m.input_size[1] or DYNAMIC_SIZE[1])
    batch = m.input_batch or 2
    images = np.random.default_rng(seed).standard_normal((batch, found.spec.in_channels, h, w)).astype(np.float32)
    net = build(make_plan(found.spec), found.weights).eval()
    with torch.no_grad():
        ours = net(torch.from_numpy(images)).numpy()
    feed = images if m.input_layout == "NCHW" else images.transpose(0, 2, 3, 1)
    if m.input_dtype == 10:  # a float16 graph: fed float16, and held to the same bound
        feed = feed.astype(np.float16)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    source = str(found.path) if model is None else model.SerializeToString()
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    theirs = np.asarray(session.run(None, {session.get_inputs()[0].name: feed})[0], np.float32)
    if theirs.ndim == 4 and m.input_layout == "NHWC":
        theirs = theirs.transpose(0, 3, 1, 2)
    theirs = theirs.reshape(ours.shape) if theirs.size == ours.size else theirs
    if theirs.shape != ours.shape:
        raise OnnxGraphError(f"{found.path}: onnxruntime's output has shape {theirs.shape}, our model's {ours.shape}")
    error = relative_error(ours, theirs)
    found.max_relative_error = error
    if not error < RTOL:
        raise OnnxGraphError(f"{found.path}: the graph matched spec {found.spec.name}, but our model differs from "
                             f"onnxruntime's run of the file by {error:.1e} relative (more than {RTOL:.0e}); "
                             "refusing the import")
    found.verified = True
    found.note += f"; verified against onnxruntime {ort.__version__} (relative error {error:.1e} at {h}x{w})"
    return found


def import_onnx(path: str | os.PathLike, verify: bool = True) -> OnnxImport:
    """The spec and canonical weights of a ResNet in an ONNX file, proven against onnxruntime when ``verify``."""
    path = Path(path)
    model = load_model(path)
    found = recover(model, path)
    return verify_against_onnxruntime(found, model) if verify else found


class OnnxReader:
    """The :class:`~resnet_core.io.formats.Reader` of ``.onnx`` files (see :mod:`resnet_core.io.formats`)."""

    format_name = "onnx"

    def __init__(self, path: Path):
        self.path = path
        self.found = found = import_onnx(path)
        self.stored_spec: ResNetSpec | None = found.spec
        self.stored_info = None
        self.producer = f"{found.producer}; {found.note}"

    def raw(self) -> dict[str, TensorInfo]:
        return self.tensors(None)

    def tensors(self, spec: ResNetSpec | None) -> dict[str, TensorInfo]:
        return {k: TensorInfo(tuple(v.shape), v.dtype) for k, v in self.found.weights.items()}

    def read(self, name: str) -> np.ndarray:
        return self.found.weights[name]

    def close(self) -> None:
        pass

    def __enter__(self) -> OnnxReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_onnx_reader(path: Path) -> OnnxReader:
    return OnnxReader(path)


def write_onnx(path: Path, *args: Any, **kwargs: Any) -> None:
    """ONNX is written by the exporter, which needs the model, not by a weights writer."""
    raise InputError(f"Cannot write {path.name} as weights: an ONNX file is a model export; use "
                     "`resnet-core export SOURCE model.onnx` (rc.export)")
