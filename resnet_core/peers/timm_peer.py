"""timm.models.resnet.ResNet <-> ResNetSpec: stems, "d" shortcuts, SE and output stride included.

timm keeps torchvision's names for the shared parts and the plan uses timm's for the rest, so the
table is the identity. SE and ECA attention, anti-aliasing (``aa_layer``), ``replace_stem_pool``,
``block_reduce_first`` and ``down_kernel_size`` have spec fields, so do per-stage block classes and
``channels`` (``block_types``, ``planes``) and the per-block widths of timm's pruned models
(``block_widths``, ``eca_kernels``); what timm can build but ResNetSpec cannot (other attention or
activation layers...) is refused by name. ``drop_rate`` and ``drop_path_rate`` travel both ways
(:mod:`.timm_drop`).
timm.models.resnetv2.ResNetV2 models (pre- and post-activation) and pre-activation specs go to
timm_resnetv2; so do post-activation specs only ResNetV2(preact=False) can build (see :func:`to_model`).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping
from typing import Any, cast

import numpy as np

from ..drop_rates import DROP_FIELDS
from ..errors import InputError
from ..name_tables import TORCH_IGNORED, TORCH_KINDS, ModuleRow, Table
from ..plan import (
    AvgPool,
    BlurPool,
    EfficientChannelAttention,
    Mixer,
    Plan,
    explicit_width_fields,
    make_plan,
)
from ..spec import ResNetSpec, SpecError
from ..weights_info import WeightsInfo
from . import _timm, timm_res2net, timm_resnest, timm_resnetv2, timm_sknet
from ._common import (
    check_round_trip,
    match_output_stride,
    named,
    refuse_export,
    se_ratio_for,
    stem_counted_output_stride,
    unsupported,
)
from ._timm import PEER, pool_matches, pool_text, pretrained_cfg
from ._timm import info_of as info_of  # noqa: F401 - the peer's record reader, for peers.peer_info
from .timm_drop import drop_fields

MODULES = (ModuleRow("{m:path}", "{m:path}", "module"),)
TABLE = Table(MODULES, TORCH_KINDS, ignored=TORCH_IGNORED)

STEM_TYPES = {"7x7": "", "deep": "deep", "deep_tiered": "deep_tiered"}
NORMS = ("batch", "group")  # timm's ResNet: BatchNorm2d, GroupNorm
# the block types timm's ResNet builds
BLOCK_KINDS = ("basic", "bottleneck", "resnest", "res2net", "sk_basic", "sk_bottleneck")

# Leaf modules a timm ResNet may hold for a spec to describe it; anything else is refused.
_ALLOWED = ("Conv2d", "BatchNorm2d", "GroupNorm", "ReLU", "MaxPool2d", "AvgPool2d", "AvgPool2dSame", "Identity",
            "Linear", "Flatten", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "Sigmoid", "Conv1d", "BlurPool2d",
            "DropBlock2d", "DropPath", "Dropout",  # these three act only in training
            "RadixSoftmax")  # ResNeSt's gate: its radix and cardinality are checked against the plan
# Where an unexpected module sits -> the timm option that put it there.
_HINTS = ((".aa", "aa_layer (anti-aliasing)"), (".se", "attn_layer"), ("maxpool", "aa_layer"),
          ("act", "act_layer"), ("bn", "norm_layer"), ("downsample", "norm_layer or down_kernel_size"),
          ("global_pool", "global_pool"))


def accepts(model: object) -> bool:
    module = sys.modules.get("timm.models.resnet")  # loaded if such a model exists: nothing is imported
    return (module is not None and isinstance(model, module.ResNet)) or timm_resnetv2.accepts(model)


def _hint(path: str) -> str:
    return next((option for key, option in _HINTS if key in path), "a module ResNetSpec has no option for")


def _refusals(model: Any, activations: set[str]) -> list[str]:
    """What the model uses that ResNetSpec cannot say, one line per kind of problem (not per block)."""
    from torch import nn

    found: dict[str, list[str]] = {}  # problem -> modules showing it
    refused: list[str] = []  # modules already reported; their children are not
    for name, module in model.named_modules():
        kind = type(module).__name__
        if name in activations or any(name.startswith(f"{r}.") for r in refused):
            continue  # activations are reported by check_relus
        problem = None
        if name == "maxpool" and kind not in ("MaxPool2d", "AvgPool2d", "Identity", "Sequential"):
            problem = f"{kind}: aa_layer has no ResNetSpec option (anti_alias: AvgPool2d or BlurPool2d)"
        elif name.endswith(".aa") and kind not in ("Identity", "AvgPool2d", "BlurPool2d"):
            problem = f"{kind}: aa_layer has no ResNetSpec option (anti_alias: AvgPool2d or BlurPool2d)"
        elif name.endswith(".se") and kind not in ("SEModule", "EcaModule"):
            problem = (f"{kind}: attn_layer={kind} is not expressible (ResNetSpec.attention supports only None, "
                       "'se' and 'eca': timm's SEModule and EcaModule)")
        elif kind == "EcaModule" and (module.conv2 is not None or module.conv.bias is not None
                                      or type(module.gate).__name__ != "Sigmoid"):
            problem = "an EcaModule variant (use_mlp, act_layer or gate_layer): ResNetSpec's ECA is conv1d, sigmoid"
        elif kind == "SEModule" and (module.add_maxpool or type(module.bn) is not nn.Identity
                                     or module.fc1.bias is None or type(module.act) is not nn.ReLU
                                     or type(module.gate).__name__ != "Sigmoid"):
            problem = ("an SEModule variant (add_maxpool, norm_layer, bias=False, act_layer or gate_layer): "
                       "ResNetSpec's SE is biased conv, ReLU, conv, sigmoid")
        elif not list(module.children()) and kind not in _ALLOWED:
            problem = f"{kind}: {_hint(name)} has no ResNetSpec option"
        if problem is not None:
            found.setdefault(problem, []).append(name)
            refused.append(name)
    problems = [f"{names[0]}{f' (+{len(names) - 1} more)' if len(names) > 1 else ''} is {problem}"
                for problem, names in found.items()]
    kernels = {(number, b.se.conv.kernel_size[0]) for number, stage in enumerate(_stages(model), 1) for b in stage
               if type(getattr(b, "se", None)).__name__ == "EcaModule"}
    numbers = [number for number, _ in kernels]
    if len(set(numbers)) < len(numbers):
        problems.append(f"ECA kernel sizes {sorted(kernels)} (stage, kernel) differ inside a stage: "
                        "ResNetSpec.eca_kernels has one per stage")
    return problems


def _pruned(model: Any, plan: Plan) -> Any:
    """The unpruned timm model cut to the plan's widths by timm's own pruning (``adapt_model_from_string``,
    which its ``*_pruned`` models use), its ECA convs given the plan's kernel sizes (timm keeps the
    unpruned widths' kernels there)."""
    from timm.models._prune import adapt_model_from_string
    from torch import nn

    shapes = {p.name: p.shape for p in plan.params if p.role in ("kernel", "gamma")}
    model = adapt_model_from_string(model, "***".join(f"{k}:{list(v)}" for k, v in shapes.items()))
    for block in plan.blocks:
        if isinstance(block.attention, EfficientChannelAttention):
            eca = model.get_submodule(block.attention.name)
            k = block.attention.conv.kernel_size
            if eca.conv.kernel_size != (k,):
                eca.conv = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)
    return model


def _main_widths(block: Any) -> tuple[int, ...]:
    if timm_resnest.is_resnest(block):
        return timm_resnest.main_widths(block)
    convs = (block.conv1, block.conv2, block.conv3) if hasattr(block, "conv3") else (block.conv1, block.conv2)
    return tuple(conv.out_channels for conv in convs)


def _stages(model: Any) -> list[Any]:
    return [getattr(model, f"layer{i}") for i in range(1, 5)]


def _check_pools(plan: Plan, model: Any) -> list[str]:
    """Shortcut pools and the stem pool, which own no tensors, against the plan."""
    from torch import nn


    modules = dict(model.named_modules())
    faults = _check_stem_pool(plan, model) + timm_res2net.check_pools(plan, modules)
    faults += timm_resnest.check(plan, model)
    for block in plan.blocks:
        for unit in () if timm_sknet.is_sk(plan, block.stage) else block.main:  # SK blocks have no .aa
            where = f"{block.name}.aa"
            if isinstance(unit, Mixer) or timm_resnest.is_resnest(modules.get(block.name)):
                continue  # a block type's own operator (checked by its module above), ResNeSt's avd pools
            if unit.conv.kernel_size == 3 and not _aa_matches(modules.get(where), unit.pool, nn):
                faults.append(f"{where} is {modules.get(where)!r}, expected {_aa_text(unit.pool)}")
        if isinstance(block.attention, EfficientChannelAttention):
            where, k = block.attention.name, block.attention.conv.kernel_size
            conv: Any = getattr(modules.get(where), "conv", None)
            if type(conv) is not nn.Conv1d or conv.kernel_size != (k,) or conv.padding != ((k - 1) // 2,) \
                    or conv.padding_mode != "zeros":
                faults.append(f"{where}.conv is {conv!r}, expected Conv1d(1, 1, kernel_size=({k},), "
                              f"padding=({(k - 1) // 2},), bias=False)")
        if block.shortcut is None or plan.spec.downsample != "avg":
            continue
        where = f"{block.name}.downsample.0"
        m, want = modules.get(where), cast("AvgPool | None", block.shortcut_pool)  # timm's avg downsample
        faults += [f"{where} is {m!r}, expected {pool_text(want)}"] if not pool_matches(m, want, nn) else []
    return faults


def _check_stem_pool(plan: Plan, model: Any) -> list[str]:
    from torch import nn

    from . import _torch

    stem, m = plan.stem, model.maxpool
    if stem.pool is None:  # no pool, or ResNet-RS's conv (its units are checked with the others)
        ok = type(m) is nn.Identity if not plan.spec.replace_stem_pool else \
            type(m) is nn.Sequential and len(m) == 3
        return [] if ok else [f"maxpool is {m!r}, expected " + (
            "Sequential(Conv2d, BatchNorm2d, ReLU) (replace_stem_pool)" if plan.spec.replace_stem_pool else "Identity")]
    if stem.blur is not None:  # timm: Sequential(MaxPool2d(3, 1, 1), BlurPool2d)
        ok = type(m) is nn.Sequential and len(m) == 2 and type(m[0]) is nn.MaxPool2d \
            and (m[0].kernel_size, m[0].stride, m[0].padding) == (3, 1, 1) and _aa_matches(m[1], stem.blur, nn)
        return [] if ok else [f"maxpool is {m!r}, expected Sequential(MaxPool2d(3, 1, 1), {_aa_text(stem.blur)})"]
    if isinstance(stem.pool, AvgPool):
        return [] if _aa_matches(m, stem.pool, nn) else [f"maxpool is {m!r}, expected {_aa_text(stem.pool)}"]
    return _torch.check_maxpool(m, "maxpool")


def _aa_text(pool: AvgPool | BlurPool | None) -> str:
    if pool is None:
        return "Identity (no anti-aliasing there)"
    if isinstance(pool, BlurPool):
        return f"BlurPool2d(filt_size={pool.filter_size}, stride={pool.stride}, pad_mode={pool.pad_mode!r})"
    return f"AvgPool2d({pool.kernel_size})"


def _aa_matches(module: Any, pool: AvgPool | BlurPool | None, nn: Any) -> bool:
    """timm's create_aa output against the plan's anti-aliasing pool."""
    if pool is None:
        return type(module) is nn.Identity
    if isinstance(pool, BlurPool):
        mode = {"reflect": "reflect", "zeros": "constant"}[pool.pad_mode]
        return type(module).__name__ == "BlurPool2d" and module.filt_size == pool.filter_size and \
            module.stride == pool.stride and module.pad_mode == mode and module.padding == [pool.padding] * 4
    pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    return type(module) is nn.AvgPool2d and pair(module.kernel_size) == (pool.kernel_size,) * 2 and \
        pair(module.stride) == (pool.stride,) * 2 and pair(module.padding) == (0, 0) and not module.ceil_mode


def _anti_alias_of(model: Any, blocks: list[Any]) -> str | None:
    """ResNetSpec.anti_alias of the first anti-aliasing module (the plan check verifies the others)."""
    found = [b.aa for b in blocks if type(getattr(b, "aa", None)).__name__ not in ("Identity", "NoneType")]  # SK: none
    if not found:
        found.append(model.maxpool[-1] if type(model.maxpool).__name__ == "Sequential" else model.maxpool)
    kind = type(found[0]).__name__
    if kind == "AvgPool2d":
        return "avg"
    if kind == "BlurPool2d":
        return "blur" if found[0].pad_mode == "reflect" else "blur_zero"
    return None


def _replaced_stem_pool(model: Any) -> bool:
    from torch import nn

    return type(model.maxpool) is nn.Sequential and any(type(m) is nn.Conv2d for m in model.maxpool)


def from_model(model: Any) -> tuple[ResNetSpec, dict[str, np.ndarray]]:
    if timm_resnetv2.accepts(model):
        return timm_resnetv2.from_model(model)
    from timm.models.resnet import Bottleneck
    from torch import nn

    from . import _torch

    stages = _stages(model)
    relus = ["act1", "conv1.2", "conv1.5", "maxpool.2"] + [
        r for s in range(1, 5) for i, b in enumerate(stages[s - 1])
        for r in (timm_resnest.relus(f"layer{s}.{i}") if timm_resnest.is_resnest(b) else
                  [f"layer{s}.{i}.act{k}" for k in (1, 2, 3)])]
    res2net = timm_res2net.is_res2net(stages)
    relus += timm_res2net.relus(stages) if res2net else []
    relus += timm_sknet.relu_names(model)
    sk_fields, sk_problems = timm_sknet.block_fields(stages, (getattr(model, "pretrained_cfg", None) or {}).get(
        "architecture"))
    problems = _refusals(model, set(relus)) + _torch.check_relus(model, relus) + sk_problems
    top = isinstance(model.fc, nn.Linear)
    pool_type = model.global_pool.pool_type
    pools = {"avg": "avg", "max": "max", "": None}
    if (top and pool_type != "avg") or pool_type not in pools:
        problems.append(f"global_pool={pool_type!r} " + ("with a classifier (ResNetSpec's top average-pools)"
                                                       if top else "(ResNetSpec pools by 'avg', 'max' or not at all)"))
    res2net_fields, res2net_problems = timm_res2net.spec_fields(stages) if res2net else ({}, [])
    problems += res2net_problems
    drops, drop_problems = drop_fields(model, [b for stage in stages for b in stage])
    problems += drop_problems
    if problems:
        raise unsupported(PEER, problems)

    per_stage = [] if res2net else [
        (timm_sknet.block_kind(stage[0]) or ("resnest" if timm_resnest.is_resnest(stage[0]) else
                                             "bottleneck" if isinstance(stage[0], Bottleneck) else "basic"),
         [_main_widths(b) for b in stage]) for stage in stages]
    groups = timm_sknet.cardinality(stages) or next(
        (timm_resnest.groups(stage[0]) if timm_resnest.is_resnest(stage[0]) else stage[0].conv2.groups
         for stage in stages if isinstance(stage[0], Bottleneck) or timm_resnest.is_resnest(stage[0])), 1)
    widths = res2net_fields or explicit_width_fields(per_stage)  # Res2Net: its sub-spec with the rule's widths
    groups = widths.pop("groups", groups)
    eca = [stage[0].se.conv.kernel_size[0] for stage in stages
           if type(getattr(stage[0], "se", None)).__name__ == "EcaModule"]
    deep = isinstance(model.conv1, nn.Sequential)
    stem_conv = model.conv1[0] if deep else model.conv1
    if deep:
        stem_width = model.conv1[3].out_channels
        stem = "deep" if model.conv1[0].out_channels == stem_width else "deep_tiered"
    else:
        stem_width, stem = model.conv1.out_channels, "7x7"
    blocks = [b for stage in stages for b in stage]
    resnest = timm_resnest.block_spec(blocks)
    downs = {len(b.downsample) for b in blocks if b.downsample is not None}
    kernels = [b.downsample[0].kernel_size[0] for b in blocks if b.downsample is not None and len(b.downsample) == 2]
    attention = {type(getattr(b, "se", None)).__name__ for b in blocks}
    if len(attention) > 1:
        raise unsupported(PEER, [f"attention modules {sorted(attention)} in different blocks (ResNetSpec.attention "
                                 "applies to all)"])
    ses = [(b.se.fc1.in_channels, b.se.fc1.out_channels) for b in blocks
           if type(getattr(b, "se", None)).__name__ == "SEModule"]
    found = _timm.norm_kind(model.bn1)
    if found is None:  # pragma: no cover - _refusals names any other norm class first
        raise unsupported(PEER, [f"bn1 is {type(model.bn1).__name__}: norm_layer has no ResNetSpec option"])
    try:
        spec = ResNetSpec(
            **widths, layers=tuple(len(s) for s in stages), groups=groups,
            num_classes=model.fc.out_features if top else 0, include_top=top,
            pooling=None if top else pools[pool_type], in_channels=stem_conv.in_channels, stem_width=stem_width,
            **found[1], eca_kernels=tuple(eca) if len(eca) == len(stages) else None,
            stride_in_1x1=any(isinstance(stage[0], Bottleneck) and tuple(stage[0].conv1.stride) != (1, 1)
                              for stage in stages),
            **({} if resnest is None else {"block_spec": resnest}),
            conv_bias=stem_conv.bias is not None, stem=stem, stem_pool=not isinstance(model.maxpool, nn.Identity),
            downsample="avg" if downs == {3} else "conv",
            attention={"SEModule": "se", "EcaModule": "eca"}.get(attention.pop()),
            se_ratio=se_ratio_for(ses, PEER) if ses else 1.0 / 16,
            anti_alias=None if res2net else _anti_alias_of(model, blocks), replace_stem_pool=_replaced_stem_pool(model),
            down_kernel_size=max(kernels, default=1), **sk_fields, **drops,
        )
    except SpecError as exc:
        raise unsupported(PEER, [str(exc)]) from None
    spec = match_output_stride(
        spec, lambda plan: _torch.check_plan(plan, TABLE, model, norm=timm_sknet.norm_check(plan)) +
        _check_pools(plan, model), PEER)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    spec = named(spec, cfg.get("architecture") or "resnet")
    return spec, TABLE.to_canonical(make_plan(spec), _torch.state_numpy(model), PEER)


def _export_problems(spec: ResNetSpec) -> list[str]:
    """What timm's ResNet class cannot build exactly."""
    problems = []
    if spec.preact:
        problems.append("preact=True (timm's ResNet is post-activation; its ResNetV2 builds pre-activation)")
    if spec.norm not in NORMS:
        problems.append(f"norm={spec.norm!r} (timm's ResNet builds {' / '.join(NORMS)} norms only)")
    if len(spec.layers) != 4:
        problems.append(f"layers={spec.layers} (timm's ResNet runs exactly four stages)")
    if spec.stem == "7x7" and spec.stem_width != 64:
        problems.append(f"stem_width={spec.stem_width} with the 7x7 stem (timm's ResNet fixes it at 64)")
    if spec.stride_in_1x1:
        problems.append("stride_in_1x1=True (timm strides the 3x3 conv)")
    if spec.conv_bias:
        problems.append("conv_bias=True (timm's convolutions have no bias)")
    if spec.std_conv:
        problems.append("std_conv=True (timm's ResNet takes no conv_layer; its ResNetV2 does)")
    if spec.block_widths is not None and spec.norm != "batch":
        problems.append(f"block_widths with norm={spec.norm!r} (timm's pruning rebuilds batch norms only)")
    if spec.project_first and make_plan(spec).projections != make_plan(spec.replace(project_first=False)).projections:
        problems.append("project_first=True (timm's ResNet projects only where the width or stride changes; "
                        "its ResNetV2 projects every stage's first block)")
    return problems + timm_resnest.export_problems(spec)



MODEL_CLASSES = ("ResNet", "ResNetV2")


def to_model(spec: ResNetSpec, weights: Mapping[str, Any], info: WeightsInfo | None = None,
             model_class: str | None = None) -> Any:
    """A timm ResNet or ResNetV2 in eval mode; its ``pretrained_cfg`` carries ``info`` (mean/std, input size...).

    ``model_class`` (``"ResNet"`` or ``"ResNetV2"``) picks timm's class. By default pre-activation specs
    build ResNetV2; the others build timm's ResNet, or ResNetV2(preact=False) where only it can (the two
    compute the same function; ResNetV2's classifier is a 1x1 conv, ResNet's a Linear).
    """
    if model_class not in (None, *MODEL_CLASSES):
        raise InputError(f"Unknown timm model_class {model_class!r}: expected one of {MODEL_CLASSES}")
    problems = _export_problems(spec) + timm_sknet.export_problems(spec)
    if model_class is None and problems and not spec.preact and not timm_sknet.has_sk(spec):  # ResNetV2 has no SK
        v2_problems = timm_resnetv2.export_problems(spec)
        if v2_problems:  # both refuse: say why each does
            problems.append(f"nor can timm's ResNetV2(preact=False): {'; '.join(v2_problems)}")
        else:
            model_class = "ResNetV2"
    if model_class == "ResNetV2" and timm_sknet.has_sk(spec):
        refuse_export(spec, PEER, [f"block={spec.block!r} with model_class='ResNetV2' (timm's ResNetV2 has no "
                                   "selective-kernel block; its ResNet builds them)"], per_stage=True, blocks=None)
    if model_class == "ResNetV2" or (model_class is None and spec.preact):
        return timm_resnetv2.to_model(spec, weights, info)
    from timm.layers import BlurPool2d, SEModule
    from timm.models.resnest import ResNestBottleneck
    from timm.models.resnet import BasicBlock, Bottleneck, ResNet
    from torch import nn

    from . import _torch

    res2net = "res2net" in spec.stage_block_types
    if res2net:
        more, res2net_args = timm_res2net.model_args(spec)
        problems += more
    refuse_export(spec, PEER, problems, norms=NORMS + ("evo_s0", "frn"), std_conv=True,  # said in problems
                  per_stage=True, blocks=BLOCK_KINDS, drop_rates=DROP_FIELDS)
    cfg = pretrained_cfg(spec, info)
    block_args: dict[str, Any] = {}
    if spec.attention == "se":
        block_args["attn_layer"] = functools.partial(SEModule, rd_ratio=spec.se_ratio)
    elif spec.attention == "eca":
        block_args["attn_layer"] = "eca"
    if "resnest" in spec.stage_block_types:
        block_args.update(timm_resnest.block_args(spec))
    # timm's stem takes only a class, so the zero-padded blur is built as BlurPool2d and re-padded below.
    aa_layer = {None: None, "avg": nn.AvgPool2d, "blur": BlurPool2d, "blur_zero": BlurPool2d}[spec.anti_alias]
    classes = {"bottleneck": Bottleneck, "basic": BasicBlock, "resnest": ResNestBottleneck}
    if res2net:
        from timm.models.res2net import Bottle2neck

        classes["res2net"] = Bottle2neck
        block_args.update(res2net_args)
        if spec.attention == "eca":  # Bottle2neck calls attn_layer(channels): a class, not timm's name for it
            from timm.layers import EcaModule

            block_args["attn_layer"] = EcaModule
    sk = timm_sknet.model_args(spec)  # selective-kernel blocks: their classes and sk_kwargs
    if sk:
        block_args["sk_kwargs"] = sk["sk_kwargs"]
    model = ResNet(
        sk.get("block") or [classes[block] for block in spec.stage_block_types], list(spec.layers),
        num_classes=spec.num_classes if spec.include_top else 0, in_chans=spec.in_channels,
        output_stride=stem_counted_output_stride(spec),
        global_pool="avg" if spec.include_top else {"avg": "avg", "max": "max", None: ""}[spec.pooling],
        cardinality=spec.groups, base_width=spec.width_per_group, stem_width=spec.stem_width,
        stem_type=STEM_TYPES[spec.stem], avg_down=spec.downsample == "avg",
        channels=spec.stage_base_planes,
        norm_layer=_timm.norm_layer(spec, act=False),
        zero_init_last=spec.zero_init_residual, block_args=block_args, aa_layer=aa_layer,
        replace_stem_pool=spec.replace_stem_pool, block_reduce_first=spec.reduce_first,
        down_kernel_size=spec.down_kernel_size,
        drop_rate=spec.drop_rate, drop_path_rate=spec.drop_path_rate,  # timm's rule gives the plan's block rates
    )
    if not spec.stem_pool:
        model.maxpool = nn.Identity()
    model.pretrained_cfg = cfg
    if spec.block_widths is not None or spec.eca_kernels is not None:
        model = _pruned(model, make_plan(spec))
    for module in model.modules():
        if spec.anti_alias == "blur_zero" and isinstance(module, BlurPool2d):
            module.pad_mode = "constant"  # what timm's aa_layer="blurpc" builds
    _torch.load_state(model, TABLE.to_peer(make_plan(spec), weights), TABLE)
    model.eval()
    check_round_trip(spec, from_model(model)[0], PEER)
    return model
