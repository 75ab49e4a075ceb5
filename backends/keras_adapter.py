"""Keras 3 adapter: plan entries -> a functional ``keras.Model`` that runs on JAX, TensorFlow and torch.

Numerics follow PyTorch exactly: every strided or non-'same' convolution is padded explicitly and
run 'valid' (TF's 'same' pads asymmetrically at stride 2), max-pooling pads with -inf, and batch
norm uses the plan's epsilon with Keras momentum = 1 - PyTorch momentum.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from resnet_core.errors import UnknownNameError
from resnet_core.keras_graph import KerasLayer, keras_graph
from resnet_core.mapping import check_weights, keras_table
from resnet_core.plan import Plan, binomial_filter, make_plan
from resnet_core.spec import ResNetSpec

from .keras_norms import LAYERS as _NORM_LAYERS

_PACKAGE = "resnet_core"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ConstantPad2D(keras.layers.Layer):
    """Symmetric spatial padding with a constant (``-inf`` before max-pooling, as PyTorch pads)."""

    def __init__(self, padding: int, value: float = 0.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.padding = int(padding)
        self.value = float(value)

    def call(self, x):
        p = self.padding
        return keras.ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], constant_values=self.value)

    def compute_output_shape(self, shape):
        grow = lambda d: None if d is None else d + 2 * self.padding  # noqa: E731
        return (shape[0], grow(shape[1]), grow(shape[2]), shape[3])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "padding": self.padding, "value": self.value}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BlurPool2D(keras.layers.Layer):
    """timm's BlurPool2d: pad by reflection or zeros, then a depthwise binomial filter (no weights)."""

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


_OWN_LAYERS = {"ConstantPad2D": ConstantPad2D, "BlurPool2D": BlurPool2D}


def _initializers(layer: KerasLayer, plan: Plan) -> dict[str, Any]:
    """PyTorch's default initialisation, in Keras terms (kaiming-normal fan-out convs, torch Linear)."""
    if layer.cls in ("Conv2D", "StdConv2D"):
        kernel = layer.config.get("kernel_initializer") or \
            keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")
        return {"kernel_initializer": kernel, "bias_initializer": "zeros"}
    if layer.cls == "Conv1D":  # nn.Conv1d's default: uniform, bound 1/sqrt(fan_in)
        return {"kernel_initializer": keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")}
    if layer.cls == "Dense":
        bound = 1.0 / math.sqrt(plan.head.fc.in_features)
        return {"kernel_initializer": keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
                "bias_initializer": keras.initializers.RandomUniform(-bound, bound)}
    return {}


def _graph(plan: Plan, dtype: Any = None) -> tuple[Any, Any, dict[str, str]]:
    """Instantiate :func:`keras_graph`; return input, output and the Keras layer of each tap.

    ``dtype`` (a dtype policy or its name) is every layer's; None takes Keras's global policy.
    """
    layers, output = keras_graph(plan)
    tensors: dict[str, Any] = {}
    for layer in layers:
        if layer.cls == "InputLayer":
            inputs = tensors[layer.name] = keras.Input(name=layer.name, **layer.config)
            continue
        own = {**_OWN_LAYERS, **_NORM_LAYERS}
        cls = own[layer.cls] if layer.cls in own else getattr(keras.layers, layer.cls)
        args = [tensors[i] for i in layer.inputs]
        made = cls(name=layer.name, **{**layer.config, **_initializers(layer, plan)},
                   **({} if dtype is None else {"dtype": dtype}))
        tensors[layer.name] = made(args if len(args) > 1 else args[0])
    return inputs, tensors[output], {layer.tap: layer.name for layer in layers if layer.tap}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class KerasResNet(keras.Model):
    """A functional Keras model compiled from a spec; input is channels-last ``(N, H, W, C)``."""

    def __init__(self, spec: ResNetSpec | Mapping[str, Any], dtype: Any = None, **kwargs: Any):
        spec = spec if isinstance(spec, ResNetSpec) else ResNetSpec.from_dict(spec)
        plan = make_plan(spec)
        inputs, outputs, taps = _graph(plan, dtype)
        kwargs.setdefault("name", spec.name)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.spec = spec
        self.tap_layers = tuple(taps.items())  # (tap, Keras layer name) in network order

    @property
    def plan(self) -> Plan:
        return make_plan(self.spec)

    def get_config(self) -> dict[str, Any]:
        # The layers' dtype policy, so a bfloat16 or mixed model loads back as one (whatever the global policy).
        policy = self.get_layer(self.tap_layers[0][1]).dtype_policy.name
        return {"spec": self.spec.to_dict(), "name": self.name, "trainable": self.trainable, "dtype": policy}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> KerasResNet:
        return cls(**config)


def tap_model(model: KerasResNet, taps: tuple[str, ...] | None = None) -> keras.Model:
    """A model sharing ``model``'s layers that returns a dict of tap outputs (all taps by default)."""
    layers = dict(model.tap_layers)
    wanted = model.plan.taps if taps is None else taps
    unknown = [t for t in wanted if t not in layers]
    if unknown:
        raise UnknownNameError(f"Unknown tap(s) {unknown}. Known taps: {list(layers)}")
    return keras.Model(model.input, {t: model.get_layer(layers[t]).output for t in wanted})


def feature_model(model: KerasResNet) -> keras.Model:
    """Outputs of every stage (C2..C5), a list in stage order, for detection and segmentation."""
    layers = dict(model.tap_layers)
    return keras.Model(model.input, [model.get_layer(layers[t]).output for t in model.plan.feature_taps])


def build(plan: Plan) -> KerasResNet:
    return KerasResNet(plan.spec)


def owns(model: object) -> bool:
    return isinstance(model, KerasResNet)


def _variable(model: keras.Model, layer: str, variable: str):
    return getattr(model.get_layer(layer), variable)


def get_weights(model: KerasResNet) -> dict[str, np.ndarray]:
    out = {}
    for row in keras_table(model.plan):
        value = keras.ops.convert_to_numpy(_variable(model, row.layer, row.variable))
        out[row.canonical] = np.ascontiguousarray(row.layout.to_canonical(value))
    return out


def set_weights(model: KerasResNet, weights: Mapping[str, object], strict: bool = True) -> list[str]:
    names = set(check_weights(model.plan, weights, strict=strict))
    for row in keras_table(model.plan):
        if row.canonical in names:
            var = _variable(model, row.layer, row.variable)
            value = np.asarray(weights[row.canonical])
            var.assign(row.layout.to_framework(value).astype(var.dtype))
    return sorted(names)
