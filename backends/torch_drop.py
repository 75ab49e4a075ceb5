"""The spec's training regularisers in PyTorch: stochastic depth (timm's DropPath) and the head's dropout.

Both are identities in eval mode and hold no weights, so state_dicts are unchanged; the rates are the plan's.
"""

from __future__ import annotations

import torch
from torch import nn


class DropPath(nn.Module):
    """Zeroes the whole residual branch of a sample with probability ``drop_prob`` in training, scaling the
    kept samples by ``1 / (1 - drop_prob)`` (timm.layers.DropPath with scale_by_keep, the same arithmetic:
    a Bernoulli mask divided by the keep probability, multiplied in)."""

    def __init__(self, drop_prob: float):
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty([x.shape[0]] + [1] * (x.dim() - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


def head_dropout(rate: float) -> nn.Dropout:
    """Dropout on the pooled features before the classifier (timm's ``F.dropout`` in ``forward_head``)."""
    return nn.Dropout(rate)
