"""What timm's two ResNet families (timm_peer's ResNet, timm_resnetv2's ResNetV2) share.

Kept apart so that timm_peer can dispatch to timm_resnetv2 without the two importing each other.
"""

from __future__ import annotations

from typing import Any

from ..plan import AvgPool
from ..spec import ResNetSpec
from ..weights_info import WeightsInfo, WeightsInfoError, from_timm_cfg, to_timm_cfg
from ._common import refuse_export

PEER = "timm"

def info_of(model: Any) -> WeightsInfo:
    """The trained-with record in a timm model's ``pretrained_cfg`` (ResNet and ResNetV2 alike)."""
    return from_timm_cfg(getattr(model, "pretrained_cfg", None) or {})


def pretrained_cfg(spec: ResNetSpec, info: WeightsInfo | None) -> dict[str, Any]:
    """The ``pretrained_cfg`` a timm model built by to_model carries for ``info`` ("caffe" is refused)."""
    try:
        # input_size: timm's default for its ResNets when the record has none (timm's savers need one)
        return {"architecture": spec.name, "num_classes": spec.num_classes if spec.include_top else 0,
                "input_size": (spec.in_channels, 224, 224), **to_timm_cfg(info or WeightsInfo())}
    except WeightsInfoError as exc:
        refuse_export(spec, PEER, [str(exc)])
        raise  # pragma: no cover - refuse_export raised


def pool_text(pool: AvgPool | None) -> str:
    return "Identity" if pool is None else f"{pool.mode} average pool, stride {pool.stride}"


def pool_matches(module: Any, pool: AvgPool | None, nn: Any) -> bool:
    """Whether a timm shortcut pool module is the plan's ``shortcut_pool`` (None: an Identity)."""
    kind = type(module).__name__
    if pool is None:
        return kind == "Identity"
    size = module.kernel_size if isinstance(module.kernel_size, tuple) else (module.kernel_size,) * 2
    stride = module.stride if isinstance(module.stride, tuple) else (module.stride,) * 2
    if size != (2, 2) or stride != (pool.stride,) * 2 or getattr(module, "padding", 0) not in (0, (0, 0)):
        return False
    if pool.mode == "same":
        return kind == "AvgPool2dSame"  # pads explicitly with zeros, counted in the mean
    return type(module) is nn.AvgPool2d and module.ceil_mode and not module.count_include_pad
