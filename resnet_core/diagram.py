"""An SVG picture of a spec, drawn from its plan: the stages, and each distinct block type.

Left column: the network (stem units, stem pool, one box per stage with its depth and output size at
224x224, head). Right: every distinct block type (main path, shortcut with its pool or projection,
attention, pre-activation order), so v1, v1.5, v2, ResNeXt and the d/t variants can be told apart at a glance.
"""

from __future__ import annotations

import os
from html import escape

from .plan import (
    AvgPool,
    Block,
    BlurPool,
    ConvNorm,
    MaxPool,
    Mixer,
    Plan,
    Res2NetScales,
    SplitAttention,
    SqueezeExcite,
    make_plan,
)
from .presets import get_spec
from .spec import ResNetSpec

_BOX_W, _BOX_H, _GAP = 230, 26, 12
_FILL = {"conv": "#dbe9f6", "norm": "#fde9c8", "act": "#e2f2df", "pool": "#eadcf2", "attn": "#f8d7da",
         "io": "#eeeeee", "stage": "#cfe0f1"}


def _box(x: float, y: float, text: str, kind: str, w: float = _BOX_W) -> str:
    return (f'<rect x="{x:.0f}" y="{y:.0f}" width="{w:.0f}" height="{_BOX_H}" rx="5" fill="{_FILL[kind]}" '
            f'stroke="#555"/><text x="{x + w / 2:.0f}" y="{y + _BOX_H / 2 + 4:.0f}" text-anchor="middle">'
            f"{escape(text)}</text>")


def _arrow(x1: float, y1: float, x2: float, y2: float) -> str:
    return f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" stroke="#555" marker-end="url(#a)"/>'


def _unit_boxes(unit: ConvNorm | Mixer) -> list[tuple[str, str]]:
    if isinstance(unit, Mixer):  # a block type's own operator draws its own boxes (or one named box)
        boxes = getattr(unit, "diagram_boxes", None)
        return list(boxes()) if boxes is not None else [(type(unit).__name__, "conv")]
    c = unit.conv
    text = f"{c.kernel_size}x{c.kernel_size} conv, {c.out_channels}"
    if c.stride > 1:
        text += f", /{c.stride}"
    if c.groups > 1:
        text += f", groups {c.groups}"
    if c.dilation > 1:
        text += f", dilation {c.dilation}"
    boxes = [(text, "conv")]
    if unit.norm is not None:
        boxes.append(("batch norm", "norm"))
    if unit.relu:
        boxes.append(("ReLU", "act"))
    if unit.pool is not None:  # anti-aliasing, or ResNeSt's avd pool before its split attention
        role = "avd" if unit.pool.name.endswith(".avd_first") else "anti-aliasing"
        boxes.append((_pool_text(unit.pool) + f" ({role})", "pool"))
    return boxes


def _mixer_boxes(mixer: Mixer) -> list[tuple[str, str]]:
    """A block type's own operator (a plan Mixer): its convs, then what it computes, box by box."""
    if isinstance(mixer, Res2NetScales):
        return _res2net_boxes(mixer)
    if not isinstance(mixer, SplitAttention):  # the others draw their own boxes (diagram_boxes)
        return _unit_boxes(mixer)
    boxes = _unit_boxes(ConvNorm(mixer.conv, mixer.bn0, True))
    r, attn = mixer.radix, mixer.fc1.out_channels
    summed = f"sum of {r} splits, " if r > 1 else ""
    boxes.append((f"{summed}avg pool, fc {mixer.width}-{attn}-{mixer.conv.out_channels}", "attn"))
    gate = f"softmax over radix {r}" if r > 1 else "sigmoid gate"
    groups = f" per group ({mixer.groups})" if mixer.groups > 1 else ""
    boxes.append((f"{gate}{groups}, weighted {'sum' if r > 1 else 'product'}", "attn"))
    if mixer.pool is not None:
        boxes.append((_pool_text(mixer.pool) + " (avd)", "pool"))
    return boxes


def _res2net_boxes(mixer: Res2NetScales) -> list[tuple[str, str]]:
    """Res2Net: the split, its split convs (a cascade, or each split on its own in a first block), the last split
    passed (pooled in a first block), the concatenation."""
    c = mixer.convs[0]
    conv = f"{len(mixer.convs)} x 3x3 conv, {mixer.width}" + (f", /{c.stride}" if c.stride > 1 else "") + \
        (f", groups {c.groups}" if c.groups > 1 else "") + (f", dilation {c.dilation}" if c.dilation > 1 else "")
    boxes = [(f"split into {mixer.scale} x {mixer.width} channels", "io"),
             (conv + (" (each split alone)" if mixer.first else " (cascade: + previous output)"), "conv"),
             ("batch norm, ReLU (per split)", "norm")]
    if mixer.scale > 1:
        boxes.append((f"last split: {_pool_text(mixer.pool)}, padded" if mixer.pool is not None
                      else "last split passes", "pool" if mixer.pool is not None else "io"))
        boxes.append((f"concatenate, {mixer.scale * mixer.width}", "io"))
    return boxes


def _unit_signature(unit: ConvNorm | Mixer) -> tuple:
    if isinstance(unit, Mixer):  # a Mixer draws by its class and parameters, not its widths
        return (*_mixer_signature(unit), getattr(unit, "radix", None), getattr(unit, "groups", 1) > 1,
                getattr(unit, "pool", None) is not None,
                tuple(getattr(m, "stride", 1) > 1 for m in unit.modules()))
    return unit.conv.kernel_size, unit.conv.stride > 1, unit.conv.groups > 1, unit.norm is not None, unit.relu, \
        unit.pool is not None


def _pool_text(pool: AvgPool | MaxPool | BlurPool) -> str:
    if isinstance(pool, BlurPool):
        return f"{pool.filter_size}x{pool.filter_size} blur pool ({pool.pad_mode}), /{pool.stride}"
    kind = "max" if isinstance(pool, MaxPool) else "avg"
    return f"{pool.kernel_size}x{pool.kernel_size} {kind} pool, /{pool.stride}"


def _mixer_signature(mixer: Mixer) -> tuple:
    """A mixer's class, its modules' kernels (norms' kinds) and its flags (Res2Net's ``first``): no widths."""
    return (type(mixer).__name__, tuple(getattr(m, "kernel_size", None) or getattr(m, "kind", None)
                                        for m in mixer.modules()),
            tuple(v for v in vars(mixer).values() if isinstance(v, bool)))


def block_signature(block: Block) -> tuple:
    """What makes two blocks draw the same: everything but names, widths and position."""
    return (tuple(_unit_signature(u) for u in block.main),
            None if block.shortcut is None else (block.shortcut.conv.stride > 1, block.shortcut.norm is not None),
            None if block.shortcut_pool is None else type(block.shortcut_pool).__name__,
            block.attention is not None, block.pre_norm is not None, block.shortcut_preact, block.relu_out)


def _block_svg(block: Block, x: float, y: float) -> tuple[list[str], float]:
    """Main path down the left, shortcut down the right, then the addition."""
    out = [f'<text x="{x:.0f}" y="{y - 6:.0f}" font-weight="bold">block {escape(block.name)} '
           f"({block.in_channels} -> {block.out_channels}, stride {block.stride})</text>"]
    main: list[tuple[str, str]] = []
    if block.pre_norm is not None:
        main += [("batch norm (pre-activation)", "norm"), ("ReLU", "act")]
    for unit in block.main:
        main += _mixer_boxes(unit) if isinstance(unit, Mixer) else _unit_boxes(unit)
    if isinstance(block.attention, SqueezeExcite):
        att = block.attention
        main.append((f"squeeze-excite {att.fc1.in_channels}-{att.fc1.out_channels}", "attn"))
    elif block.attention is not None:
        main.append((f"efficient channel attention, k={block.attention.conv.kernel_size}", "attn"))
    short: list[tuple[str, str]] = []
    if block.shortcut_pool is not None:
        short.append((_pool_text(block.shortcut_pool), "pool"))
    if block.shortcut is not None:
        short += _unit_boxes(block.shortcut)
    if not short:
        short.append(("identity", "io"))
    sx = x + _BOX_W + 40
    top = y
    for i, (text, kind) in enumerate(main):
        out.append(_box(x, y + i * (_BOX_H + _GAP), text, kind))
        if i:
            out.append(_arrow(x + _BOX_W / 2, y + i * (_BOX_H + _GAP) - _GAP, x + _BOX_W / 2, y + i * (_BOX_H + _GAP)))
    tap = "pre-activated input" if block.shortcut_preact else "block input"
    out.append(f'<text x="{sx:.0f}" y="{top - 6 + 14:.0f}" font-size="10">from the {tap}</text>')
    for i, (text, kind) in enumerate(short):
        sy = top + 18 + i * (_BOX_H + _GAP)
        out.append(_box(sx, sy, text, kind))
        if i:
            out.append(_arrow(sx + _BOX_W / 2, sy - _GAP, sx + _BOX_W / 2, sy))
    bottom = y + max(len(main), len(short) + 1) * (_BOX_H + _GAP)
    add_x = x + _BOX_W + 20
    out.append(f'<circle cx="{add_x:.0f}" cy="{bottom + 10:.0f}" r="10" fill="#fff" stroke="#555"/>'
               f'<text x="{add_x:.0f}" y="{bottom + 15:.0f}" text-anchor="middle">+</text>')
    out.append(_arrow(x + _BOX_W / 2, y + len(main) * (_BOX_H + _GAP) - _GAP, add_x - 10, bottom + 10))
    out.append(_arrow(sx + _BOX_W / 2, top + 18 + len(short) * (_BOX_H + _GAP) - _GAP, add_x + 10, bottom + 10))
    end = bottom + 24
    if block.relu_out:
        out.append(_arrow(add_x, bottom + 20, add_x, end + 6))
        out.append(_box(add_x - 50, end + 6, "ReLU", "act", w=100))
        end += _BOX_H + 10
    return out, end + 36


def svg(spec: str | ResNetSpec | Plan, input_size: int = 224) -> str:
    """The SVG text for ``spec`` (a preset name, a spec or a plan)."""
    plan = spec if isinstance(spec, Plan) else make_plan(get_spec(spec))
    sizes = plan.module_sizes(input_size, input_size)
    parts: list[str] = []
    x, y = 20, 50
    net: list[tuple[str, str]] = [(f"input {input_size}x{input_size}x{plan.spec.in_channels}", "io")]
    for unit in plan.stem.units:
        net += _unit_boxes(unit)
    for pool in (plan.stem.pool, plan.stem.blur):
        if pool is not None:
            net.append((_pool_text(pool), "pool"))
    for stage in range(1, plan.num_stages + 1):
        blocks = plan.stage_blocks(stage)
        end = blocks[-1].main[-1]
        h, w = sizes[end.conv.name if isinstance(end, ConvNorm) else end.name]  # a Mixer's size is by its name
        net.append((f"conv{stage + 1}_x: {len(blocks)} blocks, {blocks[-1].out_channels}, {h}x{w}", "stage"))
    if plan.head.norm is not None:
        net += [("final batch norm", "norm"), ("ReLU", "act")]
    if plan.head.pool is not None:
        net.append((f"global {plan.head.pool} pool", "pool"))
    if plan.head.fc is not None:
        net.append((f"fc {plan.head.fc.in_features} -> {plan.head.fc.out_features} (logits)", "io"))
    for i, (text, kind) in enumerate(net):
        parts.append(_box(x, y + i * (_BOX_H + _GAP), text, kind, w=280))
        if i:
            parts.append(_arrow(x + 140, y + i * (_BOX_H + _GAP) - _GAP, x + 140, y + i * (_BOX_H + _GAP)))
    height: float = y + len(net) * (_BOX_H + _GAP)
    by: float
    bx, by = 360, 70
    seen: set[tuple] = set()
    for block in plan.blocks:
        signature = block_signature(block)
        if signature in seen:
            continue
        seen.add(signature)
        drawn, by = _block_svg(block, bx, by)
        parts += drawn
    height = max(height, by) + 20
    width = bx + 2 * _BOX_W + 60
    types = "/".join(plan.spec.block_types) if plan.spec.block_types else plan.spec.block  # one type per stage
    title = escape(f"{plan.spec.name}: {types} blocks, layers {'-'.join(map(str, plan.spec.layers))}")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:.0f}" '
            f'font-family="sans-serif" font-size="12">'
            '<defs><marker id="a" markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto">'
            '<path d="M0,0 L8,4 L0,8 z" fill="#555"/></marker></defs>'
            f'<rect width="100%" height="100%" fill="#fff"/><text x="20" y="24" font-size="15" font-weight="bold">'
            f"{title}</text>" + "".join(parts) + "</svg>\n")


def write_svg(spec: str | ResNetSpec | Plan, path: str | os.PathLike, input_size: int = 224) -> None:
    """Write :func:`svg` to ``path`` atomically (a drawing is derived, so an existing one is replaced)."""
    from pathlib import Path

    from .io.atomic import atomic_output

    text = svg(spec, input_size)
    with atomic_output(Path(path), overwrite=True, suffix=".svg") as tmp:
        tmp.write_text(text, encoding="utf-8")
