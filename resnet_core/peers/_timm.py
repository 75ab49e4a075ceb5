"""What timm's two ResNet families (timm_peer's ResNet, timm_resnetv2's ResNetV2) share.

Kept apart so that timm_peer can dispatch to timm_resnetv2 without the two importing each other.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..plan import AvgPool
from ..preprocess import NORMALISATIONS
from ._common import unsupported

PEER = "timm"

# pretrained_cfg mean/std <-> ResNetSpec.preprocessing ("caffe" is BGR on [0, 255]: timm cannot say it).
NORMALISATION = {mode: n.on_unit_range() for mode, n in NORMALISATIONS.items() if not n.bgr}


def preprocessing_of(model: Any) -> str:
    """The preprocessing a timm model's ``pretrained_cfg`` mean/std describe ("torch" when it says none)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if "mean" not in cfg:
        return "torch"
    mean, std = tuple(float(v) for v in cfg["mean"]), tuple(float(v) for v in cfg.get("std", ()))
    for mode, (m, s) in NORMALISATION.items():
        if np.allclose(mean, m) and np.allclose(std, s):
            return mode
    raise unsupported(PEER, [f"pretrained_cfg mean={mean}, std={std} is none of ResNetSpec.preprocessing's "
                             f"normalisations {dict(NORMALISATION)}"])


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
