"""The paper's Table 1 for any spec: per stage the output size, the block shape, parameters and MACs.

Computed from the plan alone, so no framework is imported. MACs (multiply-accumulates) count the
convolutions and the linear layer for one image, the convention behind torchvision's documented
GFLOPS (resnet50: 4.09) and what fvcore's ``FlopCountAnalysis`` reports for those operators.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .errors import InputError
from .plan import (
    Block,
    BlurPool,
    Conv,
    ConvNorm,
    Dense,
    EfficientChannelAttention,
    MaxPool,
    Mixer,
    Plan,
    SplitAttention,
    SqueezeExcite,
    make_plan,
)
from .spec import ResNetSpec

# The paper's Table 1 (He et al., 2015): multiply-adds of the five ImageNet models at 224x224.
PAPER_GFLOPS = {"resnet18": 1.8, "resnet34": 3.6, "resnet50": 3.8, "resnet101": 7.6, "resnet152": 11.3}


@dataclass(frozen=True)
class StageRow:
    """One row of the table: the stem, a stage (conv2_x ... ), or the head."""

    name: str  # the paper's layer name: conv1, conv2_x, ..., head
    output_size: tuple[int, int]  # (H, W) after this row, or (1, 1) after global pooling
    shape: str  # e.g. "[1x1, 64; 3x3, 64; 1x1, 256] x 3"
    params: int
    macs: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "output_size": list(self.output_size), "shape": self.shape,
                "params": self.params, "macs": self.macs}


@dataclass(frozen=True)
class Summary:
    spec: ResNetSpec
    input_size: tuple[int, int]
    rows: tuple[StageRow, ...]

    @property
    def params(self) -> int:
        """Trainable parameters: what ``sum(p.numel() for p in model.parameters())`` gives."""
        return sum(r.params for r in self.rows)

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the convolutions and the linear layer, for one image."""
        return sum(r.macs for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.spec.name, "input_size": list(self.input_size), "params": self.params,
                "macs": self.macs, "stages": [r.to_dict() for r in self.rows]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def format(self) -> str:
        """A plain-text Table 1, with totals and the paper's figure where there is one."""
        header = ("layer", "output", "block", "params", "MACs")
        cells = [header] + [(r.name, "x".join(map(str, r.output_size)), r.shape, f"{r.params:,}",
                             f"{r.macs / 1e6:,.1f}M") for r in self.rows]
        widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
        lines = [f"{self.spec.name} at {self.input_size[0]}x{self.input_size[1]}"]
        for row in cells:
            lines.append("  ".join(c.rjust(w) if i >= 3 else c.ljust(w)
                                   for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip())
        lines.append(f"total: {self.params:,} parameters, {self.macs / 1e9:.3f} GMACs")
        paper = PAPER_GFLOPS.get(self.spec.name)
        if paper is not None and self.input_size == (224, 224):
            lines.append(f"paper's Table 1: {paper} x 10^9 FLOPs (multiply-adds; see docs/table1.md for the "
                         "difference)")
        return "\n".join(lines)


def parse_size(value: int | str | tuple[int, int]) -> tuple[int, int]:
    """``224``, ``"224"``, ``"65x77"`` or ``(65, 77)`` -> (H, W); anything else is a ValueError naming it."""
    if isinstance(value, tuple) and len(value) == 2:
        h, w = value
    elif isinstance(value, int) and not isinstance(value, bool):
        h = w = value
    elif isinstance(value, str):
        parts = value.lower().split("x")
        if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
            raise InputError(f"Invalid input size {value!r}: expected N or HxW with positive integers, e.g. 224 or "
                             "65x77")
        h, w = (int(parts[0]), int(parts[-1]))
    else:
        raise InputError(f"Invalid input size {value!r}: expected N or HxW with positive integers, e.g. 224 or 65x77")
    if not all(isinstance(v, int) and v > 0 for v in (h, w)):
        raise InputError(f"Invalid input size {value!r}: expected positive integers")
    return h, w


def summary(spec: str | ResNetSpec, input_size: int | str | tuple[int, int] = 224) -> Summary:
    """Table 1 of ``spec`` at ``input_size`` (N, "HxW" or (H, W)).

    Args:
        spec: A preset name, a :class:`~resnet_core.spec.ResNetSpec`, a spec ``.json``, or a source whose spec
            it takes (a weights file, read without its tensors; a model folder; a hub name).
        input_size: The input's height and width: ``224``, ``"224"``, ``"65x77"`` or ``(65, 77)``.

    Returns:
        A :class:`Summary`: one row per stage (stem, ``conv2_x`` ... ``conv5_x``, head) with its output
        size, block shape, parameters and multiply-accumulates; ``format()`` prints it as the paper does.

    Raises:
        UnknownNameError: ``spec`` is a bare name and no preset.
        InputError: ``input_size`` is not a positive size.

    Example:
        >>> s = summary("resnet50")
        >>> s.params, round(s.macs / 1e9, 2)
        (25557032, 4.09)
        >>> print(*(row.name for row in s.rows))
        conv1 conv2_x conv3_x conv4_x conv5_x head
        >>> print(s.format().splitlines()[-2])
        total: 25,557,032 parameters, 4.089 GMACs
        >>> summary("resnet18", "65x77").input_size
        (65, 77)
    """
    from .sources import resolve

    plan = make_plan(resolve(spec, load=False).spec)
    height, width = parse_size(input_size)
    sizes = plan.module_sizes(height, width)  # every padded conv and pool keeps at least one pixel
    params = _region_params(plan)
    rows = [_stem_row(plan, sizes, params)]
    for stage in range(1, plan.num_stages + 1):
        rows.append(_stage_row(plan, stage, sizes, params))
    rows.append(_head_row(plan, params, plan.output_size(height, width)))
    return Summary(plan.spec, (height, width), tuple(rows))


def conv_macs(conv: Conv, output_size: tuple[int, int]) -> int:
    """Multiply-accumulates of one convolution for one image (no bias, fvcore's convention)."""
    h, w = output_size
    return h * w * conv.out_channels * (conv.in_channels // conv.groups) * conv.kernel_size ** 2


def _units_macs(units: Iterable[ConvNorm | Mixer], sizes: dict[str, tuple[int, int]]) -> int:
    """Convolutions, and the depthwise filter of anti-aliasing blur pools (a conv to a FLOP counter); a block
    type's own operator (a plan Mixer) counts every conv it holds, at the size the plan recorded for it."""
    return sum(sum(conv_macs(m, sizes[m.name]) for m in u.modules() if isinstance(m, Conv)) if isinstance(u, Mixer)
               else conv_macs(u.conv, sizes[u.conv.name]) + _pool_macs(u.pool, sizes) for u in units)


def _pool_macs(pool: object, sizes: dict[str, tuple[int, int]]) -> int:
    if not isinstance(pool, BlurPool):
        return 0
    h, w = sizes[pool.name]
    return h * w * pool.channels * pool.filter_size ** 2


def _attention_macs(block: Block) -> int:
    att = block.attention
    if isinstance(att, SqueezeExcite):  # 1x1 convs on the pooled map
        return conv_macs(att.fc1, (1, 1)) + conv_macs(att.fc2, (1, 1))
    if isinstance(att, EfficientChannelAttention):  # a 1D conv sliding across the channels
        return att.channels * att.conv.kernel_size
    return 0


def _block_macs(block: Block, sizes: dict[str, tuple[int, int]]) -> int:
    shortcut = () if block.shortcut is None else (block.shortcut,)
    return (_units_macs(block.main, sizes) + _attention_macs(block) + _pool_macs(block.shortcut_pool, sizes)
            + _units_macs(shortcut, sizes))


def _region_params(plan: Plan) -> dict[str, int]:
    """Trainable parameters by row: "stem", "layer1".."layerN", "head" (by the canonical module names)."""
    head = {m.name for m in (plan.head.fc, plan.head.norm) if m is not None}
    out: dict[str, int] = {}
    for p in plan.params:
        if not p.trainable:
            continue
        region = "head" if p.module in head else p.module.split(".")[0] if p.module.startswith("layer") else "stem"
        out[region] = out.get(region, 0) + p.size
    return out


def _unit_shape(conv: Conv) -> str:
    text = f"{conv.kernel_size}x{conv.kernel_size}, {conv.out_channels}"
    if conv.groups > 1:
        text += f", C={conv.groups}"
    if conv.dilation > 1:
        text += f", dilation {conv.dilation}"
    return text


def _stem_row(plan: Plan, sizes: dict[str, tuple[int, int]], params: dict[str, int]) -> StageRow:
    units = plan.stem.units
    shape = "; ".join(_unit_shape(u.conv) + (f", stride {u.conv.stride}" if u.conv.stride > 1 else "") for u in units)
    macs = _units_macs(units, sizes) + sum(_pool_macs(p, sizes) for p in (plan.stem.pool, plan.stem.blur))
    return StageRow("conv1", sizes[units[-1].conv.name], shape, params.get("stem", 0), macs)


def _mixer_shape(mixer: Mixer) -> str:
    """A block type's operator in one cell (its own ``shape_text`` where it has one)."""
    text = getattr(mixer, "shape_text", None)
    if isinstance(text, str):
        return text
    if isinstance(mixer, SplitAttention):  # the 3x3 conv's splits, and what gates them
        conv = mixer.conv
        groups = f", C={mixer.groups}" if mixer.groups > 1 else ""
        return f"{conv.kernel_size}x{conv.kernel_size}, {mixer.width}{groups}, split attention radix {mixer.radix}"
    # otherwise by its convs: "3 x (3x3, 26)" for Res2Net's three split convs
    convs = [m for m in mixer.modules() if isinstance(m, Conv)]
    return f"{len(convs)} x ({_unit_shape(convs[0])})"


def _block_shape(block: Block) -> str:
    inner = [_mixer_shape(u) if isinstance(u, Mixer) else _unit_shape(u.conv) for u in block.main]
    if isinstance(block.attention, SqueezeExcite):
        se = block.attention
        inner.append(f"SE {se.fc1.in_channels}-{se.fc1.out_channels}-{se.fc2.out_channels}")
    elif block.attention is not None:
        inner.append(f"ECA k={block.attention.conv.kernel_size}")
    return "; ".join(inner)


def _stage_row(plan: Plan, stage: int, sizes: dict[str, tuple[int, int]], params: dict[str, int]) -> StageRow:
    blocks = plan.stage_blocks(stage)
    first = blocks[0]
    # Runs of blocks of one shape; a channel-pruned stage (per-block widths) lists each run.
    shape = ", ".join(f"[{inner}] x {len(list(run))}" for inner, run in
                      itertools.groupby(_block_shape(b) for b in blocks))
    if first.pre_norm is not None:
        shape = f"pre-act {shape}"
    if stage == 1 and plan.stem.pool is not None:
        pool = plan.stem.pool
        kind = "max" if isinstance(pool, MaxPool) else "avg"
        blur = f" + blur, stride {plan.stem.blur.stride}" if plan.stem.blur is not None else ""
        shape = f"{pool.kernel_size}x{pool.kernel_size} {kind} pool, stride {pool.stride}{blur}; {shape}"
    end = blocks[-1].main[-1]
    last = end.conv.name if isinstance(end, ConvNorm) else end.name  # a Mixer records its output size by name
    return StageRow(f"conv{stage + 1}_x", sizes[last], shape, params.get(f"layer{stage}", 0),
                    sum(_block_macs(b, sizes) for b in blocks))


def _head_row(plan: Plan, params: dict[str, int], feature_size: tuple[int, int]) -> StageRow:
    head = plan.head
    parts = [] if head.norm is None else ["final norm"]
    if head.pool is not None:
        parts.append(f"global {head.pool} pool")
    fc: Dense | None = head.fc
    if fc is not None:
        parts.append(f"{fc.out_features}-d fc")
    macs = 0 if fc is None else fc.in_features * fc.out_features
    return StageRow("head", (1, 1) if head.pool is not None else feature_size, ", ".join(parts) or "feature map",
                    params.get("head", 0), macs)
