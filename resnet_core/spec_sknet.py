"""SKNet's rules shared by the spec's checks and the plan: the paths a selective-kernel conv runs, its
attention width, and what a spec with selective-kernel blocks must satisfy to build (framework-free)."""

from __future__ import annotations

import dataclasses
from typing import Any

from .spec_parts import SKBasic, SKBottleneck, SpecError, expected
from .widths import LAYOUT, make_divisible, stem_widths

# The spec arrives as Any: spec.py imports this module (its checks and normalisation), so importing ResNetSpec
# back, even for typing, would make an import cycle.
ResNetSpec = Any


def selective_kernel_paths(block: SKBasic | SKBottleneck, dilation: int) -> list[tuple[int, int]]:
    """(kernel size, dilation) of each path, as timm's SelectiveKernel builds them: with ``keep_3x3`` every
    path is a 3x3 dilated to its kernel's reach (5 -> dilation 2), times the block's own ``dilation``."""
    if block.keep_3x3:
        return [(3, dilation * (k - 1) // 2) for k in block.kernel_sizes]
    return [(k, dilation) for k in block.kernel_sizes]


def sk_attn_width(channels: int, rd_ratio: float, rd_divisor: int) -> int:
    """timm's make_divisible(channels * rd_ratio, rd_divisor) with its round_limit 0.9 (the SK attention's
    reduced width; at least ``rd_divisor``)."""
    return make_divisible(channels * rd_ratio, rd_divisor, round_limit=0.9)


def check_selective_kernel(spec: ResNetSpec) -> None:
    """Refuse, naming the field, a spec with selective-kernel blocks that timm's SKNet cannot build (so a spec
    that validates builds on every framework)."""
    kinds = spec.stage_blocks
    if not any(isinstance(b, (SKBasic, SKBottleneck)) for b in kinds):
        return
    why = "with selective-kernel blocks (timm's SKNet"
    simple: list[tuple[str, Any, Any, str]] = [
        ("preact", spec.preact, False, "False " + why + " is post-activation)"),
        ("norm", spec.norm, "batch", "'batch' " + why + " attention norm is a BatchNorm2d)"),
        ("anti_alias", spec.anti_alias, None, "None " + why + " blocks take no aa_layer here)"),
        ("std_conv", spec.std_conv, False, "False " + why + " convs are plain Conv2d)"),
        ("conv_bias", spec.conv_bias, False, "False " + why + " convs have no bias)"),
    ]
    for field, value, allowed, what in simple:
        if value != allowed:
            raise expected(field, what, value)
    cin = stem_widths(spec.stem, spec.stem_width)[-1]
    blocks = [b for b, depth in zip(kinds, spec.layers, strict=True) for _ in range(depth)]
    for n, (block, widths) in enumerate(zip(blocks, spec.main_widths(), strict=True)):
        if isinstance(block, (SKBasic, SKBottleneck)):
            sk_in, sk_out = (cin, widths[0]) if LAYOUT[block.kind] == "basic" else (widths[0], widths[1])
            paths = len(block.kernel_sizes)
            share = sk_in // paths if block.split_input else sk_in
            groups = min(sk_out, getattr(block, "groups", 1))
            if block.split_input and sk_in % paths:
                raise SpecError(f"Invalid ResNetSpec.block_spec: block {n + 1}'s selective-kernel conv splits "
                                f"{sk_in} input channels over {paths} paths (split_input=True needs a multiple)")
            if share % groups or sk_out % groups:
                raise SpecError(f"Invalid ResNetSpec.block_spec: block {n + 1}'s selective-kernel paths take "
                                f"{share} channels to {sk_out} in groups={groups}, which must divide both")
        cin = widths[-1]


# Reduction ratios and divisors tried when reading attention widths off a model or a file, after the preferred
# pairs (an architecture's preset's, timm's default 1/16 and 8): the first pair giving every width is taken
# (pairs giving the same widths build the same network; a narrow model's widths may fit several).
_RATIOS = (1 / 16, 1 / 8, 1 / 4, 1 / 32, 1 / 2, 1.0)
_DIVISORS = (8, 16, 32, 4, 2, 1, 64)


def rd_fitting(widths: list[tuple[int, int]],
               preferred: tuple[tuple[float, int], ...] = ()) -> tuple[float, int] | None:
    """The (rd_ratio, rd_divisor) giving each (channels, attention width) pair, or None if none does."""
    candidates = [*preferred, (1 / 16, 8), *((r, d) for d in _DIVISORS for r in _RATIOS)]
    return next(((r, d) for r, d in candidates if all(sk_attn_width(c, r, d) == w for c, w in widths)), None)


def canonical_sk_blocks(spec: ResNetSpec) -> Any:
    """``spec.block_spec`` with each selective-kernel sub-spec's (rd_ratio, rd_divisor) the first pair of
    :func:`rd_fitting`'s order giving the same attention widths in this network (None: already so), so one
    network has one spec (a narrow network's widths fit several pairs)."""
    blocks = spec.block_spec if isinstance(spec.block_spec, tuple) else (spec.block_spec,)
    if not any(isinstance(b, (SKBasic, SKBottleneck)) for b in blocks):
        return None
    per_block = [b for b, depth in zip(spec.stage_blocks, spec.layers, strict=True) for _ in range(depth)]
    changed = []
    for b in blocks:
        if isinstance(b, (SKBasic, SKBottleneck)):
            channels = [w[0] if LAYOUT[b.kind] == "basic" else w[1]
                        for blk, w in zip(per_block, spec.main_widths(), strict=True) if blk == b]
            pair = rd_fitting([(c, sk_attn_width(c, b.rd_ratio, b.rd_divisor)) for c in channels])
            if pair is not None and pair != (b.rd_ratio, b.rd_divisor):
                b = dataclasses.replace(b, rd_ratio=pair[0], rd_divisor=pair[1])
        changed.append(b)
    if changed == list(blocks):
        return None
    return tuple(changed) if isinstance(spec.block_spec, tuple) else changed[0]
