"""timm's ResNeSt blocks (``timm.models.resnest.ResNestBottleneck`` with ``timm.layers.SplitAttn``) inside its
ResNet class: what :mod:`timm_peer` reads and checks of them, and the block arguments it builds them with.

Everything here is by class name and attribute, so nothing of timm is imported until a model is exported.
"""

from __future__ import annotations

from typing import Any

from ..plan import AvgPool, ConvNorm, Plan, SplitAttention
from ..spec import ResNetSpec
from ..spec_parts import ResNeSt

BLOCK_CLASS = "ResNestBottleneck"
DEFAULTS = ResNeSt()  # timm's ResNestBottleneck passes no rd_ratio / rd_divisor: SplitAttn's defaults


def is_resnest(block: Any) -> bool:
    return type(block).__name__ == BLOCK_CLASS


def main_widths(block: Any) -> tuple[int, int, int]:
    """conv1's, each split's (the split attention's output) and conv3's widths."""
    return block.conv1.out_channels, block.conv2.conv.out_channels // block.conv2.radix, block.conv3.out_channels


def groups(block: Any) -> int:
    """timm's cardinality: the attention's 1x1 convs are grouped by it (the 3x3 by cardinality * radix)."""
    return int(block.conv2.fc1.groups)


def relus(prefix: str) -> list[str]:
    """The block's activations that must be ReLUs (act2 is an Identity in a ResNeSt block)."""
    return [f"{prefix}.act1", f"{prefix}.conv2.act0", f"{prefix}.conv2.act1", f"{prefix}.act3"]


def block_spec(blocks: list[Any]) -> ResNeSt | None:
    """The ResNeSt sub-spec of the model's ResNeSt blocks (None: there are none); its width fields come from
    the widths, and the plan check compares every block with it."""
    found = [b for b in blocks if is_resnest(b)]
    if not found:
        return None
    pooled = [b for b in found if b.avd_first is not None or b.avd_last is not None]
    return ResNeSt(groups=groups(found[0]), radix=int(found[0].radix), avd=bool(pooled),
                   avd_first=bool(pooled) and pooled[0].avd_first is not None)


def _pool_text(pool: AvgPool | None) -> str:
    return "None" if pool is None else f"AvgPool2d({pool.kernel_size}, stride={pool.stride}, padding={pool.padding})"


def _pool_matches(module: Any, pool: AvgPool | None, nn: Any) -> bool:
    if pool is None:
        return module is None
    pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    return type(module) is nn.AvgPool2d and pair(module.kernel_size) == (pool.kernel_size,) * 2 and \
        pair(module.stride) == (pool.stride,) * 2 and pair(module.padding) == (pool.padding,) * 2 and \
        not module.ceil_mode and module.count_include_pad


def check(plan: Plan, model: Any) -> list[str]:
    """The parts of the plan's split attentions that own no tensors: avd pools, radix, the gate's layout."""
    from torch import nn

    faults = []
    for block in plan.blocks:
        split = next((u for u in block.main if isinstance(u, SplitAttention)), None)
        module = model.get_submodule(block.name)
        if split is None:
            if is_resnest(module):
                faults.append(f"{block.name} is a ResNestBottleneck where the plan has another block type")
            continue
        if not is_resnest(module):
            faults.append(f"{block.name} is {type(module).__name__}, expected ResNestBottleneck")
            continue
        unit = block.main[0]
        first = unit.pool if isinstance(unit, ConvNorm) and isinstance(unit.pool, AvgPool) else None
        for where, want in (("avd_first", first), ("avd_last", split.pool)):
            got = getattr(module, where)
            if not _pool_matches(got, want, nn):
                faults.append(f"{block.name}.{where} is {got!r}, expected {_pool_text(want)}")
        attn = module.conv2
        soft = attn.rsoftmax
        if (attn.radix, soft.radix, soft.cardinality) != (split.radix, split.radix, split.groups):
            faults.append(f"{block.name}.conv2 has radix {attn.radix} (gate radix {soft.radix}, cardinality "
                          f"{soft.cardinality}), expected radix {split.radix}, cardinality {split.groups}")
        if type(attn.bn0) is nn.Identity or type(attn.bn1) is nn.Identity:
            faults.append(f"{block.name}.conv2 has no norm (SplitAttn norm_layer=None): ResNeSt blocks are normed")
        for name in ("bn2", "act2"):
            if type(getattr(module, name)) is not nn.Identity:
                faults.append(f"{block.name}.{name} is {getattr(module, name)!r}, expected Identity (radix >= 1)")
    return faults


def export_problems(spec: ResNetSpec) -> list[str]:
    """What timm's ResNet cannot build of a spec's ResNeSt stages (one set of block arguments for all stages)."""
    kinds = set(spec.stage_block_types)
    if "resnest" not in kinds:
        return []
    problems = []
    subs = {b for b in spec.stage_blocks if isinstance(b, ResNeSt)}
    if len(kinds) > 1:
        problems.append(f"ResNeSt blocks mixed with {sorted(kinds - {'resnest'})} (timm's ResNet passes one set of "
                        "block arguments to every stage)")
    if len(subs) > 1:
        problems.append("ResNeSt parameters differing between stages (timm passes one radix / avd to all)")
    for sub in subs:
        if (sub.rd_ratio, sub.rd_divisor) != (DEFAULTS.rd_ratio, DEFAULTS.rd_divisor):
            problems.append(f"rd_ratio={sub.rd_ratio!r}, rd_divisor={sub.rd_divisor!r} (timm's ResNestBottleneck "
                            f"builds SplitAttn's defaults {DEFAULTS.rd_ratio} and {DEFAULTS.rd_divisor})")
    if spec.attention is not None:
        problems.append(f"attention={spec.attention!r} with ResNeSt blocks (timm's ResNestBottleneck takes no "
                        "attn_layer)")
    return problems


def block_args(spec: ResNetSpec) -> dict[str, Any]:
    """ResNestBottleneck's arguments for timm's ResNet(block_args=...)."""
    sub = next(b for b in spec.stage_blocks if isinstance(b, ResNeSt))
    return {"radix": sub.radix, "avd": sub.avd, "avd_first": sub.avd_first}
