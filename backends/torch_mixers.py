"""PyTorch modules of the block types' own operators (plan ``Mixer`` entries), one per plan class."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from resnet_core.plan import Mixer, SelectiveKernelConv

from .torch_sknet import SelectiveKernelModule

# plan Mixer class -> the nn.Module compiling it; its state_dict keys, prefixed by the mixer's name, are canonical.
MIXERS: dict[type[Mixer], Callable[[Mixer], nn.Module]] = {
    SelectiveKernelConv: SelectiveKernelModule,  # type: ignore[dict-item]
}


def mixer_module(mixer: Mixer) -> nn.Module:
    build = MIXERS.get(type(mixer))
    if build is None:  # pragma: no cover - every plan Mixer class has its module
        raise RuntimeError(f"No PyTorch module for the plan entry {type(mixer).__name__} ({mixer.name})")
    return build(mixer)
