"""PyTorch modules of the block types' own operators (plan ``Mixer`` entries), one per plan class."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from resnet_core.plan import Mixer, SelectiveKernelConv, SplitAttention

from .torch_resnest import SplitAttentionModule
from .torch_sknet import SelectiveKernelModule

# plan Mixer class -> the nn.Module compiling it; its state_dict keys, prefixed by the mixer's name, are canonical.
MIXERS: dict[type[Mixer], Callable[[Mixer], nn.Module]] = {
    SplitAttention: SplitAttentionModule,  # type: ignore[dict-item]
    SelectiveKernelConv: SelectiveKernelModule,  # type: ignore[dict-item]
}

# plan Mixer class named after its block (its modules are the block's own children, as Res2Net's convs/bns) -> the
# TorchBlock subclass whose ``mix`` runs it; MIXERS gives the children, which the adapter adds to the block. Such
# block types register themselves (torch_res2net), since their block class builds on torch_blocks, which uses us.
FLAT_BLOCKS: dict[type[Mixer], Callable[[], type[nn.Module]]] = {}


def mixer_module(mixer: Mixer) -> nn.Module:
    build = MIXERS.get(type(mixer))
    if build is None:  # pragma: no cover - every plan Mixer class has its module
        raise RuntimeError(f"No PyTorch module for the plan entry {type(mixer).__name__} ({mixer.name})")
    return build(mixer)


def flat_block_class(mixer: Mixer) -> type[nn.Module]:
    """The block class running ``mixer``, a mixer named after its block."""
    return FLAT_BLOCKS[type(mixer)]()
