"""PyTorch adapter: plan entries -> ``torch.nn`` modules whose state_dict is torchvision's, key for key."""

from __future__ import annotations

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
    Norm,
    Plan,
    SqueezeExcite,
    binomial_filter,
)
from resnet_core.spec import ResNetSpec

from .torch_norms import conv_module as _conv
from .torch_norms import norm_module as _norm


def _place(root: nn.Module, path: str, module: nn.Module) -> None:
    """Attach ``module`` at dotted ``path`` below ``root``, creating plain containers on the way."""
    *parents, leaf = path.split(".")
    for part in parents:
        if not hasattr(root, part):
            root.add_module(part, nn.Module())
        root = getattr(root, part)
    root.add_module(leaf, module)


def _relative(name: str, prefix: str) -> str:
    return name[len(prefix) + 1:] if prefix else name


def _build_norm(root: nn.Module, prefix: str, n: Norm | None) -> nn.Module | None:
    if n is None:
        return None
    norm = _norm(n)
    norm.fused_act = n.fused_act  # the plan's rule, read by _preact: the norm computes its own nonlinearity
    _place(root, _relative(n.name, prefix), norm)
    return norm


Units = list[tuple[nn.Module, nn.Module | None, bool, nn.Module | None]]


def _build_pool(root: nn.Module, prefix: str, pool: AvgPool | MaxPool | BlurPool | None) -> nn.Module | None:
    if pool is None:
        return None
    module = BlurPoolModule(pool) if isinstance(pool, BlurPool) else Pool(pool)
    _place(root, _relative(pool.name, prefix), module)
    return module


def _build_units(root: nn.Module, prefix: str, units: tuple[ConvNorm, ...]) -> Units:
    out = []
    for unit in units:
        conv = _conv(unit.conv)
        _place(root, _relative(unit.conv.name, prefix), conv)
        relu = unit.act == "relu"  # the plan's ConvNorm.act: a fused norm (EvoNorm, FRN) needs no separate ReLU
        out.append((conv, _build_norm(root, prefix, unit.norm), relu, _build_pool(root, prefix, unit.pool)))
    return out


def _run(units: Units, x: torch.Tensor) -> torch.Tensor:
    """In-place ReLU and residual add, as torchvision's blocks do: they act on tensors made here, whose
    backward needs only the op inputs, and spare an allocation per op (about 2% of fp32 latency)."""
    for conv, norm, relu, pool in units:
        x = conv(x)
        if norm is not None:
            x = norm(x)
        if relu:
            x = torch.relu_(x)
        if pool is not None:
            x = pool(x)
    return x


def _preact(norm: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    if norm is None:
        return x
    return norm(x) if getattr(norm, "fused_act", False) else torch.relu_(norm(x))


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
        self.stride, self.padding = blur.stride, (blur.padding,) * 4
        self.mode = "reflect" if blur.pad_mode == "reflect" else "constant"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, self.padding, mode=self.mode)
        return F.conv2d(x, self.filt.to(x.dtype), stride=self.stride, groups=x.shape[1])


class Pool(nn.Module):
    """A plan pooling entry with its exact edge rule: shortcut average pools (ceil / same), the 1x1
    subsampling max-pool of stride_block="last", and the stem max-pool padded with -inf or zeros."""

    def __init__(self, pool: AvgPool | MaxPool):
        super().__init__()
        self.kernel_size, self.stride = pool.kernel_size, pool.stride
        self.mode = "max" if isinstance(pool, MaxPool) else pool.mode
        self.padding = pool.padding if isinstance(pool, MaxPool) else 0
        self.value = pool.pad_value if isinstance(pool, MaxPool) else 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "max":
            if self.padding and self.value != -float("inf"):  # F.max_pool2d pads with -inf only
                x = F.pad(x, (self.padding,) * 4, value=self.value)
                return F.max_pool2d(x, self.kernel_size, self.stride)
            return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)
        if self.mode == "floor":
            return F.avg_pool2d(x, self.kernel_size, self.stride)
        if self.mode == "same":  # zero padding after each edge, counted in the mean
            pad = self.kernel_size - 1
            return F.avg_pool2d(F.pad(x, (0, pad, 0, pad)), self.kernel_size, self.stride)
        return F.avg_pool2d(x, self.kernel_size, self.stride, ceil_mode=True, count_include_pad=False)


class TorchBlock(nn.Module):
    def __init__(self, block: Block):
        super().__init__()
        self.__dict__["_pre"] = _build_norm(self, block.name, block.pre_norm)  # placed once, by name
        self._main = _build_units(self, block.name, block.main)
        # Placed once under its canonical name; the plain-attribute references below are not
        # registered again (nn.Module would otherwise add them to the state_dict a second time).
        attention = pool = None
        if block.attention is not None:
            attention = SqueezeExciteModule(block.attention) if isinstance(block.attention, SqueezeExcite) \
                else EfficientChannelAttentionModule(block.attention)
            _place(self, _relative(block.attention.name, block.name), attention)
        if block.shortcut_pool is not None:
            pool = Pool(block.shortcut_pool)
            _place(self, _relative(block.shortcut_pool.name, block.name), pool)
        self.__dict__["_attention"], self.__dict__["_pool"] = attention, pool
        self._shortcut = _build_units(self, block.name, (block.shortcut,)) if block.shortcut else None
        self._shortcut_preact, self._relu_out = block.shortcut_preact, block.relu_out
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = _preact(self._pre, x)
        identity = p if self._shortcut_preact else x
        if self._pool is not None:
            identity = self._pool(identity)
        if self._shortcut is not None:
            identity = _run(self._shortcut, identity)
        y = _run(self._main, p)
        if self._attention is not None:
            y = self._attention(y)
        y += identity
        return self.relu(y) if self._relu_out else y


class TorchResNet(nn.Module):
    """A ResNet compiled from a plan (kept as ``plan``); ``forward`` returns logits (or features without a top)."""

    def __init__(self, plan: Plan, initialise: bool = True):
        super().__init__()
        self.spec = plan.spec
        self.plan = plan
        self._stem = _build_units(self, "", plan.stem.units)
        self.relu = nn.ReLU(inplace=True)
        pool = plan.stem.pool
        pools = [_build_pool(self, "", plan.stem.blur)]
        if isinstance(pool, MaxPool) and pool.pad_value == -float("inf"):
            pools.insert(0, nn.MaxPool2d(pool.kernel_size, pool.stride, pool.padding))
            _place(self, pool.name, pools[0])
        else:
            pools.insert(0, _build_pool(self, "", pool))
        self.__dict__["_stem_pools"] = [p for p in pools if p is not None]  # placed once, by name
        for stage in range(1, plan.num_stages + 1):
            layer = nn.Sequential(*(TorchBlock(b) for b in plan.stage_blocks(stage)))
            self.add_module(f"layer{stage}", layer)
        self._stages = [getattr(self, f"layer{s}") for s in range(1, plan.num_stages + 1)]
        head = plan.head
        self.__dict__["_norm"] = _build_norm(self, "", head.norm)  # placed once, by name
        if head.pool is not None:
            self.avgpool = nn.AdaptiveAvgPool2d(1) if head.pool == "avg" else nn.AdaptiveMaxPool2d(1)
        if head.fc is not None:
            self.fc = nn.Linear(head.fc.in_features, head.fc.out_features)
        if initialise:
            _initialise(self, plan)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of every stage (C2..C5 for the standard four stages)."""
        x = self._run_stem(x)
        feats = []
        for stage in self._stages:
            x = stage(x)
            feats.append(x)
        return feats

    def _run_stem(self, x: torch.Tensor) -> torch.Tensor:
        x = _run(self._stem, x)
        for pool in self._stem_pools:
            x = pool(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._head(self.forward_features(x)[-1])

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        x = _preact(self._norm, x)
        if self.plan.head.pool is not None:
            x = torch.flatten(self.avgpool(x), 1)
        if self.plan.head.fc is not None:
            x = self.fc(x)
        return x

    def forward_taps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every tap of the plan (stem, each block, pool, logits), in network order."""
        taps = {}
        x = self._run_stem(x)
        taps["stem"] = x
        for block, module in zip(self.plan.blocks, (m for stage in self._stages for m in stage), strict=True):
            x = module(x)
            taps[block.name] = x
        if self._norm is not None:
            x = taps[cast(Norm, self.plan.head.norm).name] = _preact(self._norm, x)
        if self.plan.head.pool is not None:
            x = torch.flatten(self.avgpool(x), 1)
            taps["pool"] = x
        if self.plan.head.fc is not None:
            taps["logits"] = self.fc(x)
        return taps


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
