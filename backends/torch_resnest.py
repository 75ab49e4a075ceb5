"""ResNeSt's split attention in PyTorch (timm's SplitAttn and RadixSoftmax), compiled from a plan
:class:`~resnet_core.plan.SplitAttention`: the same operations in the same order as timm's, so its outputs are
bit-identical, and its children (conv, bn0, fc1, bn1, fc2) hold timm's state_dict keys."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from resnet_core.plan import SplitAttention

from .torch_norms import conv_module, norm_module


class SplitAttentionModule(nn.Module):
    """relu(bn0(conv(x))) split into ``radix`` parts, gated per part by attention on their pooled sum; then the
    block's avd_last pool where the plan puts one (timm's ``avd_last``, which holds no tensors)."""

    def __init__(self, mixer: SplitAttention):
        super().__init__()
        self.radix, self.groups = mixer.radix, mixer.groups
        self.conv, self.bn0 = conv_module(mixer.conv), norm_module(mixer.bn0)
        self.fc1, self.bn1, self.fc2 = conv_module(mixer.fc1), norm_module(mixer.bn1), conv_module(mixer.fc2)
        pool = mixer.pool
        self.pool_stride = 0 if pool is None else pool.stride  # 0: no avd_last pool
        self.pool_size, self.pool_padding = (3, 1) if pool is None else (pool.kernel_size, pool.padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn0(self.conv(x)))
        batch, channels, height, width = x.shape
        if self.radix > 1:
            x = x.reshape((batch, self.radix, channels // self.radix, height, width))
            gap = x.sum(dim=1)
        else:
            gap = x
        gap = torch.relu(self.bn1(self.fc1(gap.mean((2, 3), keepdim=True))))
        attn = self.fc2(gap)
        if self.radix > 1:  # timm's RadixSoftmax: gates laid out (group, radix), softmax across the radix
            attn = F.softmax(attn.view(batch, self.groups, self.radix, -1).transpose(1, 2), dim=1)
            attn = attn.reshape(batch, -1).view(batch, -1, 1, 1)
            out = (x * attn.reshape((batch, self.radix, channels // self.radix, 1, 1))).sum(dim=1)
        else:
            out = x * torch.sigmoid(attn).view(batch, -1, 1, 1)
        out = out.contiguous()
        if self.pool_stride > 0:
            out = F.avg_pool2d(out, self.pool_size, self.pool_stride, self.pool_padding)
        return out
