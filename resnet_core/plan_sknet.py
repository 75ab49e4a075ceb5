"""The plan of SKNet's blocks (timm's SelectiveKernelBasic / SelectiveKernelBottleneck): every structural
decision of a selective-kernel conv (its paths' kernels, dilations, paddings and input shares, its attention
widths) is made here, so both adapters only translate these entries.

Names are timm's: the selective-kernel conv ``conv1`` (basic) or ``conv2`` (bottleneck) holds
``paths.{i}.conv`` / ``paths.{i}.bn`` and ``attn.fc_reduce`` / ``attn.bn`` / ``attn.fc_select``; the plain
units are timm's ConvNormAct (``conv2.conv``, ``conv2.bn``; ``conv1.conv``, ``conv3.bn`` ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .spec_sknet import selective_kernel_paths, sk_attn_width

if TYPE_CHECKING:
    from .plan import Conv, ConvNorm, Norm
    from .spec import ResNetSpec
    from .spec_parts import SKBasic, SKBottleneck

from . import plan as _plan


@dataclass(frozen=True)
class SelectiveKernelConv(_plan.Mixer):
    """timm's SelectiveKernel: each path is conv, batch norm, ReLU (on its ``1/len(paths)`` share of the input
    channels with ``split_input``); ``attn`` weighs the paths per channel: the paths' sum, globally averaged,
    through ``fc_reduce`` (1x1, no bias), ``attn_norm``, ReLU, ``fc_select`` (1x1 to ``channels * paths``), a
    softmax over the paths; the output is the weighted sum of the paths."""

    paths: tuple[ConvNorm, ...]
    split_input: bool
    in_channels: int
    channels: int
    fc_reduce: Conv
    attn_norm: Norm
    fc_select: Conv

    @property
    def shape_text(self) -> str:
        """Table 1's block shape: each path's kernel (and dilation), the width, groups and split input."""
        paths = "+".join(f"{u.conv.kernel_size}x{u.conv.kernel_size}" + (f" d{u.conv.dilation}" if u.conv.dilation > 1
                                                                          else "") for u in self.paths)
        groups = f", C={self.paths[0].conv.groups}" if self.paths[0].conv.groups > 1 else ""
        return f"SK({paths}){', split' if self.split_input else ''}, {self.channels}{groups}"

    @property
    def signature(self) -> tuple:
        """What makes two selective kernels draw the same (the diagram's): all but names and widths."""
        return tuple((u.conv.kernel_size, u.conv.dilation, u.conv.stride > 1, u.conv.groups > 1) for u in self.paths), \
            self.split_input

    def diagram_boxes(self) -> list[tuple[str, str]]:
        """The block diagram's boxes: the paths, their norm and ReLU, the attention, the weighted sum."""
        first = self.paths[0].conv
        paths = " | ".join(f"{u.conv.kernel_size}x{u.conv.kernel_size}" + (f" dilation {u.conv.dilation}"
                                                                          if u.conv.dilation > 1 else "")
                           for u in self.paths)
        text = f"selective kernel: {paths} conv, {self.channels}" + (f", /{first.stride}" if first.stride > 1 else "")
        if first.groups > 1:
            text += f", groups {first.groups}"
        return [(text + (", split input" if self.split_input else ""), "conv"), ("batch norm, ReLU per path", "norm"),
                (f"attention: sum, mean, 1x1 {self.fc_reduce.out_channels}, BN, ReLU, 1x1 "
                 f"{self.fc_select.out_channels}, softmax over {len(self.paths)} paths", "attn"),
                ("weighted sum of the paths", "act")]

    def modules(self) -> list[Conv | _plan.ChannelConv | Norm]:
        """timm's state_dict order: each path's conv and norm, then the attention's reduce, norm, select."""
        out: list[Conv | _plan.ChannelConv | Norm] = []
        for path in self.paths:
            out += [m for m in (path.conv, path.norm) if m is not None]
        return [*out, self.fc_reduce, self.attn_norm, self.fc_select]

    def sizes(self, hw: tuple[int, int], sizes: dict[str, tuple[int, int]]) -> tuple[int, int]:
        outs = set()
        for path in self.paths:
            out = sizes[path.conv.name] = _plan._conv_size(hw, path.conv)
            if path.norm is not None:
                sizes[path.norm.name] = out
            outs.add(out)
        if len(outs) != 1:  # pragma: no cover - every path's padding keeps the same output size
            raise RuntimeError(f"{self.name}: its paths disagree on the output size {sorted(outs)}")
        for m in (self.fc_reduce, self.attn_norm, self.fc_select):
            sizes[m.name] = (1, 1)
        return outs.pop()


def selective_kernel(spec: ResNetSpec, name: str, block: SKBasic | SKBottleneck, cin: int, cout: int,
                     stride: int, dilation: int, groups: int) -> SelectiveKernelConv:
    """timm's SelectiveKernel(cin, cout, stride, dilation, groups, **sk_kwargs) at module path ``name``.

    Each path's padding is timm's get_padding (``((stride - 1) + dilation * (k - 1)) // 2``, symmetric), and
    its groups ``min(cout, groups)``, as timm's constructor computes them.
    """
    paths = selective_kernel_paths(block, dilation)
    share = cin // len(paths) if block.split_input else cin
    groups = min(cout, groups)
    units = []
    for i, (k, d) in enumerate(paths):
        unit = _plan._unit(spec, f"{name}.", f"paths.{i}.conv", f"paths.{i}.bn", share, cout, k, stride=stride,
                           groups=groups, dilation=d)
        padding = _plan.timm_padding(k, stride, d)
        if unit.conv.padding != padding:  # pragma: no cover - equal for odd kernels at stride 1 or 2
            raise RuntimeError(f"{unit.conv.name}: padding {unit.conv.padding}, timm's get_padding {padding}")
        units.append(unit)
    reduced = sk_attn_width(cout, block.rd_ratio, block.rd_divisor)
    return SelectiveKernelConv(
        name=name, paths=tuple(units), split_input=block.split_input, in_channels=cin, channels=cout,
        fc_reduce=_plan.Conv(f"{name}.attn.fc_reduce", cout, reduced, 1),
        attn_norm=_plan._norm(spec, f"{name}.attn.bn", reduced),
        fc_select=_plan.Conv(f"{name}.attn.fc_select", reduced, cout * len(paths), 1),
    )


def sk_main(spec: ResNetSpec, prefix: str, cin: int, block: SKBasic | SKBottleneck, widths: tuple[int, ...],
            stride: int, first_dilation: int, dilation: int) -> tuple[ConvNorm | _plan.Mixer, ...]:
    """A selective-kernel block's main path (timm's SelectiveKernelBasic / SelectiveKernelBottleneck)."""
    from .spec_parts import SKBottleneck

    zero = spec.zero_init_residual
    if not isinstance(block, SKBottleneck):
        first, cout = widths
        return (
            selective_kernel(spec, f"{prefix}conv1", block, cin, first, stride, first_dilation, 1),
            _plan._unit(spec, prefix, "conv2.conv", "conv2.bn", first, cout, 3, relu=False, zero_init=zero,
                        dilation=dilation),
        )
    first, width, cout = widths
    return (
        _plan._unit(spec, prefix, "conv1.conv", "conv1.bn", cin, first, 1),
        selective_kernel(spec, f"{prefix}conv2", block, first, width, stride, first_dilation, block.groups),
        _plan._unit(spec, prefix, "conv3.conv", "conv3.bn", width, cout, 1, relu=False, zero_init=zero),
    )
