"""The Keras layers of SKNet's selective-kernel conv (a plan ``SelectiveKernelConv``), framework-free: built-in
layers only, so a saved model loads in safe mode with no custom object.

Keras has no channel-slicing layer, so two built-in croppers slice exactly (pure data movement): the input's
share of each path is a ``Cropping2D`` over the channel axis moved first (``Permute``), and each path's
attention weights a ``Cropping1D`` over the paths axis. Keras's Conv2D refuses a stride with a dilation (the
5x5 path as a dilated 3x3 in a strided block): that conv runs at stride 1 ('same' pads it symmetrically, as
timm does) and a 1x1 max-pool at the stride subsamples it, the same outputs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .mapping import keras_layer_name
from .plan import ConvNorm, SelectiveKernelConv


def _path(g: Any, x: str, unit: ConvNorm) -> str:
    conv = unit.conv
    if conv.stride > 1 and conv.dilation > 1:
        y = g.conv(x, dataclasses.replace(conv, stride=1))
        y = g.add("MaxPooling2D", f"{keras_layer_name(conv.name)}_subsample", y, pool_size=1, strides=conv.stride,
                  padding="valid")
    else:
        y = g.conv(x, conv)
    if unit.norm is None or unit.pool is not None:  # pragma: no cover - the plan builds none of these
        raise RuntimeError(f"{conv.name}: a selective-kernel path is conv, norm, ReLU")
    y = g.norm(y, unit.norm)
    return g.add("ReLU", f"{keras_layer_name(unit.norm.name)}_relu", y)


def selective_kernel_layers(g: Any, x: str, sk: SelectiveKernelConv) -> str:
    """timm's SelectiveKernel on builder ``g`` (keras_graph's): the paths, the attention over them (softmax
    across the paths of each channel), the weighted sum. Returns the output layer's name."""
    name = keras_layer_name(sk.name)
    paths, channels = len(sk.paths), sk.channels
    share = sk.in_channels // paths
    first = g.add("Permute", f"{name}_channels_first", x, dims=(3, 1, 2)) if sk.split_input else x
    outs = []
    for i, unit in enumerate(sk.paths):
        part = x
        if sk.split_input:  # channels [i * share, (i + 1) * share): crop the channel axis, now axis 1
            part = g.add("Cropping2D", f"{name}_split{i}", first, cropping=((i * share, (paths - 1 - i) * share),
                                                                            (0, 0)), data_format="channels_last")
            part = g.add("Permute", f"{name}_split{i}_channels_last", part, dims=(2, 3, 1))
        outs.append(_path(g, part, unit))
    a = g.add("Add", f"{name}_attn_sum", *outs)
    a = g.add("GlobalAveragePooling2D", f"{name}_attn_mean", a, keepdims=True)
    a = g.norm(g.conv(a, sk.fc_reduce), sk.attn_norm)
    a = g.conv(g.add("ReLU", f"{keras_layer_name(sk.attn_norm.name)}_relu", a), sk.fc_select)
    a = g.add("Reshape", f"{name}_attn_paths", a, target_shape=(paths, channels))  # timm's view(B, P, C)
    a = g.add("Softmax", f"{name}_attn_softmax", a, axis=1)
    weighted = []
    for i, out in enumerate(outs):
        w = g.add("Cropping1D", f"{name}_attn_select{i}", a, cropping=(i, paths - 1 - i))
        w = g.add("Reshape", f"{name}_attn_weight{i}", w, target_shape=(1, 1, channels))
        weighted.append(g.add("Multiply", f"{name}_path{i}_weighted", out, w))
    return g.add("Add", name, *weighted)
