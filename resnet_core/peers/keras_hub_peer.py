"""keras-hub ResNetBackbone / ResNetImageClassifier (ResNet v1, vd and v2) <-> ResNetSpec.

keras-hub names layers ``conv{n}_conv`` / ``conv{n}_bn`` in the stem, ``stack{S}_block{B}_{0|1|2|3}_{conv|bn}``
in the blocks (0-based; 0: the projection shortcut), ``stack{S}_block{B}_pre_activation_bn`` and ``post_bn``
with ``use_pre_activation``, and ``predictions`` in a classifier. Its ``bottleneck_block``/``basic_block`` are
torchvision's v1.5, the ``_vd`` blocks timm's "d" shortcut (``downsample="avg"``), ``use_pre_activation`` timm's
ResNetV2 (``preact``); convolutions are unbiased and batch norms use eps 1e-5, momentum 0.9 (0.1 here), all
hard-coded. The canonical names of the stem, the shortcut and the norms depend on ``stem``, ``downsample``
and ``preact``, so there is one table per combination, chosen by the spec.

The classifier's Dense has ``activation`` None by default; with "softmax" the weights are imported as
keras.applications' are, and :func:`logits` gives what our model returns. The trained-with record's
normalisation comes from a classifier's ``preprocessor.image_converter`` (``x * scale + offset``):
keras-hub's ResNet presets are converted from timm (resnet50.a1_in1k, resnetv2_50.a1h_in1k...) with scale
1 / (255 std) and offset -mean / std from timm's pretrained_cfg. A bare backbone (or a converter without
scale and offset) says nothing and is recorded as ImageNet's; "caffe" (BGR) is beyond an ImageConverter.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Iterator, Mapping
from typing import Any, cast

import numpy as np

from ..name_tables import KERAS_KINDS, ModuleRow, Table
from ..plan import AvgPool, MaxPool, Plan, make_plan, planes_of, stage_planes, tiered_stem_width
from ..spec import ResNetSpec, SpecError
from ..weights_info import IMAGENET_MEAN, IMAGENET_STD, WeightsInfo
from ._common import (
    check_round_trip,
    check_units,
    keras_to_torch_momentum,
    match_output_stride,
    named,
    refuse_export,
    unsupported,
)
from ._keras import check_conv, check_norm, producer

PEER = "keras-hub"

# Stem rows by "three 3x3 convs?": keras-hub numbers its stem convs, timm's deep stem is a Sequential.
STEM = {
    False: (ModuleRow("conv1_conv", "conv1", "conv"), ModuleRow("conv1_bn", "bn1", "bn")),
    True: (ModuleRow("conv1_conv", "conv1.0", "conv"), ModuleRow("conv1_bn", "conv1.1", "bn"),
           ModuleRow("conv2_conv", "conv1.3", "conv"), ModuleRow("conv2_bn", "conv1.4", "bn"),
           ModuleRow("conv3_conv", "conv1.6", "conv"), ModuleRow("conv3_bn", "bn1", "bn")),
}
# Shortcut rows by (preact, downsample); they go before the {i} rows, which also match 0.
SHORTCUT = {
    (False, "conv"): (ModuleRow("stack{s-1}_block{b}_0_conv", "layer{s}.{b}.downsample.0", "conv"),
                      ModuleRow("stack{s-1}_block{b}_0_bn", "layer{s}.{b}.downsample.1", "bn")),
    (False, "avg"): (ModuleRow("stack{s-1}_block{b}_0_conv", "layer{s}.{b}.downsample.1", "conv"),
                     ModuleRow("stack{s-1}_block{b}_0_bn", "layer{s}.{b}.downsample.2", "bn")),
    (True, "conv"): (ModuleRow("stack{s-1}_block{b}_0_conv", "layer{s}.{b}.downsample.conv", "conv"),),
    (True, "avg"): (ModuleRow("stack{s-1}_block{b}_0_conv", "layer{s}.{b}.downsample.conv", "conv"),),
}
# Main-path rows by preact: keras-hub's {i}_bn follows conv i, which timm's ResNetV2 calls norm{i+1}.
MAIN = {
    False: (ModuleRow("stack{s-1}_block{b}_{i}_conv", "layer{s}.{b}.conv{i}", "conv"),
            ModuleRow("stack{s-1}_block{b}_{i}_bn", "layer{s}.{b}.bn{i}", "bn")),
    True: (ModuleRow("stack{s-1}_block{b}_pre_activation_bn", "layer{s}.{b}.norm1", "bn"),
           ModuleRow("stack{s-1}_block{b}_{i}_conv", "layer{s}.{b}.conv{i}", "conv"),
           ModuleRow("stack{s-1}_block{b}_{i}_bn", "layer{s}.{b}.norm{i+1}", "bn"),
           ModuleRow("post_bn", "norm", "bn")),
}
HEAD = (ModuleRow("predictions", "fc", "dense"),)

HUB_BN_EPS, HUB_BN_MOMENTUM = 1e-5, 0.1  # keras-hub's epsilon and momentum (0.9 in Keras), hard-coded
ACTIVATIONS = ("linear", "softmax")  # classifier activations whose logits are our output
_ALLOWED = ("InputLayer", "ZeroPadding2D", "Conv2D", "BatchNormalization", "Activation", "MaxPooling2D",
            "AveragePooling2D", "Add")


@functools.cache
def _table(deep_stem: bool, preact: bool, downsample: str) -> Table:
    return Table(STEM[deep_stem] + SHORTCUT[preact, downsample] + MAIN[preact] + HEAD, KERAS_KINDS, separator="/")


def table_for(spec: ResNetSpec) -> Table:
    """The name table of ``spec``'s stem, shortcut and block kind."""
    return _table(spec.stem != "7x7", spec.preact, spec.downsample)


def _hub_models() -> Any:
    hub = sys.modules.get("keras_hub")  # loaded if such a model exists: nothing is imported
    return None if hub is None else hub.models


def accepts(model: object) -> bool:
    """A ResNetBackbone, or an ImageClassifier (ResNetImageClassifier or the generic one) around one."""
    models = _hub_models()
    if models is None:
        return False
    return isinstance(model, models.ResNetBackbone) or (
        isinstance(model, models.ImageClassifier) and isinstance(getattr(model, "backbone", None),
                                                                 models.ResNetBackbone))


def _parts(model: Any) -> tuple[Any, Any]:
    """(backbone, classifier or None)."""
    return (model, None) if isinstance(model, _hub_models().ResNetBackbone) else (model.backbone, model)


def _layers(model: Any) -> Iterator[Any]:
    """Every layer, the classifier's backbone expanded into its own."""
    backbone = _parts(model)[0]
    for layer in model.layers:
        yield from (layer.layers if layer is backbone else (layer,))


def tensors(model: Any) -> dict[str, np.ndarray]:
    """Every variable of the model as ``layer/variable`` -> numpy, in the peer's layout."""
    import keras

    return {f"{layer.name}/{v.name}": np.array(keras.ops.convert_to_numpy(v)) for layer in _layers(model)
            for v in layer.weights}


def logits(model: Any, images: Any) -> np.ndarray:
    """The model's output before the classifier's activation (what our model returns), on its own engine."""
    import keras

    backbone, classifier = _parts(model)
    x = backbone(images, training=False)
    if classifier is not None:
        dense = classifier.output_dense
        x = keras.ops.add(keras.ops.matmul(classifier.pooler(x), dense.kernel), dense.bias)
    return keras.ops.convert_to_numpy(x)


def _per_channel(value: Any, channels: int) -> np.ndarray | None:
    value = np.asarray(value, np.float64).ravel()
    return np.broadcast_to(value, (channels,)) if value.size in (1, channels) else None


def _affine(info: WeightsInfo, channels: int) -> tuple[np.ndarray, np.ndarray] | None:
    """An ImageConverter's (scale, offset) per channel for ``info``; None for "caffe" (BGR) or a channel mismatch."""
    if info.preprocessing == "caffe":
        return None
    if info.preprocessing == "tf":
        return np.full(channels, 1.0 / 127.5), np.full(channels, -1.0)
    mean, std = (_per_channel(v, channels) for v in info.normalisation)
    if mean is None or std is None:
        return None
    return 1.0 / (255.0 * std), -mean / std


def info_of(model: Any) -> WeightsInfo:
    """The normalisation a classifier's image converter applies (mean = -offset * std, std = 1 / (255 scale))."""
    converter = getattr(getattr(model, "preprocessor", None), "image_converter", None)
    scale, offset = getattr(converter, "scale", None), getattr(converter, "offset", None)
    if scale is None and offset is None:
        return WeightsInfo()
    scale = np.asarray(1.0 if scale is None else scale, np.float64).ravel()
    offset = np.asarray(0.0 if offset is None else offset, np.float64).ravel()
    if np.allclose(scale, 1.0 / 127.5, rtol=1e-6, atol=0) and np.allclose(offset, -1.0, rtol=1e-6, atol=0):
        return WeightsInfo(preprocessing="tf")
    std = 1.0 / (255.0 * scale)
    mean = -offset * std
    if mean.size == std.size == 3 and np.allclose(mean, IMAGENET_MEAN, rtol=1e-6, atol=0) and \
            np.allclose(std, IMAGENET_STD, rtol=1e-6, atol=0):
        return WeightsInfo()  # ImageNet's, the default (exact, without the round trip's last-bit noise)
    return WeightsInfo(mean=tuple(np.broadcast_to(mean, (3,)).tolist()) if mean.size in (1, 3) else tuple(mean),
                       std=tuple(np.broadcast_to(std, (3,)).tolist()) if std.size in (1, 3) else tuple(std))


def _stem(filters: list[int], kernels: list[int]) -> tuple[str, int] | None:
    """(stem, stem_width) of keras-hub's input convs, None when ResNetSpec has no such stem."""
    if list(kernels) == [7] and len(filters) == 1:
        return "7x7", filters[0]
    if list(kernels) == [3, 3, 3] and len(filters) == 3 and filters[2] == 2 * filters[1]:
        width = filters[1]
        kinds = {width: "deep", tiered_stem_width(width): "deep_tiered"}
        return (kinds[filters[0]], width) if filters[0] in kinds else None
    return None


def _stage_strides(stages: int) -> list[int]:
    return [1] + [2] * (stages - 1)


def _config_refusals(backbone: Any, classifier: Any) -> list[str]:
    """What the keras-hub config says that ResNetSpec cannot, one line per field."""
    problems = [f"layer {layer.name} is {type(layer).__name__}" for layer in backbone.layers
                if type(layer).__name__ not in _ALLOWED]
    problems += [f"activation {layer.name} is {layer.get_config()['activation']!r}, not relu"
                 for layer in backbone.layers
                 if type(layer).__name__ == "Activation" and layer.get_config()["activation"] != "relu"]
    if backbone.block_type.endswith("_vd") and backbone.use_pre_activation:
        problems.append(f"block_type={backbone.block_type!r} with use_pre_activation=True (keras-hub feeds the "
                        "pre-activated input to a stride-1 1x1 shortcut conv without the average pool, which "
                        "ResNetSpec cannot express and which cannot match the main path where a stack strides)")
    stages = len(backbone.stackwise_num_blocks)
    if list(backbone.stackwise_num_strides) != _stage_strides(stages):
        problems.append(f"stackwise_num_strides={list(backbone.stackwise_num_strides)} (ResNetSpec strides its "
                        f"stages {_stage_strides(stages)})")
    widths = list(stage_planes(backbone.stackwise_num_filters[0], stages))
    if list(backbone.stackwise_num_filters) != widths:
        problems.append(f"stackwise_num_filters={list(backbone.stackwise_num_filters)} (ResNetSpec doubles the "
                        f"width at each stage: {widths})")
    if _stem(backbone.input_conv_filters, backbone.input_conv_kernel_sizes) is None:
        problems.append(f"input_conv_filters={list(backbone.input_conv_filters)} with input_conv_kernel_sizes="
                        f"{list(backbone.input_conv_kernel_sizes)} (ResNetSpec's stems: one 7x7 conv, or three "
                        "3x3 convs of widths [w, w, 2w] ('deep') or [3 * (w // 4), w, 2w] ('deep_tiered'))")
    if classifier is not None:
        if classifier.pooling != "avg" or type(classifier.pooler).__name__ != "GlobalAveragePooling2D":
            problems.append(f"pooling={classifier.pooling!r} (ResNetSpec's classifier average-pools)")
        activation = classifier.output_dense.get_config()["activation"]
        if activation not in ACTIVATIONS:
            problems.append(f"activation={activation!r} (ResNetSpec returns logits; {ACTIVATIONS} are accepted)")
    return problems


def _projection_faults(plan: Plan, block_type: str) -> list[str]:
    """Blocks where keras-hub's projection rule and the plan's disagree.

    keras-hub projects the first block of every stack (of every stack but the first with basic_block),
    whatever the widths; ResNetSpec projects on a stride or a change of width.
    """
    faults = []
    for b in plan.blocks:
        hub = b.index == 0 and (block_type != "basic_block" or b.stage > 1)
        if hub != (b.shortcut is not None):
            faults.append(
                f"stack{b.stage - 1}_block{b.index} ({b.in_channels} -> {b.out_channels} channels, stride {b.stride}): "
                f"keras-hub's {block_type} {'projects the shortcut' if hub else 'has an identity shortcut'} where "
                f"ResNetSpec {'has an identity' if hub else 'projects'}")
    return faults


def _pool_padding(layer: Any, data_format: str) -> tuple[int, float] | None:
    """(padding, value) before a 'valid' pool: a ZeroPadding2D or an ops.pad with a constant; None otherwise."""
    if layer.get_config()["padding"] != "valid":
        return None
    history = layer.input._keras_history
    source = history.operation
    if type(source).__name__ == "ZeroPadding2D":
        pads = {p for pair in source.get_config()["padding"] for p in pair}
        return (pads.pop(), 0.0) if len(pads) == 1 else None
    if type(source).__name__ == "Pad":  # keras-hub's v2: ops.pad(x, pad_width, constant_values=-inf)
        spatial = source.pad_width[1:3] if data_format == "channels_last" else source.pad_width[2:4]
        widths = {p for pair in spatial for p in pair}
        value = source._inbound_nodes[history.node_index].arguments.kwargs.get("constant_values", 0.0)
        return (widths.pop(), float(value)) if len(widths) == 1 and source.mode == "constant" else None
    return 0, 0.0


def _check_structure(plan: Plan, backbone: Any, classifier: Any) -> list[str]:
    layers = {layer.name: layer for layer in backbone.layers}
    faults = check_units(plan, table_for(plan.spec), layers, check_conv, check_norm)
    pool, want = layers["pool1_pool"], cast("MaxPool", plan.stem.pool)  # keras-hub stems end in a max pool
    cfg = pool.get_config()
    pad = _pool_padding(pool, backbone.data_format)
    # Zero padding equals -inf padding after a ReLU (v1's stem ends in one).
    same_pad = pad is not None and pad[0] == want.padding and (
        pad[1] == want.pad_value or (pad[1] == 0.0 and want.pad_value == -math.inf and plan.stem.units[-1].relu))
    if (tuple(cfg["pool_size"]), tuple(cfg["strides"])) != ((want.kernel_size,) * 2, (want.stride,) * 2) \
            or not same_pad:
        faults.append(f"pool1_pool is {cfg['pool_size']}/{cfg['strides']} padded {pad}, expected a "
                      f"{want.kernel_size}x{want.kernel_size} stride-{want.stride} max pool padded by "
                      f"{want.padding} with {want.pad_value}")
    for b in plan.blocks:
        if b.shortcut is None:
            continue
        where = table_for(plan.spec).peer_module(b.shortcut.conv.name)
        source: Any = producer(layers[where].input) if where in layers else None
        have = None
        if type(source).__name__ == "AveragePooling2D":
            p = source.get_config()
            have = (tuple(p["pool_size"]), tuple(p["strides"]), p["padding"])
        # ceil_mode without counting the padding, 2x2 at stride 2, is exactly Keras's 'same'; the plan's
        # "same" mode (zero padding counted in the mean) only comes with dilation, which keras-hub never uses.
        pool = cast("AvgPool | None", b.shortcut_pool)  # vd: an average pool
        want_pool = None if pool is None else ((pool.kernel_size,) * 2, (pool.stride,) * 2,
                                               "same" if pool.mode == "ceil" else f"PyTorch {pool.mode!r}")
        if have != want_pool:
            faults.append(f"the shortcut pool before {where} is {have}, expected {want_pool}")
    if plan.head.fc is not None:
        dense, fc = classifier.output_dense, plan.head.fc
        if tuple(dense.kernel.shape) != (fc.in_features, fc.out_features) or not dense.use_bias:
            faults.append(f"predictions has kernel {tuple(dense.kernel.shape)}, bias={dense.use_bias}")
    return faults


def _fallback_name(spec: ResNetSpec) -> str:
    """keras-hub's preset naming (resnet_50, resnet_v2_50, resnet_vd_50) for specs that are no preset."""
    kind = "_v2" if spec.preact else "_vd" if spec.downsample == "avg" else ""
    return f"keras_hub_resnet{kind}_{spec.depth}"


def from_model(model: Any) -> tuple[ResNetSpec, dict[str, np.ndarray]]:
    backbone, classifier = _parts(model)
    problems = _config_refusals(backbone, classifier)
    if problems:
        raise unsupported(PEER, problems)
    layers = {layer.name: layer for layer in backbone.layers}
    stem, stem_width = cast("tuple[str, int]", _stem(backbone.input_conv_filters, backbone.input_conv_kernel_sizes))
    bn = next(layer for layer in backbone.layers if type(layer).__name__ == "BatchNormalization")
    top = classifier is not None
    try:
        spec = ResNetSpec(
            block="bottleneck" if backbone.block_type.startswith("bottleneck") else "basic",
            layers=tuple(backbone.stackwise_num_blocks), num_classes=classifier.num_classes if top else 0,
            include_top=top, pooling=None, in_channels=int(layers["conv1_conv"].kernel.shape[2]),
            stem_width=stem_width, base_planes=backbone.stackwise_num_filters[0], bn_eps=float(bn.epsilon),
            bn_momentum=keras_to_torch_momentum(bn.momentum), stem=stem,
            downsample="avg" if backbone.block_type.endswith("_vd") else "conv", preact=backbone.use_pre_activation,
            project_first=backbone.block_type == "basic_block_vd",
            drop_rate=float(classifier.output_dropout.rate) if top else 0.0,  # the classifier's dropout
        )
    except SpecError as exc:
        raise unsupported(PEER, [str(exc)]) from None
    problems = _projection_faults(make_plan(spec), backbone.block_type)
    if problems:
        raise unsupported(PEER, problems)
    spec = match_output_stride(spec, lambda plan: _check_structure(plan, backbone, classifier), PEER)
    spec = named(spec, _fallback_name(spec))
    return spec, table_for(spec).to_canonical(make_plan(spec), tensors(model), PEER)


def _block_type(spec: ResNetSpec) -> str:
    return f"{spec.block}_block{'_vd' if spec.downsample == 'avg' else ''}"


def _export_refusals(spec: ResNetSpec, plan: Plan, options: Mapping[str, Any]) -> list[str]:
    fixed = dict(groups=1, width_per_group=64, base_planes=64, bn_eps=HUB_BN_EPS, bn_momentum=HUB_BN_MOMENTUM,
                 conv_bias=False, stride_in_1x1=False, attention=None, output_stride=32, stem_pool=True,
                 stride_block="first", stem_pool_padding="-inf")
    problems = [f"{k}={getattr(spec, k)!r} (keras-hub's ResNet has {k}={v!r})" for k, v in fixed.items()
                if getattr(spec, k) != v]
    if spec.preact and spec.downsample == "avg":
        problems.append("preact=True with downsample='avg' (keras-hub's pre-activated _vd shortcut has no "
                        "average pool)")
    if spec.project_first != (_block_type(spec) == "basic_block_vd"):
        problems.append(f"project_first={spec.project_first} with {_block_type(spec)} (keras-hub projects the "
                        "first block's shortcut exactly in basic_block_vd)")
    if not spec.include_top:
        if spec.pooling is not None:
            problems.append(f"pooling={spec.pooling!r} (a ResNetBackbone returns the feature map)")
        if options:
            problems.append(f"options {sorted(options)} (they go to ResNetImageClassifier: include_top=False "
                            "builds a bare ResNetBackbone)")
    if not problems:  # the projection rule is only meaningful for an otherwise buildable spec
        problems += _projection_faults(plan, _block_type(spec))
    return problems


def to_model(spec: ResNetSpec, weights: Mapping[str, Any], image_shape: tuple | None = None,
             info: WeightsInfo | None = None, **options: Any) -> Any:
    """A keras-hub ResNetBackbone (ResNetImageClassifier with a top) on the current Keras engine, holding ``weights``.

    ``image_shape`` goes to the backbone ((None, None, C) by default); ``options`` to the classifier
    (``activation``, ``dropout``...), whose image converter carries ``info``'s normalisation ("caffe", BGR,
    is refused: an ImageConverter cannot reverse channels).
    """
    plan = make_plan(spec)
    info = info or WeightsInfo()
    problems = _export_refusals(spec, plan, options)
    if info.preprocessing == "caffe" and spec.include_top:
        problems.append("preprocessing='caffe' (an ImageConverter scales and offsets; it cannot reverse channels)")
    if spec.drop_rate and options.get("dropout", spec.drop_rate) != spec.drop_rate:
        problems.append(f"dropout={options['dropout']!r} with drop_rate={spec.drop_rate!r} (the classifier's "
                        "dropout is the spec's drop_rate)")
    refuse_export(spec, PEER, problems, drop_rates=("drop_rate",))  # ImageClassifier's dropout; no drop path
    import keras_hub

    stages = range(1, plan.num_stages + 1)
    model = backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[u.conv.out_channels for u in plan.stem.units],
        input_conv_kernel_sizes=[u.conv.kernel_size for u in plan.stem.units],
        stackwise_num_filters=[planes_of(w, spec.block) for w in plan.stage_widths],
        stackwise_num_blocks=list(spec.layers),
        stackwise_num_strides=[plan.stage_blocks(s)[0].stride for s in stages],
        block_type=_block_type(spec), use_pre_activation=spec.preact,
        image_shape=image_shape or (None, None, spec.in_channels), data_format="channels_last",
    )
    if spec.include_top:
        # No converter for "torch" on other than 3 channels: importing one without a converter says "torch".
        affine, preprocessor = _affine(info, spec.in_channels), None
        if affine is not None:
            converter = keras_hub.layers.ResNetImageConverter(scale=affine[0].tolist(), offset=affine[1].tolist())
            preprocessor = keras_hub.models.ResNetImageClassifierPreprocessor(image_converter=converter)
        if spec.drop_rate:
            options = {**options, "dropout": spec.drop_rate}
        model = keras_hub.models.ResNetImageClassifier(backbone=backbone, num_classes=spec.num_classes,
                                                       preprocessor=preprocessor, **options)
    values = table_for(spec).to_peer(plan, weights)
    variables = {f"{layer.name}/{v.name}": v for layer in _layers(model) for v in layer.weights}
    if set(values) != set(variables):
        raise unsupported(PEER, [f"exported tensors do not fit the model: {sorted(set(values) ^ set(variables))[:10]}"])
    for name, value in values.items():
        variables[name].assign(value.astype(variables[name].dtype))
    check_round_trip(spec, from_model(model)[0], PEER)
    return model
