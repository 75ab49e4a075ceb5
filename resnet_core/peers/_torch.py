"""Helpers for peers written in PyTorch (torchvision, timm, transformers); imported only by their modules."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from ..arrays import to_numpy, to_torch
from ..name_tables import PeerError, Table
from ..plan import Conv, Norm, Plan
from ._common import check_units


def state_numpy(model: nn.Module) -> dict[str, np.ndarray]:
    """The model's state_dict as numpy arrays the caller owns, in the model's dtypes."""
    return {name: np.array(to_numpy(tensor)) for name, tensor in model.state_dict().items()}


@torch.no_grad()
def load_state(model: nn.Module, tensors: Mapping[str, np.ndarray], table: Table) -> None:
    """Copy ``tensors`` into ``model``; every tensor it has, except ignored ones, must be given."""
    state = model.state_dict(keep_vars=True)
    skipped = [n for n in state if n not in tensors and not any(p.parse(n) for p in table.ignored)]
    unknown = [n for n in tensors if n not in state]
    if skipped or unknown:
        raise PeerError(f"Exported tensors do not fit the peer model: not set {skipped[:10]}, unknown {unknown[:10]}")
    for name, value in tensors.items():
        target = state[name]
        target.copy_(to_torch(value).to(target.dtype))


def _pair(value: object) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def check_conv(conv: Conv, module: object, where: str, cls: type | None = None) -> list[str]:
    """A conv's fields against the plan's; ``cls`` is the exact class expected (Conv2d by default)."""
    cls = nn.Conv2d if cls is None else cls
    if module is None:
        return [f"{where} is missing"]
    if type(module) is not cls:
        return [f"{where} is {type(module).__name__}, expected {cls.__name__}"]
    m: nn.Conv2d = module
    want = dict(in_channels=conv.in_channels, out_channels=conv.out_channels, kernel_size=(conv.kernel_size,) * 2,
                stride=(conv.stride,) * 2, padding=(conv.padding,) * 2, dilation=(conv.dilation,) * 2,
                groups=conv.groups, bias=conv.bias, padding_mode="zeros")
    have = dict(in_channels=m.in_channels, out_channels=m.out_channels, kernel_size=_pair(m.kernel_size),
                stride=_pair(m.stride), padding=_pair(m.padding) if not isinstance(m.padding, str) else m.padding,
                dilation=_pair(m.dilation), groups=m.groups, bias=m.bias is not None, padding_mode=m.padding_mode)
    return [f"{where}.{k}={have[k]!r} (spec: {want[k]!r})" for k in want if have[k] != want[k]]


def check_norm(n: Norm, module: object, where: str, cls: type | None = None) -> list[str]:
    """A batch norm's fields against the plan's; ``cls`` is the exact class expected (BatchNorm2d by default)."""
    cls = nn.BatchNorm2d if cls is None else cls
    if module is None:
        return [f"{where} is missing"]
    if type(module) is not cls:
        return [f"{where} is {type(module).__name__}, expected {cls.__name__} (norm_layer)"]
    m: nn.BatchNorm2d = module
    faults = []
    if m.num_features != n.channels:
        faults.append(f"{where}.num_features={m.num_features} (spec: {n.channels})")
    if m.eps != n.eps:
        faults.append(f"{where}.eps={m.eps} (spec: {n.eps})")
    if m.momentum != n.momentum:
        faults.append(f"{where}.momentum={m.momentum} (spec: {n.momentum})")
    if not (m.affine and m.track_running_stats):
        faults.append(f"{where} has affine={m.affine}, track_running_stats={m.track_running_stats}")
    return faults


def _type_name(module: Any) -> str:
    """The class's full name; timm's pruned models rebuild the classifier as timm's Linear, the same F.linear."""
    return f"{type(module).__module__}.{type(module).__qualname__}"


def check_plan(plan: Plan, table: Table, model: nn.Module, conv: Callable = check_conv,
               norm: Callable = check_norm) -> list[str]:
    """Every conv, norm and the classifier of ``plan`` against the module the table maps it to."""
    modules = dict(model.named_modules())
    faults = check_units(plan, table, modules, conv, norm)
    if plan.head.fc is not None:
        fc, where = plan.head.fc, table.peer_module(plan.head.fc.name)
        m: Any = modules.get(where)  # any module, or None: the type test comes first
        linear = type(m) is nn.Linear or _type_name(m) == "timm.layers.linear.Linear"
        if not linear or (m.in_features, m.out_features) != (fc.in_features, fc.out_features):
            faults.append(f"{where} is {m!r}, expected Linear({fc.in_features}, {fc.out_features})")
        elif m.bias is None:
            faults.append(f"{where} has no bias")
    return faults


def check_maxpool(module: object, where: str) -> list[str]:
    m: nn.MaxPool2d = module
    if type(m) is not nn.MaxPool2d:
        return [f"{where} is {type(m).__name__}, expected MaxPool2d(3, 2, 1)"]
    got = (_pair(m.kernel_size), _pair(m.stride), _pair(m.padding), _pair(m.dilation), m.ceil_mode)
    if got != ((3, 3), (2, 2), (1, 1), (1, 1), False):
        return [f"{where} is {m!r}, expected MaxPool2d(kernel_size=3, stride=2, padding=1)"]
    return []


def check_relus(model: nn.Module, names: list[str]) -> list[str]:
    """Each named activation must be a plain ReLU (what ResNetSpec computes)."""
    modules = dict(model.named_modules())
    bad = sorted({type(modules[n]).__name__ for n in names if n in modules and type(modules[n]) is not nn.ReLU})
    return [f"activation {', '.join(bad)} (act_layer / hidden_act): ResNetSpec uses ReLU only"] if bad else []

