"""Keras 3 adapter: plan entries -> a functional ``keras.Model`` that runs on JAX, TensorFlow and torch.

Numerics follow PyTorch exactly: every strided or non-'same' convolution is padded explicitly and
run 'valid' (TF's 'same' pads asymmetrically at stride 2), max-pooling pads as PyTorch does (see
:mod:`resnet_core.keras_graph`), and batch norm uses the plan's epsilon with Keras momentum = 1 - PyTorch momentum.

The model is a plain functional ``keras.Model`` of built-in layers, so ``model.save("m.keras")`` loads in
any Keras 3 with ``keras.saving.load_model``, resnet-core installed or not, safe mode on. Its spec rides
along as ``model.spec`` while the model lives; a loaded model's spec is recovered from its layers
(:mod:`resnet_core.io.keras_spec`). A layer Keras lacks belongs in this module, registered with
``@keras.saving.register_keras_serializable(package=PACKAGE)``: importing ``resnet_core`` (with
Keras already imported) or this adapter registers it, and :func:`resnet_core.register_keras_objects`
does so explicitly.
"""

from __future__ import annotations

import contextlib
import gc
import math
import sys
from collections.abc import Iterator, Mapping
from typing import Any, cast

import keras
import numpy as np

from resnet_core.errors import InputTypeError, UnknownNameError
from resnet_core.io.infer import InferenceError
from resnet_core.io.keras_model import without_tensorflow_probe
from resnet_core.io.keras_spec import canonical_shapes, recover_plan
from resnet_core.io.transpose import fresh_in_framework_layout
from resnet_core.keras_graph import VARIABLES, KerasLayer, keras_graph
from resnet_core.mapping import check_weights, keras_table
from resnet_core.plan import Dense, Plan, binomial_filter
from resnet_core.spec import ResNetSpec

from . import (
    keras_norms,  # registers the norm layers under PACKAGE
    keras_res2net,  # noqa: F401 - registers ChannelSlice (Res2Net's split) under PACKAGE
    keras_resnest,  # noqa: F401 - registers ResNeSt's RadixSum under PACKAGE
)

PACKAGE = "resnet_core"  # the package our own Keras layers register under: "resnet_core>ClassName"


@keras.saving.register_keras_serializable(package=PACKAGE)
class BlurPool2D(keras.layers.Layer):
    """timm's BlurPool2d: pad by reflection or zeros, then a depthwise binomial filter (no weights).

    Keras has no built-in reflect padding, so this is one of the few layers of our own.
    """

    def __init__(self, filter_size: int, strides: int, padding: int, pad_mode: str = "reflect", **kwargs: Any):
        super().__init__(**kwargs)
        self.filter_size, self.strides, self.padding = int(filter_size), int(strides), int(padding)
        self.pad_mode = str(pad_mode)
        taps = np.asarray(binomial_filter(self.filter_size), dtype="float32")
        self._filter = np.outer(taps, taps)[:, :, None, None]  # (kh, kw, 1, 1), repeated per channel

    def call(self, x):
        p = self.padding
        mode = "reflect" if self.pad_mode == "reflect" else "constant"
        x = keras.ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode=mode)
        kernel = keras.ops.cast(np.repeat(self._filter, x.shape[-1], axis=2), x.dtype)
        return keras.ops.depthwise_conv(x, kernel, strides=self.strides, padding="valid")

    def compute_output_shape(self, shape):
        size = lambda d: None if d is None else (d + 2 * self.padding - self.filter_size) // self.strides + 1  # noqa: E731
        return (shape[0], size(shape[1]), size(shape[2]), shape[3])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filter_size": self.filter_size, "strides": self.strides,
                "padding": self.padding, "pad_mode": self.pad_mode}


def _initializers(layer: KerasLayer, plan: Plan) -> dict[str, Any]:
    """PyTorch's default initialisation, in Keras terms (kaiming-normal fan-out convs, torch Linear)."""
    if layer.cls in ("Conv2D", "StdConv2D"):
        kernel = layer.config.get("kernel_initializer") or \
            keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")
        return {"kernel_initializer": kernel, "bias_initializer": "zeros"}
    if layer.cls == "Conv1D":  # nn.Conv1d's default: uniform, bound 1/sqrt(fan_in)
        return {"kernel_initializer": keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")}
    if layer.cls == "Dense":
        bound = 1.0 / math.sqrt(cast(Dense, plan.head.fc).in_features)
        return {"kernel_initializer": keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
                "bias_initializer": keras.initializers.RandomUniform(-bound, bound)}
    return {}


_TORCH_NUMPY_FLOATS = ("float16", "float32", "float64")  # torch.from_numpy takes these (not ml_dtypes' bfloat16)


class _Given(keras.initializers.Initializer):
    """Returns the given array: a variable is created holding its weight, with no random draw to compile."""

    def __init__(self, value: np.ndarray):
        self.value = value

    def __call__(self, shape: Any, dtype: Any = None) -> Any:
        if tuple(shape) != self.value.shape:  # pragma: no cover - check_weights has compared the shapes
            raise RuntimeError(f"Expected a weight of shape {tuple(shape)}, got {self.value.shape}")
        if keras.backend.backend() == "torch" and keras.backend.standardize_dtype(dtype) == self.value.dtype.name \
                and self.value.dtype.name in _TORCH_NUMPY_FLOATS:
            import torch  # the torch engine's convert_to_tensor copies every numpy array (100 MB for a resnet50);

            return torch.from_numpy(self.value)  # _given's arrays are the model's own, so the variable may keep them
        return keras.ops.convert_to_tensor(self.value, dtype=dtype)


def _given(plan: Plan, weights: Mapping[str, Any] | None) -> dict[str, dict[str, np.ndarray]]:
    """Keras layer -> {variable: framework-layout array} of ``weights``, checked strictly against the plan."""
    if weights is None:
        return {}
    check_weights(plan, weights, strict=True)
    rows = keras_table(plan)
    # Contiguous: the torch engine would keep a transposed view's strides, and compute differently with them.
    # New arrays: _Given hands them to the torch engine uncopied, so never the caller's array, nor a read-only
    # view of a weights file. The blocked transpose: the same bytes as numpy's, in half the time.
    arrays = fresh_in_framework_layout([(row.layout, np.asarray(weights[row.canonical])) for row in rows])
    out: dict[str, dict[str, np.ndarray]] = {}
    for row, array in zip(rows, arrays, strict=True):
        out.setdefault(row.layer, {})[row.variable] = array
    return out


def _call(layer: Any, args: list[Any], given: dict[str, np.ndarray] | None) -> Any:
    """Call (and so build) ``layer``; with ``given``, its variables start as those arrays and the layer then
    gets its serialisable initializers back, so its config is what a random build would save."""
    if not given:
        return layer(args if len(args) > 1 else args[0])
    if not all(hasattr(layer, f"{v}_initializer") for v in given):  # a layer of ours without initializer attributes
        out = layer(args if len(args) > 1 else args[0])
        for variable, value in given.items():
            getattr(layer, variable).assign(value)
        return out
    kept = {v: getattr(layer, f"{v}_initializer") for v in given}
    for variable, value in given.items():
        setattr(layer, f"{variable}_initializer", _Given(value))
    try:
        return layer(args if len(args) > 1 else args[0])
    finally:
        for variable, initializer in kept.items():
            setattr(layer, f"{variable}_initializer", initializer)


def _layer_class(name: str) -> type:
    """A built-in Keras layer, else one of ours registered under the ``resnet_core`` package."""
    found = getattr(keras.layers, name, None) or keras.saving.get_registered_object(f"{PACKAGE}>{name}")
    if found is None:  # pragma: no cover - keras_graph names only layers that exist
        raise RuntimeError(f"No Keras layer class {name!r} (built-in or registered as {PACKAGE}>{name})")
    return found


def _policy(dtype: Any) -> Any:
    return keras.config.dtype_policy() if dtype is None else keras.dtype_policies.get(dtype)


def build(plan: Plan, weights: Mapping[str, Any] | None = None, dtype: Any = None) -> keras.Model:
    """A functional model of ``plan`` taking channels-last ``(N, H, W, C)`` input.

    ``weights`` (canonical, loaded strictly) skip random initialisation: each variable is created holding
    its weight, which on JAX saves compiling every initializer. ``dtype`` (a dtype policy or its name) is
    every layer's; None takes Keras's global policy.
    """
    policy = _policy(dtype)
    given = _given(plan, weights)
    layers, output = keras_graph(plan)
    tensors: dict[str, Any] = {}
    with _without_cyclic_gc(), _recursion_for(len(layers)):
        for layer in layers:
            if layer.cls == "InputLayer":
                inputs = tensors[layer.name] = keras.Input(name=layer.name, **layer.config)
                continue
            made = _layer_class(layer.cls)(name=layer.name, dtype=policy,
                                           **{**layer.config, **_initializers(layer, plan)})
            tensors[layer.name] = _call(made, [tensors[i] for i in layer.inputs], given.get(layer.name))
        model = keras.Model(inputs, tensors[output], name=plan.spec.name)
    return _adopt(model, plan)


@contextlib.contextmanager
def _recursion_for(layers: int) -> Iterator[None]:
    """Keras maps a functional graph recursively, a few frames per layer: ResNet-RS 270/350/420 and
    ECA-ResNet-269 are deeper than Python's default limit of 1000 frames allows."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(max(before, 4 * layers + 1000))
    try:
        yield
    finally:
        sys.setrecursionlimit(before)


@contextlib.contextmanager
def _without_cyclic_gc() -> Iterator[None]:
    """Keep Python's cyclic garbage collector to the objects made while a model is built.

    Building allocates some 10^5 container objects, which sets the collector off over and over, each
    full pass walking every live object of the process (TensorFlow's and Keras's included): measured
    on TensorFlow, half of a resnet50 build. Frozen, the objects that existed before are skipped until
    they are unfrozen afterwards; nothing is lost, collection of old cycles is merely postponed.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _adopt(model: keras.Model, plan: Plan) -> keras.Model:
    """Record the plan (and its spec) on the live model (not saved: a loaded model's is recovered from its
    layers), and give its batch norms PyTorch's training arithmetic (:func:`keras_norms.careful_batch_norm`)."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            keras_norms.careful_batch_norm(layer)
    model.spec = plan.spec
    model.plan = plan
    return model


def spec_of(model: keras.Model) -> ResNetSpec:
    """The spec of a model built by this adapter, or of one loaded by plain Keras (recovered once, then kept)."""
    return plan_of(model).spec


def plan_of(model: keras.Model) -> Plan:
    """The plan a model was built from, or, for one loaded by plain Keras, the plan recovered from its
    layers (once, then kept on the model)."""
    plan = getattr(model, "plan", None)
    if isinstance(plan, Plan):
        return plan
    if type(model).__name__ != "Functional":  # ours are plain functional models; subclasses are someone else's
        raise InputTypeError(f"Keras model {model.name!r} ({type(model).__name__}) is not a resnet-core model")
    shapes = canonical_shapes((layer.name, type(layer).__name__, [tuple(w.shape) for w in layer.weights])
                              for layer in model.layers if type(layer).__name__ in VARIABLES)
    with without_tensorflow_probe():  # get_config would import TensorFlow (seconds) on the other engines
        config = model.get_config()
    try:
        recovered = recover_plan(config, shapes, name=model.name)
    except InferenceError as exc:
        raise InputTypeError(f"Keras model {model.name!r} is not a resnet-core model: {exc}") from None
    _adopt(model, recovered)
    return recovered


def _tap_layers(model: keras.Model) -> dict[str, str]:
    """tap -> Keras layer name, in network order."""
    layers, _ = keras_graph(plan_of(model))
    return {layer.tap: layer.name for layer in layers if layer.tap}


def tap_model(model: keras.Model, taps: tuple[str, ...] | None = None) -> keras.Model:
    """A model sharing ``model``'s layers that returns a dict of tap outputs (all taps by default)."""
    layers = _tap_layers(model)
    wanted = plan_of(model).taps if taps is None else taps
    unknown = [t for t in wanted if t not in layers]
    if unknown:
        raise UnknownNameError(f"Unknown tap(s) {unknown}. Known taps: {list(layers)}")
    return keras.Model(model.input, {t: model.get_layer(layers[t]).output for t in wanted})


def feature_model(model: keras.Model) -> keras.Model:
    """Outputs of every stage (C2..C5), a list in stage order, for detection and segmentation."""
    layers = _tap_layers(model)
    return keras.Model(model.input, [model.get_layer(layers[t]).output for t in plan_of(model).feature_taps])


def owns(model: object) -> bool:
    """A Keras model built by resnet-core, or loaded from one's file (its layers give back a spec)."""
    if not isinstance(model, keras.Model):
        return False
    try:
        plan_of(model)
    except (TypeError, ValueError, KeyError):
        return False
    return True


def _variable(model: keras.Model, layer: str, variable: str):
    return getattr(model.get_layer(layer), variable)


def get_weights(model: keras.Model) -> dict[str, np.ndarray]:
    out = {}
    for row in keras_table(plan_of(model)):
        value = keras.ops.convert_to_numpy(_variable(model, row.layer, row.variable))
        out[row.canonical] = np.ascontiguousarray(row.layout.to_canonical(value))
    return out


def set_weights(model: keras.Model, weights: Mapping[str, object], strict: bool = True) -> list[str]:
    plan = plan_of(model)
    names = set(check_weights(plan, weights, strict=strict))
    for row in keras_table(plan):
        if row.canonical in names:
            var = _variable(model, row.layer, row.variable)
            value = np.asarray(weights[row.canonical])
            var.assign(row.layout.to_framework(value).astype(var.dtype))
    return sorted(names)
