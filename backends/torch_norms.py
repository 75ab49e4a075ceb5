"""PyTorch modules for the plan's weight-standardised convs and its fused norms (EvoNorm-S0, FRN-TLU).

Each forward is timm's, operation for operation (timm.layers.std_conv.StdConv2d, evo_norm.EvoNorm2dS0,
filter_response_norm.FilterResponseNormTlu2d), so a converted timm model is bit-identical; the tensor
names are timm's too (``weight``, ``bias``, ``v``, ``tau``).
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from resnet_core.plan import Conv, Norm


class StdConv2d(nn.Conv2d):
    """A conv whose kernel is standardised per output channel in every forward (biased variance, ``eps``)."""

    def __init__(self, c: Conv):
        super().__init__(c.in_channels, c.out_channels, c.kernel_size, stride=c.stride, padding=c.padding,
                         dilation=c.dilation, groups=c.groups, bias=c.bias)
        self.eps = cast(float, c.standardize_eps)  # only a standardised conv builds this module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None, training=True,
                              momentum=0.0, eps=self.eps).reshape_as(self.weight)
        return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class _Affine(nn.Module):
    def __init__(self, n: Norm, extra: str, init: float):
        super().__init__()
        self.eps = n.eps
        self.weight = nn.Parameter(torch.ones(n.channels))
        self.bias = nn.Parameter(torch.zeros(n.channels))
        self.register_parameter(extra, nn.Parameter(torch.full((n.channels,), init)))

    @staticmethod
    def _view(p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return p.view(1, -1, 1, 1).to(x.dtype)


class EvoNormS0(_Affine):
    """``x * sigmoid(v * x) / group_std(x) * weight + bias``; the std is over each group's channels and
    all pixels (biased), computed in float32 with ``eps`` added to the variance."""

    def __init__(self, n: Norm):
        super().__init__(n, "v", 1.0)
        self.groups = n.groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        grouped = x.reshape(b, self.groups, c // self.groups, h, w)
        std = grouped.float().var(dim=(2, 3, 4), unbiased=False, keepdim=True).add(self.eps).sqrt().to(x.dtype)
        std = std.expand(grouped.shape).reshape(b, c, h, w)
        x = x * (x * self._view(self.v, x)).sigmoid() / std
        return x * self._view(self.weight, x) + self._view(self.bias, x)


class FilterResponseNormTlu(_Affine):
    """``max(x * rsqrt(mean_hw(x^2) + eps) * weight + bias, tau)``, per sample and channel."""

    def __init__(self, n: Norm):
        super().__init__(n, "tau", 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inv_rms = x.square().float().mean(dim=(2, 3), keepdim=True).add(self.eps).rsqrt().to(x.dtype)
        x = x * inv_rms.expand(x.shape)
        x = x * self._view(self.weight, x) + self._view(self.bias, x)
        return torch.maximum(x, self._view(self.tau, x))


def norm_module(n: Norm) -> nn.Module:
    """The module of a plan norm, by kind."""
    if n.kind == "group":
        return nn.GroupNorm(n.groups, n.channels, eps=n.eps)
    if n.kind == "evo_s0":
        return EvoNormS0(n)
    if n.kind == "frn":
        return FilterResponseNormTlu(n)
    return nn.BatchNorm2d(n.channels, eps=n.eps, momentum=n.momentum)


def conv_module(c: Conv) -> nn.Conv2d:
    if c.standardize_eps is not None:
        return StdConv2d(c)
    return nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, stride=c.stride, padding=c.padding,
                     dilation=c.dilation, groups=c.groups, bias=c.bias)
