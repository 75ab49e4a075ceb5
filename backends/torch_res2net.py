"""PyTorch modules of Res2Net's scales (timm's Bottle2neck, plan entry :class:`Res2NetScales`).

timm keeps ``convs``, ``bns`` and ``pool`` as direct children of the block, next to ``conv1`` and ``conv3``; the
cascade interleaves them (split ``i``'s conv needs split ``i - 1``'s norm output), so one module must own both
lists and run them. That module is the block itself: :class:`Res2NetBlock` is a ``TorchBlock`` whose ``mix``
step runs the scales over its own children, so every state_dict key is canonical (``layer1.0.convs.0.weight``).
It registers itself in ``torch_mixers`` (the adapter imports it).
"""

from __future__ import annotations

import torch
from torch import nn

from resnet_core.plan import Block, Res2NetScales

from .torch_blocks import Pool, TorchBlock
from .torch_mixers import FLAT_BLOCKS, MIXERS
from .torch_norms import conv_module, norm_module


class HeldList(nn.ModuleList):
    """A list of modules its block's ``mix`` runs. A block child must be callable (TorchScript compiles the
    block's loop over its children for each of them), so the list is the identity; the block never calls it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Res2NetModules(nn.Module):
    """The modules of a :class:`Res2NetScales` entry in timm's order (``convs``, ``bns``, ``pool``); the torch
    adapter makes them children of the block (the mixer is named after its block)."""

    def __init__(self, mixer: Res2NetScales):
        super().__init__()
        self.convs = HeldList(conv_module(c) for c in mixer.convs)
        self.bns = HeldList(norm_module(n) for n in mixer.bns)
        if mixer.pool is not None:
            self.pool = Pool(mixer.pool)


class Res2NetBlock(TorchBlock):
    """A residual block whose main path holds Res2Net's scales: ``mix`` is timm's Bottle2neck forward between
    bn1's ReLU and conv3, operation for operation (so converted timm models are bit-identical)."""

    def __init__(self, block: Block):
        super().__init__(block)
        mixer = next(u for u in block.main if isinstance(u, Res2NetScales))
        self.width = mixer.width
        self.cascade = not mixer.first
        self.pass_last = mixer.scale > 1  # scale 1: one split, convolved
        self.act = not mixer.bns[0].fused_act  # a fused norm (EvoNorm, FRN) computes its activation itself

    def mix(self, y: torch.Tensor) -> torch.Tensor:
        splits = torch.split(y, self.width, 1)
        outs: list[torch.Tensor] = []
        sp = splits[0]
        i = 0
        for conv, bn in zip(self.convs, self.bns):  # noqa: B905 - TorchScript has no zip(strict=); equal lengths
            sp = sp + splits[i] if i > 0 and self.cascade else splits[i]
            sp = bn(conv(sp))
            if self.act:
                sp = torch.relu_(sp)
            outs.append(sp)
            i += 1
        if self.pass_last:
            last = splits[-1]
            if hasattr(self, "pool"):  # static under TorchScript: only a first block has the pool
                last = self.pool(last)
            outs.append(last)
        return torch.cat(outs, 1)


MIXERS[Res2NetScales] = Res2NetModules  # type: ignore[assignment]
FLAT_BLOCKS[Res2NetScales] = lambda: Res2NetBlock
