"""keras.applications ResNet50/101/152 (v1) and ResNet50V2/101V2/152V2 <-> ResNetSpec.

Keras names layers ``conv1_conv``, ``conv{S}_block{B}_{0|1|2|3}_{conv|bn}`` (0: the shortcut) and
``predictions``; V2 adds ``conv{S}_block{B}_preact_bn`` and ``post_bn``, and its ``_{i}_bn`` follows
conv ``i`` (canonical ``norm{i+1}``). Kernels are HWIO and dense weights (in, out), transposed by
:class:`~resnet_core.layouts.Layout`. The peer's head ends in ``classifier_activation`` (softmax by
default) while ours returns logits: apply the softmax to ours, or compare ours with :func:`logits`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..name_tables import KERAS_APPLICATIONS, KERAS_APPLICATIONS_V2, Table
from ..plan import Plan, explicit_width_fields, make_plan
from ..spec import ResNetSpec, SpecError
from ..weights_info import WeightsInfo
from ._common import (
    check_round_trip,
    check_units,
    keras_to_torch_momentum,
    match_output_stride,
    named,
    refuse_export,
    unsupported,
)
from ._keras import check_conv, check_norm, padding, producer

PEER = "keras.applications"

TABLE, TABLE_V2 = KERAS_APPLICATIONS, KERAS_APPLICATIONS_V2

CONSTRUCTORS: dict[tuple[int, ...], str] = {
    (3, 4, 6, 3): "ResNet50", (3, 4, 23, 3): "ResNet101", (3, 8, 36, 3): "ResNet152"}
# What each version fixes; anything else is refused on export.
FIXED: dict[bool, dict[str, Any]] = {
    False: dict(stride_in_1x1=True, stride_block="first", stem_pool_padding="-inf"),
    True: dict(stride_in_1x1=False, stride_block="last", stem_pool_padding="zero"),
}
KERAS_BN_EPS = 1.001e-5  # hard-coded by keras.applications
_ALLOWED = ("InputLayer", "ZeroPadding2D", "Conv2D", "BatchNormalization", "Activation", "MaxPooling2D", "Add",
            "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Dense")


def accepts(model: object) -> bool:
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(model, keras.Model)


def tensors(model: Any) -> dict[str, np.ndarray]:
    """Every variable of the model as ``layer/variable`` -> numpy, in the peer's layout."""
    import keras

    return {f"{layer.name}/{v.name}": np.array(keras.ops.convert_to_numpy(v)) for layer in model.layers
            for v in layer.weights}


def logits(model: Any, images: Any) -> np.ndarray:
    """The peer's pre-activation outputs of ``predictions`` (what our model returns), on its own engine."""
    import keras

    dense = model.get_layer("predictions")
    features = keras.Model(model.input, dense.input)(images, training=False)
    return keras.ops.convert_to_numpy(keras.ops.add(keras.ops.matmul(features, dense.kernel), dense.bias))


def _table(plan: Plan) -> Table:
    return TABLE_V2 if plan.spec.preact else TABLE


def _check_structure(plan: Plan, model: Any) -> list[str]:
    layers = {layer.name: layer for layer in model.layers}
    faults = check_units(plan, _table(plan), layers, check_conv, check_norm)
    pool: Any = layers.get("pool1_pool")
    if plan.stem.pool is not None:
        cfg = pool.get_config()
        # V1's zero padding equals PyTorch's -inf padding (the pool follows a ReLU); V2's is in the spec.
        if (tuple(cfg["pool_size"]), tuple(cfg["strides"]), padding(pool)) != ((3, 3), (2, 2), 1):
            faults.append(f"pool1_pool is {cfg}, expected a 3x3 stride-2 max pool padded by 1")
    for block in plan.blocks:  # V2's subsampling shortcuts: a 1x1 max-pool of the block's input
        name = f"conv{block.stage + 1}_block{block.index + 1}"
        add = next((layers[n] for n in (f"{name}_add", f"{name}_out") if type(layers.get(n)).__name__ == "Add"), None)
        if add is None:
            continue
        sources = [producer(t) for t in add.input]
        pools = [src for src in sources if type(src).__name__ == "MaxPooling2D"]
        want = block.shortcut_pool
        have = [(tuple(p.get_config()["pool_size"]), tuple(p.get_config()["strides"])) for p in pools]
        if want is None and have:
            faults.append(f"{add.name} adds a max-pooled shortcut {have[0]} (spec: none)")
        elif want is not None and have != [((1, 1), (want.stride, want.stride))]:
            faults.append(f"{add.name}'s shortcut is {have or 'not pooled'} "
                          f"(spec: a 1x1 max-pool, stride {want.stride})")
    if plan.head.fc is not None:
        dense, fc = layers["predictions"], plan.head.fc
        if tuple(dense.kernel.shape) != (fc.in_features, fc.out_features) or not dense.use_bias:
            faults.append(f"predictions has kernel {tuple(dense.kernel.shape)}, bias={dense.use_bias}")
    return faults


def from_model(model: Any) -> tuple[ResNetSpec, dict[str, np.ndarray]]:
    layers = {layer.name: layer for layer in model.layers}
    v2 = any(n.endswith("_preact_bn") for n in layers) or "post_bn" in layers
    if "conv1_conv" not in layers or "conv2_block1_1_conv" not in layers:
        raise unsupported(PEER, [f"model {model.name!r} is not a keras.applications ResNet (no conv1_conv / "
                                 "conv2_block1_1_conv layers)"])
    problems = [f"layer {n} is {type(layer).__name__}" for n, layer in layers.items()
                if type(layer).__name__ not in _ALLOWED]
    for n, layer in layers.items():
        if type(layer).__name__ == "Activation" and getattr(layer.activation, "__name__", "") != "relu":
            problems.append(f"activation {n} is {getattr(layer.activation, '__name__', layer.activation)!r}, not relu")
    if "conv2_block1_3_conv" not in layers:
        problems.append("basic (two-conv) blocks: keras.applications builds bottlenecks only")
    if problems:
        raise unsupported(PEER, problems)
    depths, s = [], 2
    while f"conv{s}_block1_1_conv" in layers:
        depths.append(max(int(n.split("_")[1][5:]) for n in layers if n.startswith(f"conv{s}_block")
                          and n.endswith("_1_conv")))
        s += 1
    out = producer(model.outputs[0])
    top = out.name == "predictions"
    kind = type(out).__name__
    pooling = None if top else {"GlobalAveragePooling2D": "avg", "GlobalMaxPooling2D": "max"}.get(kind)
    stem, bn = layers["conv1_conv"], layers["post_bn" if v2 else "conv1_bn"]
    # Every block's conv widths, all stages read (the spec turns them into its width rule's fields).
    widths = [("bottleneck", [tuple(layers[f"conv{s}_block{i}_{k}_conv"].filters for k in (1, 2, 3))
                              for i in range(1, depth + 1)]) for s, depth in enumerate(depths, 2)]
    try:
        spec = ResNetSpec(
            **explicit_width_fields(widths), layers=tuple(depths), groups=layers["conv2_block1_2_conv"].groups,
            num_classes=out.units if top else 0,
            include_top=top, pooling=pooling, in_channels=int(stem.kernel.shape[2]), stem_width=stem.filters,
            bn_eps=float(bn.epsilon), bn_momentum=keras_to_torch_momentum(bn.momentum),
            conv_bias=bool(stem.use_bias), stem_pool="pool1_pool" in layers, preact=v2, **FIXED[v2],
        )
        if not v2 and "conv3_block1_1_conv" in layers:  # else checked against the plan below
            spec = spec.replace(stride_in_1x1=tuple(layers["conv3_block1_1_conv"].strides) != (1, 1))
    except SpecError as exc:
        raise unsupported(PEER, [str(exc)]) from None
    spec = match_output_stride(spec, lambda plan: _check_structure(plan, model), PEER)
    spec = named(spec, f"keras_{model.name}")
    return spec, _table(make_plan(spec)).to_canonical(make_plan(spec), tensors(model), PEER)


def info_of(model: Any) -> WeightsInfo:
    """keras.applications' weights expect ``preprocess_input``: "caffe" for v1, "tf" for V2."""
    v2 = any(layer.name == "post_bn" for layer in model.layers)
    return WeightsInfo(preprocessing="tf" if v2 else "caffe")


def to_model(spec: ResNetSpec, weights: Mapping[str, Any], info: WeightsInfo | None = None, **options: Any) -> Any:
    """keras.applications.ResNet50/101/152 (V2 for ``preact``) on the current Keras engine, ``weights=None``
    then ours set.

    ``options`` go to the constructor (``input_shape``, ``classifier_activation``...). With a top,
    ``input_shape`` defaults to (224, 224, C) as keras.applications needs a static one.
    """
    fixed = dict(block="bottleneck", groups=1, width_per_group=64, stem="7x7", stem_width=64, base_planes=64,
                 stem_pool=True, downsample="conv", attention=None, output_stride=32, conv_bias=True,
                 bn_eps=KERAS_BN_EPS, **FIXED[spec.preact])
    version = "V2 (preact=True)" if spec.preact else "v1"
    problems = [f"{k}={getattr(spec, k)!r} (keras.applications ResNet {version} has {k}={v!r})"
                for k, v in fixed.items() if getattr(spec, k) != v]
    if spec.layers not in CONSTRUCTORS:
        problems.append(f"layers={spec.layers} (keras.applications builds {list(CONSTRUCTORS)})")
    refuse_export(spec, PEER, problems)
    import keras

    channels = spec.in_channels
    options.setdefault("input_shape", (224, 224, channels) if spec.include_top else (None, None, channels))
    model = getattr(keras.applications, CONSTRUCTORS[spec.layers] + ("V2" if spec.preact else ""))(
        weights=None, include_top=spec.include_top, classes=spec.num_classes if spec.include_top else 1000,
        pooling=None if spec.include_top else spec.pooling, **options)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            layer.momentum = 1.0 - spec.bn_momentum
    values = _table(make_plan(spec)).to_peer(make_plan(spec), weights)
    variables = {f"{layer.name}/{v.name}": v for layer in model.layers for v in layer.weights}
    if set(values) != set(variables):
        raise unsupported(PEER, [f"exported tensors do not fit the model: {sorted(set(values) ^ set(variables))[:10]}"])
    for name, value in values.items():
        variables[name].assign(value.astype(variables[name].dtype))
    check_round_trip(spec, from_model(model)[0], PEER)
    return model
