"""Computed channel widths: each rule written once, used by the plan to build and by the spec to validate.

Framework-free and free of imports from the rest of the package, so :mod:`resnet_core.spec` can
refuse a spec whose computed width would be zero without importing the plan (which imports the spec).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

# A block's output channels over its base width (planes), by block type: torchvision's ``expansion``.
# Each block type's width layout: a basic block's two 3x3 widths, or a bottleneck's three (1x1, 3x3, 1x1); the
# width rule, the checks and the importers read layouts, so a new block type reuses its layout's rule.
LAYOUT = {"basic": "basic", "bottleneck": "bottleneck", "resnest": "bottleneck", "res2net": "bottleneck",
          "sk_basic": "basic", "sk_bottleneck": "bottleneck"}
EXPANSION = {kind: {"basic": 1, "bottleneck": 4}[layout] for kind, layout in LAYOUT.items()}


def stage_planes(base_planes: int, num_stages: int) -> tuple[int, ...]:
    """Each stage's base width (planes), doubled per stage; a block's output is ``EXPANSION[block]`` times it."""
    return tuple(base_planes * 2**s for s in range(num_stages))


def planes_of(out_channels: int, block: str) -> int:
    """The inverse of ``planes * EXPANSION[block]``, for importers reading a block's output width."""
    return out_channels // EXPANSION[block]


def bottleneck_width(planes: int, width_per_group: int, groups: int) -> int:
    """Channels of a bottleneck's 3x3 conv (torchvision's rule)."""
    return int(planes * (width_per_group / 64.0)) * groups


def main_widths(block: str, planes: int, width_per_group: int, groups: int, reduce_first: int,
                scale: int = 1) -> tuple[int, ...]:
    """Output widths of a block's main-path convs by the width rule; the last is the block's output.
    ``scale``: Res2Net's splits, each as wide as a bottleneck's 3x3 (its 1x1 and its 3x3 cascade are ``scale``
    times wider)."""
    if LAYOUT[block] == "basic":
        return (planes // reduce_first, planes)
    width = bottleneck_width(planes, width_per_group, groups) * scale
    return (width // reduce_first, width, planes * EXPANSION[block])


def width_fields(stages: Sequence[tuple[str, Sequence[tuple[int, ...]]]], groups: int) -> dict[str, Any] | None:
    """The width rule's spec fields giving every block's main-conv widths (the inverse of :func:`main_widths`),
    read off all stages; None when no rule fields give them (a channel-pruned network).

    ``stages``: per stage, its block type and each block's widths.
    """
    types = tuple(block for block, _ in stages)
    planes = tuple(max(1, planes_of(blocks[0][-1], block)) for block, blocks in stages)
    bottlenecks = [(p, blocks[0][1]) for (block, blocks), p in zip(stages, planes, strict=True)
                   if LAYOUT[block] != "basic"]
    per_group = width_per_group_fitting(bottlenecks, groups) if bottlenecks else 64
    if any(LAYOUT[t] == "basic" for t in types):  # basic blocks take no width_per_group or groups: only defaults
        per_group = 64 if groups == 1 else None
    first = stages[0][1][0]
    reduce_first = max(1, first[-2 if LAYOUT[types[0]] == "bottleneck" else -1] // max(1, first[0]))
    if per_group is None or not all(  # the rule gives every width, reduce_first dividing exactly (as the spec asks)
            main_widths(block, p, per_group, groups, reduce_first) == tuple(widths)
            and widths[-2 if LAYOUT[block] == "bottleneck" else -1] % reduce_first == 0
            for (block, blocks), p in zip(stages, planes, strict=True) for widths in blocks):
        return None
    return {"block": types[0], "block_types": types, "base_planes": planes[0], "planes": planes,
            "width_per_group": per_group, "reduce_first": reduce_first, "block_widths": None}


def explicit_width_fields(stages: Sequence[tuple[str, Sequence[tuple[int, ...]]]]) -> dict[str, Any]:
    """The spec fields stating every block's widths explicitly (``stages`` as :func:`width_fields` takes);
    the spec turns them into the rule's fields when those give the same widths, so importers pass these."""
    types = tuple(block for block, _ in stages)
    return {"block": types[0], "block_types": types,
            "block_widths": tuple(tuple(w) for _, blocks in stages for w in blocks)}


def eca_kernel_size(channels: int, gamma: float = 2, beta: float = 1) -> int:
    """ECA's kernel size for ``channels``: the odd number nearest |log2(C) + beta| / gamma, at least 3 (timm)."""
    t = int(abs(math.log(channels, 2) + beta) / gamma)
    return max(t if t % 2 else t + 1, 3)


def width_per_group_of(width: int, groups: int, planes: int) -> int:
    """The smallest ``width_per_group`` that :func:`bottleneck_width` maps to ``width``, for importers
    reading a 3x3 conv's width (the rule truncates, so several values give the same width)."""
    return -(-(width // groups) * 64 // max(1, planes))


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.0) -> int:
    """timm's rounding of reduced widths: to the nearest multiple of ``divisor``, at least ``min_value`` (default
    ``divisor``), and one divisor up where that rounded down below ``round_limit`` of the value (SE: 0, never;
    ResNeSt's and SKNet's attention: 0.9)."""
    rounded = max(divisor if min_value is None else min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < round_limit * value else rounded


def se_width(channels: int, ratio: float) -> int:
    """The squeeze-and-excitation bottleneck of a ``channels``-wide block (timm's SEModule, at least 8)."""
    return make_divisible(channels * ratio)


def stem_widths(stem: str, stem_width: int) -> tuple[int, ...]:
    """Output widths of the stem's convs: the 7x7's, or timm's three 3x3s (the deep stems' output is twice
    ``stem_width``; "deep_tiered" narrows the first conv)."""
    if stem == "7x7":
        return (stem_width,)
    first = tiered_stem_width(stem_width) if stem == "deep_tiered" else stem_width
    return (first, stem_width, 2 * stem_width)


def tiered_stem_width(stem_width: int) -> int:
    """Output of the first conv of timm's "deep_tiered" stem (``stem_width`` is its middle conv's)."""
    return 3 * (stem_width // 4)


def se_ratio_of(pairs: Iterable[tuple[int, int]]) -> float | None:
    """A ratio in (0, 1] for which :func:`se_width` gives every (channels, reduced) pair, preferring timm's
    1/16 and simple fractions; None when no ratio does (another rounding, or per-block widths)."""
    pairs = list(pairs)
    low, high = 0.0, 1.0  # make_divisible(v) is 8 for v < 12, else R for v in [R - 4, R + 4)
    for channels, reduced in pairs:
        low = max(low, 0.0 if reduced == 8 else (reduced - 4) / channels)
        high = min(high, (reduced + 4) / channels)
    candidates = [1.0 / 16, *(1.0 / k for k in range(1, 65)), (low + high) / 2]
    return next((r for r in candidates if 0 < r <= 1 and all(se_width(c, r) == d for c, d in pairs)), None)


def width_per_group_fitting(stages: Iterable[tuple[int, int]], groups: int) -> int | None:
    """The smallest ``width_per_group`` giving every stage's (planes, 3x3 conv width), or None.

    One stage does not settle it (the rule truncates): base_planes 4 and widths 1, 2, 5 need 20, not 16.
    """
    low, high = 1, None
    for planes, width in stages:
        per_group = width // groups  # bottleneck_width(planes, wpg) == width  <=>  planes*wpg/64 in [w, w+1)
        low = max(low, -(-per_group * 64 // planes))
        top = -(-(per_group + 1) * 64 // planes) - 1
        high = top if high is None else min(high, top)
    return low if high is None or low <= high else None


def resnest_attn_width(width: int, block_spec: Any) -> int:
    """timm's SplitAttn attention width for a ResNeSt sub-spec: make_divisible(width * radix * rd_ratio,
    rd_divisor, min_value=32), with timm's round_limit of 0.9 (a value rounded down by more than 10% goes up one
    divisor)."""
    return make_divisible(width * block_spec.radix * block_spec.rd_ratio, block_spec.rd_divisor, min_value=32,
                          round_limit=0.9)
