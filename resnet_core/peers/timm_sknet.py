"""timm's SKNet blocks (``timm.models.sknet``: SelectiveKernelBasic / SelectiveKernelBottleneck on its ResNet
class) for the timm peer: the block sub-spec read off a model, the checks of their norm-activation layers,
and the ``block`` / ``sk_kwargs`` arguments that rebuild them. timm_peer calls these where a block's class
matters; everything else (stem, shortcuts, head, the per-module plan check) is the ResNet peer's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from ..plan import ConvNorm, Norm, Plan, SelectiveKernelConv
from ..presets import get_spec, list_specs
from ..spec import ResNetSpec, SKBasic, SKBottleneck
from ..spec_sknet import rd_fitting
from . import _timm

CLASSES = {"SelectiveKernelBasic": "sk_basic", "SelectiveKernelBottleneck": "sk_bottleneck"}


def block_kind(block: Any) -> str | None:
    """The spec's block kind of a timm SK block (None: not one)."""
    return CLASSES.get(type(block).__name__)


def _sk_module(block: Any) -> Any:
    return block.conv1 if type(block).__name__ == "SelectiveKernelBasic" else block.conv2


def cardinality(stages: list[Any]) -> int | None:
    """The grouped paths' groups of an SK bottleneck network (None: it has none)."""
    return next((_sk_module(s[0]).paths[0].conv.groups for s in stages
                 if type(s[0]).__name__ == "SelectiveKernelBottleneck"), None)


def relu_names(model: Any) -> list[str]:
    """Every activation of the SK blocks (the block's ``act``, each path's norm's, the attention's): all must be
    ReLUs for the spec to describe them."""
    names = []
    for s in range(1, 5):
        for i, block in enumerate(getattr(model, f"layer{s}")):
            if block_kind(block) is None:
                continue
            names.append(f"layer{s}.{i}.act")
            sk = _sk_module(block)
            base = f"layer{s}.{i}.{'conv1' if block_kind(block) == 'sk_basic' else 'conv2'}"
            names += [f"{base}.paths.{k}.bn.act" for k in range(len(sk.paths))] + [f"{base}.attn.act"]
    return names


def block_fields(stages: list[Any], architecture: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """``{"block_spec": SKBasic/SKBottleneck(...)}`` for a network of SK blocks ({} for none), and what the spec
    cannot say about them (one line per problem)."""
    kinds = {block_kind(b) for stage in stages for b in stage}
    if kinds == {None}:
        return {}, []
    if len(kinds) > 1:
        return {}, [f"block classes {sorted(str(k) for k in kinds)} mixed with selective-kernel blocks (timm's "
                    "SKNet uses one block class; ResNetSpec has one SK block sub-spec per network)"]
    problems = []
    modules = [_sk_module(b) for stage in stages for b in stage]
    for sk in modules:
        if any(getattr(p, "aa", None) is not None for p in sk.paths):
            problems.append("aa_layer in selective-kernel paths (ResNetSpec's SK blocks are not anti-aliased)")
            break
    first = modules[0]  # stage 1's first block runs undilated: its paths give the kernels
    convs = [p.conv for p in first.paths]
    dilations = [c.dilation[0] for c in convs]
    if all(c.kernel_size[0] == 3 for c in convs):
        fields: dict[str, Any] = dict(kernel_sizes=tuple(2 * d + 1 for d in dilations), keep_3x3=True)
    else:
        fields = dict(kernel_sizes=tuple(c.kernel_size[0] for c in convs), keep_3x3=False)
    fields["split_input"] = bool(first.split_input)
    widths = [(sk.out_channels, sk.attn.fc_reduce.out_channels) for sk in modules]
    preset = get_spec(architecture).block_spec if architecture in list_specs() else None
    preferred = [(preset.rd_ratio, preset.rd_divisor)] if isinstance(preset, (SKBasic, SKBottleneck)) else []
    pair = rd_fitting(widths, tuple(preferred))
    if pair is None:
        problems.append(f"selective-kernel attention widths {sorted(set(widths))} (channels, attn_channels) that "
                        "no rd_ratio / rd_divisor gives (rd_channels has no ResNetSpec option)")
        pair = (SKBasic.rd_ratio, SKBasic.rd_divisor)
    fields.update(rd_ratio=pair[0], rd_divisor=pair[1])
    if kinds == {"sk_basic"}:
        return {"block_spec": SKBasic(**fields)}, problems
    return {"block_spec": SKBottleneck(**fields)}, problems


def norm_check(plan: Plan) -> Callable[[Norm, Any, str], list[str]]:
    """timm's norm check, where SK blocks' ConvNormAct units hold norm-activation layers (BatchNormAct2d, with
    the unit's ReLU inside or off)."""
    relu = {}
    for block in plan.blocks:
        for unit in block.main:
            units = unit.paths if isinstance(unit, SelectiveKernelConv) else (unit,) if isinstance(unit, ConvNorm) \
                else ()
            relu.update({u.norm.name: u.relu for u in units if u.norm is not None and is_sk(plan, block.stage)})

    def check(n: Norm, module: Any, where: str) -> list[str]:
        if n.name in relu:
            return _timm.check_norm(n, module, where, act=True, relu=relu[n.name])
        return _timm.check_norm(n, module, where)

    return check


def is_sk(plan: Plan, stage: int) -> bool:
    return isinstance(plan.spec.stage_blocks[stage - 1], (SKBasic, SKBottleneck))


def has_sk(spec: ResNetSpec) -> bool:
    """Whether ``spec`` has selective-kernel blocks (only timm's ResNet class builds them)."""
    return any(isinstance(b, (SKBasic, SKBottleneck)) for b in spec.stage_blocks)


def model_args(spec: ResNetSpec) -> dict[str, Any]:
    """``block`` classes and ``block_args`` (its ``sk_kwargs``) for timm's ResNet (empty without SK blocks)."""
    blocks = spec.stage_blocks
    if not any(isinstance(b, (SKBasic, SKBottleneck)) for b in blocks):
        return {}
    from timm.models.sknet import SelectiveKernelBasic, SelectiveKernelBottleneck

    sk = cast(SKBasic | SKBottleneck, blocks[0])
    kwargs = dict(kernel_size=list(sk.kernel_sizes), keep_3x3=sk.keep_3x3, split_input=sk.split_input,
                  rd_ratio=sk.rd_ratio, rd_divisor=sk.rd_divisor)
    classes = {"sk_basic": SelectiveKernelBasic, "sk_bottleneck": SelectiveKernelBottleneck}
    return {"block": [classes[b.kind] for b in blocks], "sk_kwargs": kwargs}


def export_problems(spec: ResNetSpec) -> list[str]:
    """What timm's ResNet cannot build with SK blocks: other block types beside them, or two SK sub-specs."""
    blocks = set(spec.stage_blocks)
    sk = {b for b in blocks if isinstance(b, (SKBasic, SKBottleneck))}
    if sk and len(blocks) > 1:
        return [f"block_spec={spec.block_spec!r} (timm's SKNet takes one selective-kernel block for every stage)"]
    return []
