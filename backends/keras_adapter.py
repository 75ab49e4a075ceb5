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

from resnet_core.mapping import check_weights, keras_layer_name, keras_table
from resnet_core.plan import AvgPool, Block, Conv, ConvNorm, MaxPool, Plan, SqueezeExcite, make_plan
from resnet_core.spec import ResNetSpec

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


def _conv(x, c: Conv):
    name = keras_layer_name(c.name)
    # 'same' is symmetric (hence exact) only at stride 1 with an odd effective kernel.
    same = c.stride == 1 and 2 * c.padding == c.dilation * (c.kernel_size - 1)
    if c.padding and not same:
        x = keras.layers.ZeroPadding2D(c.padding, name=f"{name}_pad")(x)
    return keras.layers.Conv2D(
        c.out_channels, c.kernel_size, strides=c.stride, padding="same" if same else "valid",
        dilation_rate=c.dilation, groups=c.groups, use_bias=c.bias,
        kernel_initializer=keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal"),
        bias_initializer="zeros", name=name,
    )(x)


def _unit(x, unit: ConvNorm, act_name: str):
    n = unit.norm
    x = _conv(x, unit.conv)
    x = keras.layers.BatchNormalization(
        epsilon=n.eps, momentum=1.0 - n.momentum, gamma_initializer="zeros" if n.zero_init else "ones",
        name=keras_layer_name(n.name),
    )(x)
    return keras.layers.ReLU(name=act_name)(x) if unit.relu else x


def _maxpool(x, pool: MaxPool):
    name = keras_layer_name(pool.name)
    if pool.padding:
        x = ConstantPad2D(pool.padding, -math.inf, name=f"{name}_pad")(x)
    return keras.layers.MaxPooling2D(pool.kernel_size, pool.stride, padding="valid", name=name)(x)


def _squeeze_excite(x, se: SqueezeExcite):
    name = keras_layer_name(se.name)
    gate = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_mean")(x)
    gate = keras.layers.ReLU(name=f"{name}_relu")(_conv(gate, se.fc1))
    gate = keras.layers.Activation("sigmoid", name=f"{name}_gate")(_conv(gate, se.fc2))
    return keras.layers.Multiply(name=f"{name}_scale")([x, gate])


def _shortcut_pool(x, pool: AvgPool):
    name = keras_layer_name(pool.name)
    if pool.mode == "same":  # zero padding after each edge, counted in the mean (timm's AvgPool2dSame)
        pad = pool.kernel_size - 1
        x = keras.layers.ZeroPadding2D(((0, pad), (0, pad)), name=f"{name}_pad")(x)
        return keras.layers.AveragePooling2D(pool.kernel_size, pool.stride, padding="valid", name=name)(x)
    # ceil_mode=True, count_include_pad=False: for a 2x2 window, exactly Keras's 'same', whose padding
    # falls after the edge and is excluded from the mean on every engine.
    return keras.layers.AveragePooling2D(pool.kernel_size, pool.stride, padding="same", name=name)(x)


def _block(x, block: Block):
    shortcut = x
    if block.shortcut_pool is not None:
        shortcut = _shortcut_pool(shortcut, block.shortcut_pool)
    if block.shortcut is not None:
        shortcut = _unit(shortcut, block.shortcut, "")
    y = x
    for unit in block.main:
        y = _unit(y, unit, f"{keras_layer_name(unit.norm.name)}_relu")
    if block.attention is not None:
        y = _squeeze_excite(y, block.attention)
    b = keras_layer_name(block.name)
    x = keras.layers.Add(name=f"{b}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{b}_out")(x)


def _graph(plan: Plan, inputs) -> tuple[Any, dict[str, str]]:
    """The output tensor, and the Keras layer that produces each tap of the plan."""
    taps: dict[str, str] = {}

    def tap(name: str, tensor):
        taps[name] = tensor._keras_history.operation.name
        return tensor

    x = inputs
    for unit in plan.stem.units:
        x = _unit(x, unit, f"{keras_layer_name(unit.norm.name)}_relu")
    if plan.stem.pool is not None:
        x = _maxpool(x, plan.stem.pool)
    tap("stem", x)
    for block in plan.blocks:
        x = tap(block.name, _block(x, block))
    head = plan.head
    if head.pool == "avg":
        x = tap("pool", keras.layers.GlobalAveragePooling2D(name="avgpool")(x))
    elif head.pool == "max":
        x = tap("pool", keras.layers.GlobalMaxPooling2D(name="maxpool_global")(x))
    if head.fc is not None:
        bound = 1.0 / math.sqrt(head.fc.in_features)
        x = keras.layers.Dense(
            head.fc.out_features, name=keras_layer_name(head.fc.name),
            kernel_initializer=keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
            bias_initializer=keras.initializers.RandomUniform(-bound, bound),
        )(x)
        tap("logits", x)
    return x, taps


@keras.saving.register_keras_serializable(package=_PACKAGE)
class KerasResNet(keras.Model):
    """A functional Keras model compiled from a spec; input is channels-last ``(N, H, W, C)``."""

    def __init__(self, spec: ResNetSpec | Mapping[str, Any], **kwargs: Any):
        spec = spec if isinstance(spec, ResNetSpec) else ResNetSpec.from_dict(spec)
        plan = make_plan(spec)
        inputs = keras.Input((None, None, spec.in_channels), name="images")
        outputs, taps = _graph(plan, inputs)
        kwargs.setdefault("name", spec.name)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.spec = spec
        self.tap_layers = tuple(taps.items())  # (tap, Keras layer name) in network order

    @property
    def plan(self) -> Plan:
        return make_plan(self.spec)

    def get_config(self) -> dict[str, Any]:
        return {"spec": self.spec.to_dict(), "name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> KerasResNet:
        return cls(**config)


def tap_model(model: KerasResNet, taps: tuple[str, ...] | None = None) -> keras.Model:
    """A model sharing ``model``'s layers that returns a dict of tap outputs (all taps by default)."""
    layers = dict(model.tap_layers)
    wanted = model.plan.taps if taps is None else taps
    unknown = [t for t in wanted if t not in layers]
    if unknown:
        raise KeyError(f"Unknown tap(s) {unknown}. Known taps: {list(layers)}")
    return keras.Model(model.inputs, {t: model.get_layer(layers[t]).output for t in wanted})


def feature_model(model: KerasResNet) -> keras.Model:
    """Outputs of every stage (C2..C5), a list in stage order, for detection and segmentation."""
    layers = dict(model.tap_layers)
    return keras.Model(model.inputs, [model.get_layer(layers[t]).output for t in model.plan.feature_taps])


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
