"""The PyTorch pieces a block is made of: containers of canonical names, conv units, pools, attention, and the
residual block itself. Apart from the adapter so that block types with a block class of their own (Res2Net)
build on them without importing the adapter, which imports every block type."""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from resnet_core.plan import (
    AvgPool,
    Block,
    BlurPool,
    ConvNorm,
    EfficientChannelAttention,
    MaxPool,
    Mixer,
    Norm,
    SqueezeExcite,
    binomial_filter,
)

from .torch_drop import DropPath
from .torch_mixers import mixer_module
from .torch_norms import conv_module as _conv
from .torch_norms import norm_module as _norm


class Steps(nn.ModuleDict):
    """Children under their canonical names, run in order with a ReLU after those flagged: the plain
    containers of canonical names (timm's deep-stem ``conv1``, ``downsample``, ``maxpool``). Subclasses give
    each child a role ("main", "pre", "shortcut", "stage", "head", "pool", "fc", "skip": plain strings, which
    TorchScript reads from a list); it unrolls the loop over children, so no module is referenced twice."""

    def __init__(self) -> None:
        super().__init__()
        self.roles: list[str] = []
        self.relus: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i = 0
        for m in self.values():
            x = m(x)
            if self.relus[i]:
                x = torch.relu_(x)
            i += 1
        return x


def _place(root: Steps, path: str, module: nn.Module, role: str = "main", relu: bool = False) -> None:
    """Attach ``module`` at dotted ``path`` below ``root`` with the ReLU after it, creating Steps containers
    on the way; a child new to ``root`` takes ``role``."""
    *parents, leaf = path.split(".")
    level = root
    for depth, part in enumerate(parents):
        if part not in level:
            _add(level, part, Steps(), role if depth == 0 else "main", False)
        level = cast(Steps, level[part])
    _add(level, leaf, module, role if not parents else "main", relu)


def _add(level: Steps, name: str, module: nn.Module, role: str, relu: bool) -> None:
    level.add_module(name, module)
    level.roles.append(role)
    level.relus.append(relu)


def _relative(name: str, prefix: str) -> str:
    return name[len(prefix) + 1:] if prefix else name


def _fused(n: Norm | None) -> bool:
    """A fused norm (EvoNorm, FRN) computes the activation itself: no separate ReLU."""
    return n is not None and n.fused_act


def _build_pool(pool: AvgPool | MaxPool | BlurPool) -> nn.Module:
    return BlurPoolModule(pool) if isinstance(pool, BlurPool) else Pool(pool)


def _build_units(root: Steps, prefix: str, units: tuple[ConvNorm | Mixer, ...], role: str = "main") -> None:
    """Each unit's conv, norm, ReLU (after the last of the two) and pool, in that order; a block type's own
    operator (a plan ``Mixer``) as its module from :data:`torch_mixers.MIXERS`."""
    for unit in units:
        if isinstance(unit, Mixer):
            if unit.name == prefix:  # named after its block: its modules join the block, whose ``mix`` runs them
                for i, (name, child) in enumerate(mixer_module(unit).named_children()):
                    _add(root, name, child, "mixer" if i == 0 else "held", False)
                continue
            _place(root, _relative(unit.name, prefix), mixer_module(unit), role)
            continue
        relu = unit.act == "relu"  # the plan's rule: a fused norm (EvoNorm, FRN) needs no separate ReLU
        _place(root, _relative(unit.conv.name, prefix), _conv(unit.conv), role, relu and unit.norm is None)
        if unit.norm is not None:
            _place(root, _relative(unit.norm.name, prefix), _norm(unit.norm), role, relu)
        if unit.pool is not None:
            _place(root, _relative(unit.pool.name, prefix), _build_pool(unit.pool), role)


class SqueezeExciteModule(nn.Module):
    def __init__(self, se: SqueezeExcite):
        super().__init__()
        self.fc1, self.fc2 = _conv(se.fc1), _conv(se.fc2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(gate)


class EfficientChannelAttentionModule(nn.Module):
    """timm's EcaModule: a 1D conv across the pooled channels gates each channel."""

    def __init__(self, eca: EfficientChannelAttention):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, eca.conv.kernel_size, padding=eca.conv.padding, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.conv(x.mean((2, 3)).view(x.shape[0], 1, -1))
        return x * torch.sigmoid(gate).view(x.shape[0], -1, 1, 1)


class BlurPoolModule(nn.Module):
    """timm's BlurPool2d: pad (reflect or zeros), then a depthwise binomial filter at the plan's stride."""

    def __init__(self, blur: BlurPool):
        super().__init__()
        taps = torch.tensor(binomial_filter(blur.filter_size), dtype=torch.float32)
        kernel = (taps[:, None] * taps[None, :])[None, None].repeat(blur.channels, 1, 1, 1)
        self.register_buffer("filt", kernel, persistent=False)  # not a weight: the plan defines it
        self.stride, self.padding = blur.stride, [blur.padding] * 4
        self.mode = "reflect" if blur.pad_mode == "reflect" else "constant"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, self.padding, mode=self.mode)
        return F.conv2d(x, self.filt.to(x.dtype), stride=self.stride, groups=x.shape[1])


class Pool(nn.Module):
    """A plan pooling entry with its exact edge rule: shortcut average pools (ceil / same), ResNeSt's avd pools, the 1x1
    subsampling max-pool of stride_block="last", and the stem max-pool padded with -inf or zeros."""

    def __init__(self, pool: AvgPool | MaxPool):
        super().__init__()
        self.kernel_size, self.stride = pool.kernel_size, pool.stride
        self.mode = "max" if isinstance(pool, MaxPool) else pool.mode
        self.padding = pool.padding  # an AvgPool pads only in "pad" mode
        self.value = float(pool.pad_value) if isinstance(pool, MaxPool) else 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "max":
            if self.padding != 0 and self.value != -math.inf:  # F.max_pool2d pads with -inf only
                x = F.pad(x, [self.padding] * 4, value=self.value)
                return F.max_pool2d(x, self.kernel_size, self.stride)
            return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)
        if self.mode == "floor":
            return F.avg_pool2d(x, self.kernel_size, self.stride)
        if self.mode == "pad":  # symmetric zero padding, counted in the mean (nn.AvgPool2d(3, s, padding=1))
            return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding)
        if self.mode == "same":  # zero padding after each edge, counted in the mean
            pad = self.kernel_size - 1
            return F.avg_pool2d(F.pad(x, [0, pad, 0, pad]), self.kernel_size, self.stride)
        return F.avg_pool2d(x, self.kernel_size, self.stride, ceil_mode=True, count_include_pad=False)


class TorchBlock(Steps):
    """A residual block: its children under their canonical names, each with its role (pre-norm, main path,
    shortcut); the main path and the shortcut meet in an in-place add, as torchvision's blocks do (they act on
    tensors made here, whose backward needs only the op inputs, and spare an allocation per op)."""

    def __init__(self, block: Block):
        super().__init__()
        if block.pre_norm is not None:
            _place(self, _relative(block.pre_norm.name, block.name), _norm(block.pre_norm), "pre",
                   not _fused(block.pre_norm))
        _build_units(self, block.name, block.main)
        if block.attention is not None:
            attention = SqueezeExciteModule(block.attention) if isinstance(block.attention, SqueezeExcite) \
                else EfficientChannelAttentionModule(block.attention)
            _place(self, _relative(block.attention.name, block.name), attention)
        if block.drop_path:  # on the main branch, after its attention, before the add (timm's place and name)
            _place(self, "drop_path", DropPath(block.drop_path))
        if block.shortcut_pool is not None:
            _place(self, _relative(block.shortcut_pool.name, block.name), Pool(block.shortcut_pool), "shortcut")
        if block.shortcut is not None:
            _build_units(self, block.name, (block.shortcut,), "shortcut")
        self.shortcut_preact, self.relu_out = block.shortcut_preact, block.relu_out
        _place(self, "relu", nn.ReLU(inplace=True), "skip")  # torchvision's module; the forward calls relu_

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, y, identity = x, x, x
        i = 0
        for m in self.values():
            role, relu = self.roles[i], self.relus[i]
            if role == "pre":
                p = m(x)
                if relu:
                    p = torch.relu_(p)
                y = p
                if self.shortcut_preact:
                    identity = p
            elif role == "main":
                y = m(y)
                if relu:
                    y = torch.relu_(y)
            elif role == "shortcut":
                identity = m(identity)
            elif role == "mixer":  # a mixer named after the block runs over the block's own children
                y = self.mix(y)
            i += 1
        y += identity
        return torch.relu_(y) if self.relu_out else y

    def mix(self, y: torch.Tensor) -> torch.Tensor:
        """A block-level mixer (plan ``Mixer`` named after its block); subclasses in ``torch_mixers.FLAT_BLOCKS``."""
        return y
