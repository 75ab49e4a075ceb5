"""PyTorch modules of SKNet's selective-kernel conv (a plan ``SelectiveKernelConv``): timm's SelectiveKernel and
SelectiveKernelAttn with the same state_dict keys and the same operations in the same order, so the logits are
bit-identical to timm's."""

from __future__ import annotations

import torch
from torch import nn

from resnet_core.plan import ConvNorm, SelectiveKernelConv

from .torch_norms import conv_module, norm_module


class SelectiveKernelPath(nn.Module):
    """One path: conv, batch norm, ReLU (timm's ConvNormAct; keys ``conv.*``, ``bn.*``)."""

    def __init__(self, unit: ConvNorm):
        super().__init__()
        if unit.norm is None or unit.pool is not None:  # pragma: no cover - the plan builds none of these
            raise RuntimeError(f"{unit.conv.name}: a selective-kernel path is conv, norm, ReLU")
        self.conv, self.bn = conv_module(unit.conv), norm_module(unit.norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu_(self.bn(self.conv(x)))


class SelectiveKernelAttnModule(nn.Module):
    """timm's SelectiveKernelAttn: softmax over the paths of fc_select(relu(bn(fc_reduce(mean(sum of paths)))))."""

    def __init__(self, mixer: SelectiveKernelConv):
        super().__init__()
        self.num_paths = len(mixer.paths)
        self.fc_reduce, self.bn, self.fc_select = (conv_module(mixer.fc_reduce), norm_module(mixer.attn_norm),
                                                   conv_module(mixer.fc_select))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.sum(1).mean((2, 3), keepdim=True)
        x = torch.relu_(self.bn(self.fc_reduce(x)))
        x = self.fc_select(x)
        b, c, h, w = x.shape
        return torch.softmax(x.view(b, self.num_paths, c // self.num_paths, h, w), dim=1)


class SelectiveKernelModule(nn.Module):
    """timm's SelectiveKernel: the paths (each on its share of the channels with split_input), stacked, weighed
    by the attention and summed over the paths."""

    def __init__(self, mixer: SelectiveKernelConv):
        super().__init__()
        self.paths = nn.ModuleList([SelectiveKernelPath(unit) for unit in mixer.paths])
        self.attn = SelectiveKernelAttnModule(mixer)
        self.split_input = mixer.split_input
        self.share = mixer.in_channels // len(mixer.paths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs: list[torch.Tensor] = []
        if self.split_input:
            parts = torch.split(x, self.share, 1)
            for i, path in enumerate(self.paths):
                outs.append(path(parts[i]))
        else:
            for path in self.paths:
                outs.append(path(x))
        x = torch.stack(outs, dim=1)
        x = x * self.attn(x)
        return torch.sum(x, dim=1)
