"""PyTorch adapter: plan entries -> ``torch.nn`` modules whose state_dict is torchvision's, key for key."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from resnet_core.arrays import to_numpy, to_torch
from resnet_core.mapping import check_weights
from resnet_core.plan import (
    AvgPool,
    Block,
    BlurPool,
    ConvNorm,
    Dense,
    EfficientChannelAttention,
    MaxPool,
    Mixer,
    Norm,
    Plan,
    SqueezeExcite,
    binomial_filter,
)
from resnet_core.spec import ResNetSpec

from .torch_drop import DropPath, head_dropout
from .torch_mixers import flat_block_class, mixer_module
from .torch_norms import conv_module as _conv
from .torch_norms import norm_module as _norm

Taps = dict[str, torch.Tensor]


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
