"""timm's training regularisers <-> the spec's ``drop_rate`` and ``drop_path_rate``, for both timm classes.

timm stores the classifier dropout as ``model.drop_rate`` (ResNetV2 also as ``head.drop``) and stochastic
depth as one ``DropPath`` per block (``drop_path``: None or Identity where the block's rate is 0), each with
its ``drop_prob``. Reading them back finds the one ``drop_path_rate`` whose schedule gives every block's
rate: timm's ResNet rule for ResNet (the plan's, :func:`resnet_core.drop_rates.drop_path_schedule`), and
ResNetV2's own (the same line computed by ``torch.linspace`` in float32) for ResNetV2. Per-block rates no
rate gives, ``scale_by_keep=False`` and ``drop_block_rate`` have no spec field and are refused by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..drop_rates import Schedule, drop_path_schedule, rate_of_schedule


def resnetv2_schedule(layers: Sequence[int]) -> Schedule:
    """ResNetV2's per-block rates for stage depths ``layers`` (timm's calculate_drop_path_rates, stagewise)."""
    from timm.layers import calculate_drop_path_rates

    def schedule(rate: float, _: int) -> list[float]:
        return [r for stage in calculate_drop_path_rates(rate, list(layers), stagewise=True) for r in stage]

    return schedule


def drop_fields(model: Any, blocks: Sequence[Any], schedule: Schedule = drop_path_schedule,
                float32: bool = False) -> tuple[dict[str, float], list[str]]:
    """The spec's ``drop_rate`` and ``drop_path_rate`` of a timm model, and what the spec cannot say."""
    problems: list[str] = []
    rates: list[float] = []
    for i, block in enumerate(blocks):
        drop: Any = getattr(block, "drop_path", None)
        if type(drop).__name__ == "DropPath":
            if not drop.scale_by_keep:
                problems.append(f"block {i}'s DropPath has scale_by_keep=False (the spec's stochastic depth "
                                "scales the kept samples by 1 / (1 - rate), as timm's default)")
            rates.append(float(drop.drop_prob))
        else:
            rates.append(0.0)
        dropblock = [m for m in block.modules() if type(m).__name__ == "DropBlock2d" and m.drop_prob > 0]
        if dropblock and not any("drop_block_rate" in p for p in problems):
            problems.append(f"drop_block_rate={dropblock[0].drop_prob} (DropBlock has no ResNetSpec option; "
                            "build the model without it)")
    path_rate = rate_of_schedule(rates, schedule, float32)
    if path_rate is None:
        problems.append(f"per-block drop_path rates {[round(r, 6) for r in rates]} follow no linear rule from 0 "
                        "(ResNetSpec.drop_path_rate gives timm's drop_path_rate schedule)")
    head_drop: Any = getattr(getattr(model, "head", None), "drop", None)
    rate = float(head_drop.p) if type(head_drop).__name__ == "Dropout" else float(getattr(model, "drop_rate", 0.0))
    return {"drop_rate": rate, "drop_path_rate": path_rate or 0.0}, problems
