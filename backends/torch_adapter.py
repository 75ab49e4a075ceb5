"""PyTorch adapter: plan entries -> ``torch.nn`` modules whose state_dict is torchvision's, key for key."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import cast

import numpy as np
import torch
from torch import nn

from resnet_core.arrays import to_numpy, to_torch
from resnet_core.mapping import check_weights
from resnet_core.plan import (
    Block,
    Dense,
    MaxPool,
    Mixer,
    Plan,
)
from resnet_core.spec import ResNetSpec

from . import torch_res2net  # noqa: F401 - registers Res2Net's block class in torch_mixers
from .torch_blocks import Steps, TorchBlock, _build_pool, _build_units, _fused, _place
from .torch_drop import head_dropout
from .torch_mixers import flat_block_class
from .torch_norms import norm_module as _norm

Taps = dict[str, torch.Tensor]


def _block_class(block: Block) -> type[nn.Module]:
    """TorchBlock, or the subclass running a mixer named after the block (``torch_mixers.FLAT_BLOCKS``)."""
    flat = [u for u in block.main if isinstance(u, Mixer) and u.name == block.name]
    return flat_block_class(flat[0]) if flat else TorchBlock


class Stage(nn.Sequential):
    """One stage's blocks (torchvision's ``layerN``), which can also report each block's output."""

    def __init__(self, blocks: tuple[Block, ...]):
        super().__init__(*(_block_class(b)(b) for b in blocks))
        self.names = [b.name for b in blocks]

    def forward_taps(self, x: torch.Tensor, taps: dict[str, torch.Tensor]) -> torch.Tensor:
        i = 0
        for block in self:
            x = block(x)
            taps[self.names[i]] = x
            i += 1
        return x


class TorchResNet(Steps):
    """A ResNet compiled from a plan; ``forward`` returns logits (or features without a top).

    Scripts with ``torch.jit.script`` (``forward``, ``forward_features`` and ``forward_taps``)."""

    def __init__(self, plan: Plan, initialise: bool = True):
        super().__init__()
        self.spec = plan.spec
        self.plan = plan
        stem = plan.stem
        _build_units(self, "", stem.units)
        _place(self, "relu", nn.ReLU(inplace=True), "skip")  # torchvision's module; the forward calls relu_
        pool = stem.pool
        if isinstance(pool, MaxPool) and pool.pad_value == -math.inf:
            _place(self, pool.name, nn.MaxPool2d(pool.kernel_size, pool.stride, pool.padding))
        elif pool is not None:
            _place(self, pool.name, _build_pool(pool))
        if stem.blur is not None:
            _place(self, stem.blur.name, _build_pool(stem.blur))
        for stage in range(1, plan.num_stages + 1):
            _place(self, f"layer{stage}", Stage(plan.stage_blocks(stage)), "stage")
        head = plan.head
        self.norm_tap = "norm"
        if head.norm is not None:
            self.norm_tap = head.norm.name
            _place(self, head.norm.name, _norm(head.norm), "head", not _fused(head.norm))
        if head.pool is not None:
            _place(self, "avgpool", nn.AdaptiveAvgPool2d(1) if head.pool == "avg" else nn.AdaptiveMaxPool2d(1),
                   "pool")
        if head.dropout:  # on the pooled features, before the classifier (timm's forward_head)
            _place(self, "drop", head_dropout(head.dropout))
        if head.fc is not None:
            _place(self, "fc", nn.Linear(head.fc.in_features, head.fc.out_features), "fc")
        if initialise:
            _initialise(self, plan)

    def _walk(self, x: torch.Tensor, record: bool) -> tuple[torch.Tensor, list[torch.Tensor], Taps]:
        """The output, every stage's output and (``record``) every tap of the plan, in network order."""
        features: list[torch.Tensor] = []
        taps: dict[str, torch.Tensor] = {}
        i = 0
        for m in self.values():
            role, relu = self.roles[i], self.relus[i]
            if role == "main":
                x = m(x)
                if relu:
                    x = torch.relu_(x)
            elif role == "stage":
                if record and len(features) == 0:
                    taps["stem"] = x
                if hasattr(m, "forward_taps") and record:  # static under TorchScript: only Stage has it
                    x = m.forward_taps(x, taps)
                else:
                    x = m(x)
                features.append(x)
            elif role == "head":
                x = m(x)
                if relu:
                    x = torch.relu_(x)
                if record:
                    taps[self.norm_tap] = x
            elif role == "pool":
                x = torch.flatten(m(x), 1)
                if record:
                    taps["pool"] = x
            elif role == "fc":
                x = m(x)
                if record:
                    taps["logits"] = x
            i += 1
        return x, features, taps

    @torch.jit.export
    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of every stage (C2..C5 for the standard four stages)."""
        return self._walk(x, False)[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._walk(x, False)[0]

    @torch.jit.export
    def forward_taps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every tap of the plan (stem, each block, the pre-activation norm, pool, logits), in network order."""
        return self._walk(x, True)[2]


@torch.no_grad()
def _initialise(model: nn.Module, plan: Plan) -> None:
    """Initialise every tensor the way its plan entry says (torchvision's scheme by default)."""
    state = model.state_dict(keep_vars=True)
    for p in plan.params:
        t = state[p.name]
        if p.init == "kaiming_normal_fan_out":
            nn.init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu")
        elif p.init == "zeros":
            t.zero_()
        elif p.init == "ones":
            t.fill_(1.0)
        elif p.init == "fan_in_uniform":  # nn.Conv1d's default (kaiming_uniform, a=sqrt(5))
            bound = 1.0 / np.sqrt(np.prod(p.shape[1:]))
            nn.init.uniform_(t, -bound, bound)
        elif p.init == "linear_uniform":
            bound = 1.0 / np.sqrt(cast(Dense, plan.head.fc).in_features)  # only a head's fc inits so
            nn.init.uniform_(t, -bound, bound)
        else:  # pragma: no cover - the plan only names the schemes above
            raise RuntimeError(f"Unknown init scheme {p.init!r} for {p.name}")


def build(plan: Plan, weights: Mapping[str, object] | None = None) -> TorchResNet:
    """The model of ``plan``. With canonical ``weights`` (loaded strictly) nothing is initialised at random:
    the modules are made on the meta device and the weights become their tensors (copies)."""
    if weights is None:
        return TorchResNet(plan)
    check_weights(plan, weights, strict=True)
    with torch.device("meta"):
        model = TorchResNet(plan, initialise=False)
    state = {}
    for name, empty in model.state_dict().items():
        if name.endswith(".num_batches_tracked") and name not in weights:  # training state, not a weight
            state[name] = torch.zeros((), dtype=empty.dtype)
        else:
            state[name] = _tensor(weights[name], empty.dtype)
    model.load_state_dict(state, strict=True, assign=True)
    return model


def _tensor(value: object, dtype: torch.dtype) -> torch.Tensor:
    """A new tensor of ``dtype`` holding ``value`` (never sharing the caller's memory)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to(device="cpu", dtype=dtype, copy=True)
    array = np.asarray(value)
    if array.dtype.kind != "f" or array.dtype.itemsize < 4:  # bfloat16 (ml_dtypes), float16: widen in numpy
        array = array.astype(np.float32)
    return torch.tensor(array).to(dtype)


def owns(model: object) -> bool:
    return isinstance(model, TorchResNet)


def spec_of(model: TorchResNet) -> ResNetSpec:
    return model.spec


def get_weights(model: TorchResNet) -> dict[str, np.ndarray]:
    state = model.state_dict()
    return {p.name: np.array(to_numpy(state[p.name])) for p in model.plan.params}


@torch.no_grad()
def set_weights(model: TorchResNet, weights: Mapping[str, object], strict: bool = True) -> list[str]:
    names = check_weights(model.plan, weights, strict=strict)
    state = model.state_dict(keep_vars=True)
    for name in names:
        target = state[name]
        target.copy_(to_torch(weights[name]).to(dtype=target.dtype))
    return names
