"""transformers ResNetModel / ResNetForImageClassification <-> ResNetSpec.

The config says the structure (layer_type, depths, hidden_sizes, embedding_size,
downsample_in_bottleneck); batch-norm settings are read from the modules, as the config has none.
``ResNetModel`` maps to a headless spec that average-pools (its ``pooler_output``, flattened).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..name_tables import TRANSFORMERS_TABLES, Table
from ..plan import Plan, make_plan, stage_planes
from ..spec import EXPANSION, ResNetSpec, SpecError
from ..weights_info import WeightsInfo, from_id2label
from ._common import check_round_trip, match_output_stride, named, refuse_export, unsupported

PEER = "transformers"

TABLES = TRANSFORMERS_TABLES
HF_BN_EPS, HF_BN_MOMENTUM = 1e-5, 0.1  # nn.BatchNorm2d's defaults, which transformers never changes


def _table(classifier: bool) -> Table:
    return TABLES["ResNetForImageClassification" if classifier else "ResNetModel"]


def accepts(model: object) -> bool:
    module = sys.modules.get("transformers.models.resnet.modeling_resnet")  # loaded if such a model exists
    return module is not None and isinstance(model, module.ResNetPreTrainedModel)


def _check_structure(plan: Plan, table: Table, model: Any, backbone: Any) -> list[str]:
    from . import _torch

    faults = _torch.check_plan(plan, table, model) + _torch.check_maxpool(backbone.embedder.pooler, "embedder.pooler")
    # The last unit of each block has activation=None (an Identity); every other one must be a ReLU.
    acts = [n for n, m in model.named_modules() if n.endswith("activation") and type(m).__name__ != "Identity"]
    return faults + _torch.check_relus(model, acts)


def from_model(model: Any) -> tuple[ResNetSpec, dict[str, np.ndarray]]:
    from torch import nn

    from . import _torch

    kind = type(model).__name__
    if kind not in TABLES:
        raise unsupported(PEER, [f"{kind} (import a ResNetModel or ResNetForImageClassification holding its weights)"])
    config = model.config
    problems = []
    if config.hidden_act != "relu":
        problems.append(f"hidden_act={config.hidden_act!r} (ResNetSpec uses ReLU only)")
    if config.downsample_in_first_stage:
        problems.append("downsample_in_first_stage=True (ResNetSpec's first stage never strides)")
    if config.layer_type not in ("basic", "bottleneck"):
        problems.append(f"layer_type={config.layer_type!r}")
    expansion = EXPANSION.get(config.layer_type, 1)
    base = config.hidden_sizes[0] // expansion
    doubling = [p * expansion for p in stage_planes(base, len(config.depths))]
    if list(config.hidden_sizes) != doubling:
        problems.append(f"hidden_sizes={list(config.hidden_sizes)} (ResNetSpec doubles base_planes per stage: "
                        f"{doubling})")
    classifier = kind == "ResNetForImageClassification"
    top = classifier and isinstance(model.classifier[1], nn.Linear)
    if problems:
        raise unsupported(PEER, problems)
    backbone = model.resnet if classifier else model
    bn = backbone.embedder.embedder.normalization
    try:
        spec = ResNetSpec(
            block=config.layer_type, layers=tuple(config.depths), num_classes=model.classifier[1].out_features
            if top else 0, include_top=top, pooling=None if top else "avg", in_channels=config.num_channels,
            stem_width=config.embedding_size, base_planes=base, bn_eps=bn.eps, bn_momentum=bn.momentum,
            stride_in_1x1=config.layer_type == "bottleneck" and bool(config.downsample_in_bottleneck),
        )
    except SpecError as exc:
        raise unsupported(PEER, [str(exc)]) from None
    table = _table(classifier)
    spec = match_output_stride(spec, lambda plan: _check_structure(plan, table, model, backbone), PEER)
    spec = named(spec, "resnet")
    return spec, table.to_canonical(make_plan(spec), _torch.state_numpy(model), PEER)


def info_of(model: Any) -> WeightsInfo:
    """Class names from ``config.id2label``; transformers' ResNets take ImageNet mean/std ("torch")."""
    path = getattr(model.config, "_name_or_path", "") or None
    return WeightsInfo(class_names=from_id2label(getattr(model.config, "id2label", None)),
                       source=f"hf-hub:{path}" if path and "/" in path and not path.startswith("/") else None)


def to_model(spec: ResNetSpec, weights: Mapping[str, Any], info: WeightsInfo | None = None) -> Any:
    """ResNetForImageClassification with a top, else ResNetModel (average-pooled), in eval mode; ``info``'s
    class names become ``config.id2label``."""
    import transformers

    from . import _torch

    fixed = dict(groups=1, width_per_group=64, conv_bias=False, stem="7x7", stem_pool=True, downsample="conv",
                 attention=None, output_stride=32, bn_eps=HF_BN_EPS, bn_momentum=HF_BN_MOMENTUM)
    problems = [f"{k}={getattr(spec, k)!r} (ResNetConfig can only build {k}={v!r})" for k, v in fixed.items()
                if getattr(spec, k) != v]
    if not spec.include_top and spec.pooling != "avg":
        problems.append(f"pooling={spec.pooling!r} without a top (ResNetModel average-pools)")
    refuse_export(spec, PEER, problems)
    config = transformers.ResNetConfig(
        num_channels=spec.in_channels, embedding_size=spec.stem_width, depths=list(spec.layers),
        hidden_sizes=list(make_plan(spec).stage_widths),
        layer_type=spec.block, hidden_act="relu", downsample_in_first_stage=False,
        downsample_in_bottleneck=spec.stride_in_1x1, num_labels=spec.num_classes if spec.include_top else 2,
    )
    names = info.class_names if info is not None else None
    if spec.include_top and names is not None and len(names) == spec.num_classes:
        config.id2label = dict(enumerate(names))
        config.label2id = {name: i for i, name in enumerate(names)}
    cls = transformers.ResNetForImageClassification if spec.include_top else transformers.ResNetModel
    model = cls(config)
    table = _table(spec.include_top)
    _torch.load_state(model, table.to_peer(make_plan(spec), weights), table)
    model.eval()
    check_round_trip(spec, from_model(model)[0], PEER)
    return model
