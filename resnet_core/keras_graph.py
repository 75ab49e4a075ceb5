"""The Keras layer graph of a plan, framework-free.

The Keras adapter instantiates exactly these layers, and the ``.weights.h5`` writer derives Keras's
file layout (layer order, group names) from the same list, so the model and its weight files cannot
drift apart. Every numerical rule here translates one plan entry; structure is decided in the plan.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .keras_sknet import selective_kernel_layers
from .mapping import keras_layer_name
from .plan import (
    AvgPool,
    Block,
    BlurPool,
    ChannelConv,
    Conv,
    ConvNorm,
    MaxPool,
    Mixer,
    Norm,
    Plan,
    Res2NetScales,
    SelectiveKernelConv,
    SplitAttention,
    SqueezeExcite,
)
from .tensor_roles import KERAS_VARIABLES, NORM_CLASSES

# Variables of each weighted Keras layer class, in the order Keras creates (and saves) them (tensor_roles).
VARIABLES = KERAS_VARIABLES
DROP_PATH_NOISE_SHAPE = (None, 1, 1, 1)  # one draw per sample (NHWC): the whole residual branch is dropped


@dataclass(frozen=True)
class KerasLayer:
    name: str
    cls: str  # Keras layer class name: built-in, or resnet_core's own (BlurPool2D, the fused norms, StdConv2D)
    inputs: tuple[str, ...]
    config: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    variables: tuple[str, ...] = ()
    tap: str | None = None  # the plan tap this layer's output is


class _Builder:
    def __init__(self) -> None:
        self.layers: dict[str, KerasLayer] = {}

    def add(self, cls: str, name: str, *inputs: str, variables: tuple[str, ...] = (), tap: str | None = None,
            **config: Any) -> str:
        if name in self.layers:  # pragma: no cover - plan names are unique
            raise RuntimeError(f"Duplicate Keras layer name {name!r}")
        self.layers[name] = KerasLayer(name, cls, inputs, config, variables, tap)
        return name

    def conv(self, x: str, c: Conv) -> str:
        name = keras_layer_name(c.name)
        # 'same' is symmetric (hence PyTorch-exact) only at stride 1 with an odd effective kernel;
        # anything else is padded explicitly and run 'valid' (TF pads asymmetrically at stride 2).
        same = c.stride == 1 and 2 * c.padding == c.dilation * (c.kernel_size - 1)
        if c.padding and not same:
            x = self.add("ZeroPadding2D", f"{name}_pad", x, padding=c.padding)
        zeros: dict[str, Any] = {"kernel_initializer": "zeros"} if c.zero_init else {}
        if c.standardize_eps is not None:
            zeros["eps"] = c.standardize_eps
        cls = "Conv2D" if c.standardize_eps is None else "StdConv2D"
        return self.add(
            cls, name, x, variables=VARIABLES[cls][: 2 if c.bias else 1],
            filters=c.out_channels, kernel_size=c.kernel_size, strides=c.stride,
            padding="same" if same else "valid", dilation_rate=c.dilation, groups=c.groups, use_bias=c.bias, **zeros,
        )

    def channel_conv(self, x: str, c: ChannelConv) -> str:
        # stride 1 and an odd kernel: 'same' pads (k-1)/2 on each side, exactly as PyTorch's padding
        return self.add("Conv1D", keras_layer_name(c.name), x, variables=VARIABLES["Conv1D"][:1], filters=1,
                        kernel_size=c.kernel_size, padding="same", use_bias=False)

    def norm(self, x: str, n: Norm) -> str:
        cls = NORM_CLASSES[n.kind]
        config: dict[str, Any] = {"epsilon": n.eps, "gamma_initializer": "zeros" if n.zero_init else "ones"}
        if n.kind == "batch":
            config["momentum"] = 1.0 - n.momentum
        if n.kind in ("group", "evo_s0"):
            config["groups"] = n.groups
        return self.add(cls, keras_layer_name(n.name), x, variables=VARIABLES[cls], **config)

    def preact(self, x: str, n: Norm) -> str:
        """relu(norm(x)): a pre-activation block's entry, or the final norm of a pre-activation network."""
        x = self.norm(x, n)
        return x if n.fused_act else self.add("ReLU", f"{keras_layer_name(n.name)}_relu", x)

    def unit(self, x: str, unit: ConvNorm) -> str:
        x = self.conv(x, unit.conv)
        if unit.norm is not None:
            x = self.norm(x, unit.norm)
        if unit.act == "relu":  # the plan's rule: a fused norm computes the nonlinearity itself
            x = self.add("ReLU", f"{keras_layer_name((unit.norm or unit.conv).name)}_relu", x)
        return x if unit.pool is None else self.pool(x, unit.pool)

    def maxpool(self, x: str, pool: MaxPool) -> str:
        name = keras_layer_name(pool.name)
        if pool.padding and not pool.zero_padding_exact:
            # PyTorch's -inf padding from built-in layers only (so the model loads in any Keras): a stride-1
            # 'same' max-pool pads symmetrically with -inf on every engine (odd kernel, padding (k - 1) / 2),
            # and subsampling its output at the stride gives exactly the strided pool. No arithmetic is
            # involved, so no graph optimiser can reassociate it (TensorFlow's did, with a -BIG border added).
            if 2 * pool.padding != pool.kernel_size - 1:  # pragma: no cover - the plan's pools are all of this kind
                raise RuntimeError(f"{pool.name}: -inf padding {pool.padding} with kernel {pool.kernel_size}")
            if pool.stride == 1:
                return self.add("MaxPooling2D", name, x, pool_size=pool.kernel_size, strides=1, padding="same")
            x = self.add("MaxPooling2D", f"{name}_same", x, pool_size=pool.kernel_size, strides=1, padding="same")
            return self.add("MaxPooling2D", name, x, pool_size=1, strides=pool.stride, padding="valid")
        if pool.padding:
            x = self.add("ZeroPadding2D", f"{name}_pad", x, padding=pool.padding)
        return self.add("MaxPooling2D", name, x, pool_size=pool.kernel_size, strides=pool.stride, padding="valid")

    def pool(self, x: str, pool: AvgPool | MaxPool | BlurPool) -> str:
        if isinstance(pool, MaxPool):
            return self.maxpool(x, pool)
        name = keras_layer_name(pool.name)
        if isinstance(pool, BlurPool):
            return self.add("BlurPool2D", name, x, filter_size=pool.filter_size, strides=pool.stride,
                            padding=pool.padding, pad_mode=pool.pad_mode)
        if pool.mode == "floor":
            return self.add("AveragePooling2D", name, x, pool_size=pool.kernel_size, strides=pool.stride,
                            padding="valid")
        if pool.mode == "pad":  # symmetric zero padding counted in the mean, floor (ResNeSt's avd pools)
            x = self.add("ZeroPadding2D", f"{name}_pad", x, padding=pool.padding)
            return self.add("AveragePooling2D", name, x, pool_size=pool.kernel_size, strides=pool.stride,
                            padding="valid")
        if pool.mode == "same":  # zero padding after each edge, counted in the mean (timm's AvgPool2dSame)
            pad = pool.kernel_size - 1
            x = self.add("ZeroPadding2D", f"{name}_pad", x, padding=((0, pad), (0, pad)))
            return self.add("AveragePooling2D", name, x, pool_size=pool.kernel_size, strides=pool.stride,
                            padding="valid")
        # ceil_mode=True, count_include_pad=False: for a 2x2 window this is exactly Keras's 'same',
        # whose padding falls after the edge and is excluded from the mean on every engine.
        return self.add("AveragePooling2D", name, x, pool_size=pool.kernel_size, strides=pool.stride,
                        padding="same")

    def mixer(self, x: str, mixer: Mixer) -> str:
        """A block type's own operator, by its plan class (:data:`MIXERS`)."""
        build = MIXERS.get(type(mixer))
        if build is None:  # pragma: no cover - every plan Mixer class has its layers
            raise RuntimeError(f"No Keras layers for the plan entry {type(mixer).__name__} ({mixer.name})")
        return build(self, x, mixer)

    def block(self, x: str, block: Block) -> str:
        p = x if block.pre_norm is None else self.preact(x, block.pre_norm)
        shortcut = p if block.shortcut_preact else x
        if block.shortcut_pool is not None:
            shortcut = self.pool(shortcut, block.shortcut_pool)
        if block.shortcut is not None:
            shortcut = self.unit(shortcut, block.shortcut)
        y = p
        for unit in block.main:
            y = self.mixer(y, unit) if isinstance(unit, Mixer) else self.unit(y, unit)
        if isinstance(block.attention, SqueezeExcite):
            se = block.attention
            name = keras_layer_name(se.name)
            gate = self.add("GlobalAveragePooling2D", f"{name}_mean", y, keepdims=True)
            gate = self.add("ReLU", f"{name}_relu", self.conv(gate, se.fc1))
            gate = self.add("Activation", f"{name}_gate", self.conv(gate, se.fc2), activation="sigmoid")
            y = self.add("Multiply", f"{name}_scale", y, gate)
        elif block.attention is not None:  # ECA: channels become a sequence for a 1D conv
            eca = block.attention
            name = keras_layer_name(eca.name)
            gate = self.add("GlobalAveragePooling2D", f"{name}_mean", y)
            gate = self.add("Reshape", f"{name}_to_sequence", gate, target_shape=(eca.channels, 1))
            gate = self.channel_conv(gate, eca.conv)
            gate = self.add("Reshape", f"{name}_to_map", gate, target_shape=(1, 1, eca.channels))
            gate = self.add("Activation", f"{name}_gate", gate, activation="sigmoid")
            y = self.add("Multiply", f"{name}_scale", y, gate)
        b = keras_layer_name(block.name)
        if block.drop_path:  # stochastic depth: a Dropout whose mask keeps only the batch axis (a whole sample)
            y = self.add("Dropout", f"{b}_drop_path", y, rate=block.drop_path, noise_shape=DROP_PATH_NOISE_SHAPE)
        if not block.relu_out:
            return self.add("Add", f"{b}_out", y, shortcut, tap=block.name)
        return self.add("ReLU", f"{b}_out", self.add("Add", f"{b}_add", y, shortcut), tap=block.name)


def _split_attention(g: _Builder, x: str, split: SplitAttention) -> str:
    """ResNeSt's split attention (timm's SplitAttn) in built-in layers, and RadixSum (resnet_core's: Keras cannot
    slice channels) to add the splits. The gates come out of fc2 laid out (group, radix, channel); the softmax
    runs across the radix after a Permute to (radix, group, channel), the splits' own layout."""
    name = keras_layer_name(split.name)
    y = g.add("ReLU", f"{keras_layer_name(split.bn0.name)}_relu", g.norm(g.conv(x, split.conv), split.bn0))
    pooled = y if split.radix == 1 else g.add("RadixSum", f"{name}_splits", y, radix=split.radix)
    gate = g.add("GlobalAveragePooling2D", f"{name}_mean", pooled, keepdims=True)
    gate = g.add("ReLU", f"{keras_layer_name(split.bn1.name)}_relu", g.norm(g.conv(gate, split.fc1), split.bn1))
    gate = g.conv(gate, split.fc2)
    if split.radix == 1:
        gate = g.add("Activation", f"{name}_gate", gate, activation="sigmoid")
        out = g.add("Multiply", f"{name}_scale", y, gate)
    else:
        per = split.conv.out_channels // (split.groups * split.radix)
        gate = g.add("Reshape", f"{name}_by_group", gate, target_shape=(split.groups, split.radix, per))
        gate = g.add("Permute", f"{name}_by_radix", gate, dims=(2, 1, 3))
        gate = g.add("Softmax", f"{name}_gate", gate, axis=1)
        gate = g.add("Reshape", f"{name}_to_map", gate, target_shape=(1, 1, split.conv.out_channels))
        out = g.add("RadixSum", f"{name}_out", g.add("Multiply", f"{name}_scale", y, gate), radix=split.radix)
    return out if split.pool is None else g.pool(out, split.pool)


# plan Mixer class -> the function adding its Keras layers to a builder (input layer name -> output layer name).
MIXERS: dict[type[Mixer], Callable[[_Builder, str, Any], str]] = {
    SplitAttention: _split_attention,
    SelectiveKernelConv: selective_kernel_layers,
}


def res2net_scales(g: _Builder, x: str, mixer: Res2NetScales) -> str:
    """Res2Net's scales: each split sliced out (``ChannelSlice``, resnet_core's own: Keras has no layer that
    slices channels), the cascade's Add before each conv but the first (none in a first block), conv, norm and
    ReLU; the last split passed on (average-pooled in a first block); the outputs concatenated in split order."""
    b = keras_layer_name(mixer.name)
    w = mixer.width
    outs: list[str] = []
    sp = ""
    for i, (conv, bn) in enumerate(zip(mixer.convs, mixer.bns, strict=True)):
        split = g.add("ChannelSlice", f"{b}_split{i}", x, start=i * w, stop=(i + 1) * w)
        sp = g.add("Add", f"{b}_cascade{i}", sp, split) if i > 0 and not mixer.first else split
        sp = g.unit(sp, ConvNorm(conv, bn, True))
        outs.append(sp)
    if mixer.scale > 1:
        last = g.add("ChannelSlice", f"{b}_split{mixer.scale - 1}", x, start=(mixer.scale - 1) * w,
                     stop=mixer.scale * w)
        outs.append(last if mixer.pool is None else g.pool(last, mixer.pool))
    return g.add("Concatenate", f"{b}_concat", *outs, axis=-1) if len(outs) > 1 else outs[0]


MIXERS[Res2NetScales] = res2net_scales


def keras_graph(plan: Plan) -> tuple[list[KerasLayer], str]:
    """Every Keras layer of ``plan`` in creation order (inputs before users), and the output's name.

    Built-in Keras layers wherever Keras has one (a few of resnet_core's own otherwise: blur pools, fused norms).
    """
    g = _Builder()
    x = g.add("InputLayer", "images", shape=(None, None, plan.spec.in_channels))
    for unit in plan.stem.units:
        x = g.unit(x, unit)
    for pool in (plan.stem.pool, plan.stem.blur):
        if pool is not None:
            x = g.pool(x, pool)
    g.layers[x] = _with_tap(g.layers[x], "stem")
    for block in plan.blocks:
        x = g.block(x, block)
    if plan.head.norm is not None:
        x = g.preact(x, plan.head.norm)
        g.layers[x] = _with_tap(g.layers[x], plan.head.norm.name)
    if plan.head.pool == "avg":
        x = g.add("GlobalAveragePooling2D", "avgpool", x, tap="pool")
    elif plan.head.pool == "max":
        x = g.add("GlobalMaxPooling2D", "maxpool_global", x, tap="pool")
    if plan.head.dropout:  # on the pooled features, before the classifier
        x = g.add("Dropout", "head_drop", x, rate=plan.head.dropout)
    if plan.head.fc is not None:
        x = g.add("Dense", keras_layer_name(plan.head.fc.name), x, variables=VARIABLES["Dense"], tap="logits",
                  units=plan.head.fc.out_features)
    return list(g.layers.values()), x


def _with_tap(layer: KerasLayer, tap: str) -> KerasLayer:
    return KerasLayer(layer.name, layer.cls, layer.inputs, layer.config, layer.variables, tap)
