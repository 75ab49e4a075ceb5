"""timm's Res2Net (``timm.models.res2net``: ResNet with Bottle2neck blocks) <-> the ``Res2Net`` block sub-spec.

The timm peer reads and builds the rest of the network as for any timm ResNet; this module reads what the
Bottle2neck blocks carry (cardinality, base width, scale), checks their average pools against the plan, and
gives timm's constructor arguments back for an export.
"""

from __future__ import annotations

from typing import Any, cast

from ..plan import Plan, Res2NetScales
from ..spec import Res2Net, ResNetSpec
from ..widths import EXPANSION, stage_planes, width_per_group_fitting

BLOCK = "Bottle2neck"


def is_res2net(stages: list[Any]) -> bool:
    """Whether any block of the model's ``stages`` is timm's Bottle2neck."""
    return any(type(b).__name__ == BLOCK for stage in stages for b in stage)


def relus(stages: list[Any]) -> list[str]:
    """Bottle2neck's one activation module (used after bn1, each bns.K and the add)."""
    return [f"layer{s}.{i}.relu" for s, stage in enumerate(stages, 1) for i in range(len(stage))]


def spec_fields(stages: list[Any]) -> tuple[dict[str, Any], list[str]]:
    """The spec fields of a Res2Net's stages (block sub-spec and widths), and what the spec cannot say."""
    blocks = [b for stage in stages for b in stage]
    kinds = sorted({type(b).__name__ for b in blocks} - {BLOCK})
    if kinds:
        return {}, [f"blocks {kinds} next to Bottle2neck (a Res2Net spec has Bottle2neck blocks in every stage)"]
    scales = {b.scale for b in blocks}
    groups = {b.convs[0].groups for b in blocks}
    if len(scales) > 1 or len(groups) > 1:
        return {}, [f"Bottle2neck scales {sorted(scales)} / cardinalities {sorted(groups)} differ between blocks "
                    "(the Res2Net sub-spec has one of each)"]
    scale, cardinality = scales.pop(), groups.pop()
    planes = tuple(stage[0].conv3.out_channels // EXPANSION["res2net"] for stage in stages)
    per_group = width_per_group_fitting([(p, stage[0].width) for p, stage in zip(planes, stages, strict=True)],
                                        cardinality)
    if per_group is None:
        return {}, [f"Bottle2neck widths {[s[0].width for s in stages]} follow no base_width (timm's rule)"]
    fields = {"block_spec": Res2Net(groups=cardinality, width_per_group=per_group, scale=scale),
              "groups": cardinality, "base_planes": planes[0],
              "planes": None if planes == stage_planes(planes[0], len(planes)) else planes}
    return fields, []


def check_pools(plan: Plan, modules: dict[str, Any]) -> list[str]:
    """Each Bottle2neck's ``pool`` against the plan: AvgPool2d(3, stride, padding=1) in a first block, else None."""
    from torch import nn

    faults = []
    for block in plan.blocks:
        for unit in block.main:
            if not isinstance(unit, Res2NetScales) or unit.scale == 1:  # scale 1: timm's pool (if any) is unused
                continue
            where, pool = f"{block.name}.pool", unit.pool
            m: Any = modules.get(where)
            if pool is None:
                ok = m is None
            else:
                pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
                ok = type(m) is nn.AvgPool2d and pair(m.kernel_size) == (3, 3) and \
                    pair(m.stride) == (pool.stride,) * 2 and pair(m.padding) == (1, 1) and not m.ceil_mode and \
                    m.count_include_pad and m.divisor_override is None
            if not ok:
                want = "None" if pool is None else f"AvgPool2d(3, stride={pool.stride}, padding=1)"
                faults.append(f"{where} is {m!r}, expected {want}")
    return faults


def model_args(spec: ResNetSpec) -> tuple[list[str], dict[str, Any]]:
    """What timm's ResNet cannot build of a Res2Net spec, and its block_args (Bottle2neck's ``scale``)."""
    blocks = spec.stage_blocks
    problems = []
    if any(not isinstance(b, Res2Net) for b in blocks):
        problems.append(f"block types {spec.stage_block_types} (timm's Res2Net has Bottle2neck in every stage)")
        return problems, {}
    if len(set(blocks)) > 1:
        problems.append("Res2Net sub-specs differing per stage (timm passes one scale, cardinality and base width)")
    if spec.reduce_first != 1:
        problems.append(f"reduce_first={spec.reduce_first} (Bottle2neck ignores block_reduce_first)")
    return problems, {"scale": cast(Res2Net, blocks[0]).scale}
