"""The rules of the ResNeSt and Res2Net block types that the spec checks when it is made (SKNet's are in
:mod:`resnet_core.spec_sknet`), so a spec that validates builds on both frameworks: timm's blocks are
post-activation, without anti-aliasing or reduce_first, and their split convs' groups divide their widths."""

from __future__ import annotations

import itertools
from typing import Any

from .spec_parts import Res2Net, ResNeSt, SpecError, expected
from .widths import resnest_attn_width

_GROUPED_NORMS = ("group", "evo_s0")


def check_split_blocks(spec: Any) -> None:
    """Refuse, naming the field, what ResNeSt and Res2Net blocks cannot be."""
    own = [b for b in spec.stage_blocks if isinstance(b, (ResNeSt, Res2Net))]
    if not own:
        return
    kind = "ResNeSt blocks (timm's ResNestBottleneck)" if isinstance(own[0], ResNeSt) else \
        "Res2Net blocks (timm's Bottle2neck)"
    for name, value, ok in (("preact", spec.preact, not spec.preact),
                            ("anti_alias", spec.anti_alias, spec.anti_alias is None),
                            ("reduce_first", spec.reduce_first, spec.reduce_first == 1)):
        if not ok:
            raise SpecError(f"Invalid ResNetSpec.{name}: {kind} take no {name}={value!r}; they are "
                            "post-activation, without anti-aliasing and with reduce_first=1")
    ends = list(itertools.accumulate(spec.layers))
    widths = spec.main_widths()
    grouped = spec.norm in _GROUPED_NORMS
    for s, (block, end, depth) in enumerate(zip(spec.stage_blocks, ends, spec.layers, strict=True)):
        if not isinstance(block, (ResNeSt, Res2Net)):
            continue
        first, width, _ = widths[end - 1]
        if isinstance(block, Res2Net) and any(w[0] != w[1] for w in widths[end - depth:end]):
            raise expected("block_widths", "a Res2Net block's 1x1 as wide as its 3x3 splits together (conv1 = "
                           f"conv2 in every block of stage {s + 1})", spec.block_widths)
        if isinstance(block, ResNeSt):
            splits = block.groups * block.radix
            normed = (width * block.radix, resnest_attn_width(width, block)) if grouped else ()
            if first % splits or width % block.groups or any(c % spec.norm_groups for c in normed):
                raise SpecError(
                    f"Invalid ResNetSpec: stage {s + 1}'s split attention takes {first} channels in groups * radix "
                    f"= {splits} groups and gives {width} per split in {block.groups} groups"
                    + (f", normalised in {spec.norm_groups} groups ({normed})" if grouped else "")
                    + ": each must divide its width (choose base_planes or width_per_group to fit)")
        elif isinstance(block, Res2Net):
            split = width // block.scale
            if width % block.scale or split % block.groups or (grouped and split % spec.norm_groups):
                raise SpecError(
                    f"Invalid ResNetSpec: stage {s + 1}'s Res2Net width {width} must split into scale={block.scale} "
                    f"parts that groups={block.groups}" + (f" and norm_groups={spec.norm_groups}" if grouped else "")
                    + " divide (choose base_planes or width_per_group to fit)")
