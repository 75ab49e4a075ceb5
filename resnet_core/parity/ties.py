"""Tie resolution for gradient parity: each engine's gradients against a float64 backward that follows
that engine's own activation pattern.

Why: a pre-ReLU value within rounding of 0 may land on either side in fp32, and so may the winner of a
max-pool window whose two largest values are that close. Either side is right, yet one flip switches a
whole unit's gradient on or off: about 1e-4 relative on the weights feeding it (resnet50 at 224), a
hundred times fp32 rounding. Bounding that effect would widen every bound by as much and hide real
errors of that size; following the engine's own choice removes it exactly. So each engine (torch
included) records its pattern in the very pass that computes its gradients: every ReLU's mask and every
max-pool's input. A float64 torch backward then takes the engine's side wherever the float64 value is
within TIE_BAND of the tie (relative to the largest |value| at that site) and its own side elsewhere:
a mask or winner changed by more than rounding is not a tie and still shows up as gradient error. What
remains between an engine's gradients and that float64 backward is its arithmetic error, judged in units
of torch's own (also tie-resolved).

The sites are named by the Keras layer that computes them (``keras_graph``): ReLU layers, max-pools of
more than one element and the global max-pool. The torch engine meets the same sites in the same order
(checked by count and shape), where a TorchFunctionMode sees every relu and max-pool call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..keras_graph import keras_graph
from ..plan import Plan

# How close to its tie a float64 value must be for an engine's side to count as rounding: the fp32
# activation tolerance (metrics.TOLERANCES), relative to the largest |value| at the site. An engine whose
# values are further off fails the output comparison anyway.
TIE_BAND = 1e-5
PATTERN = "pattern"  # saved arrays: <set>/pattern/<keras layer name>


@dataclass(frozen=True)
class Site:
    """A place where the forward pass makes a discrete choice: a ReLU mask or a max-pool's winners."""

    name: str  # the Keras layer computing it
    kind: str  # "relu", "maxpool" or "globalmax"


def pattern_sites(plan: Plan) -> list[Site]:
    """Every ReLU and max-pool site of ``plan``, in the order the forward pass meets them."""
    sites = []
    for layer in keras_graph(plan)[0]:
        if layer.cls == "ReLU":
            sites.append(Site(layer.name, "relu"))
        elif layer.cls == "MaxPooling2D" and layer.config["pool_size"] != 1:
            sites.append(Site(layer.name, "maxpool"))
        elif layer.cls == "GlobalMaxPooling2D":
            sites.append(Site(layer.name, "globalmax"))
    return sites


def keras_pattern_outputs(model: Any, plan: Plan) -> dict[str, Any]:
    """The Keras tensors to record: a ReLU's output (its mask is > 0), a max-pool's input."""
    out = {}
    for site in pattern_sites(plan):
        layer = model.get_layer(site.name)
        out[site.name] = layer.output if site.kind == "relu" else layer.input
    return out


def pattern_array(site_kind: str, value: np.ndarray) -> np.ndarray:
    """What is kept of a recorded site (NCHW): the mask of a ReLU, the fp32 input of a max-pool."""
    return value != 0 if site_kind == "relu" else value.astype(np.float32)


def _torch_sites() -> tuple[Any, Any]:
    import torch
    import torch.nn.functional as F

    return {torch.relu, torch.relu_, F.relu, torch.Tensor.relu, torch.Tensor.relu_}, \
        {F.max_pool2d, F.adaptive_max_pool2d}


def _pool_args(func: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    import torch.nn.functional as F

    names = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices") \
        if func is F.max_pool2d else ("input", "output_size", "return_indices")
    bound = dict(zip(names, args, strict=False))
    bound.update(kwargs)
    return bound


def _winners(func: Any, bound: dict[str, Any], x: Any) -> Any:
    """Indices (into each channel's flattened input) of each window's winner in ``x``."""
    import torch.nn.functional as F

    if func is F.max_pool2d:
        stride = bound.get("stride") or bound["kernel_size"]
        return F.max_pool2d_with_indices(x, bound["kernel_size"], stride, bound.get("padding", 0),
                                         bound.get("dilation", 1), ceil_mode=bound.get("ceil_mode", False),
                                         return_indices=True)[1]
    return F.adaptive_max_pool2d_with_indices(x, bound["output_size"], return_indices=True)[1]


def _is_trivial_pool(func: Any, bound: dict[str, Any]) -> bool:
    import torch.nn.functional as F

    return func is F.max_pool2d and bound["kernel_size"] in (1, (1, 1))


@contextmanager
def _sites_mode(handler: Any) -> Iterator[None]:
    """Route every relu and max-pool call of the torch forward through ``handler(kind, func, args, kwargs)``."""
    from torch.overrides import TorchFunctionMode

    relus, pools = _torch_sites()

    class Mode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func in relus:
                return handler("relu", func, args, kwargs)
            if func in pools and not _is_trivial_pool(func, _pool_args(func, args, kwargs)):
                return handler("pool", func, args, kwargs)
            return func(*args, **kwargs)

    with Mode():
        yield


class TorchRecorder:
    """Records the torch engine's own pattern while it computes its fp32 gradients (the same calls)."""

    def __init__(self, plan: Plan):
        self.sites = pattern_sites(plan)
        self.pattern: dict[str, np.ndarray] = {}

    @contextmanager
    def recording(self) -> Iterator[None]:
        self.pattern.clear()

        def handler(kind: str, func: Any, args: tuple, kwargs: dict) -> Any:
            site = self._next(kind, len(self.pattern))
            if kind == "pool":
                self.pattern[site.name] = pattern_array("pool", args[0].detach().float().cpu().numpy())
                return func(*args, **kwargs)
            out = func(*args, **kwargs)
            self.pattern[site.name] = pattern_array("relu", out.detach().cpu().numpy())
            return out

        with _sites_mode(handler):
            yield
        if len(self.pattern) != len(self.sites):
            raise RuntimeError(f"The torch forward met {len(self.pattern)} ReLU/max-pool sites; the plan has "
                               f"{len(self.sites)}")

    def _next(self, kind: str, index: int) -> Site:
        if index >= len(self.sites) or (self.sites[index].kind == "relu") != (kind == "relu"):
            raise RuntimeError(f"The torch forward's ReLU/max-pool site {index} ({kind}) does not match the plan's "
                               f"{self.sites[index] if index < len(self.sites) else 'end'}")
        return self.sites[index]


def _unpadded(recorded: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A Keras max-pool's input without the zero border Keras adds where torch pads inside the pool (after a
    ReLU, zeros and -inf pick the same maximum)."""
    pad_h, pad_w = recorded.shape[2] - shape[2], recorded.shape[3] - shape[3]
    if recorded.ndim == 4 and pad_h > 0 and pad_w > 0 and pad_h % 2 == 0 and pad_w % 2 == 0:
        return recorded[:, :, pad_h // 2: recorded.shape[2] - pad_h // 2, pad_w // 2: recorded.shape[3] - pad_w // 2]
    return recorded


def follow_pattern(plan: Plan, pattern: dict[str, np.ndarray]) -> tuple[Any, list[dict[str, Any]]]:
    """A context in which a (float64) torch forward takes ``pattern``'s side of every near-tie, and the
    list it fills: per site, how many ties it resolved against the float64 side and how close they were."""
    sites = pattern_sites(plan)
    ties: list[dict[str, Any]] = []
    index = [0]

    def handler(kind: str, func: Any, args: tuple, kwargs: dict) -> Any:
        import torch

        site = sites[index[0]]
        index[0] += 1
        recorded = pattern[site.name]
        x = args[0]
        if kind == "pool":
            recorded = _unpadded(recorded, tuple(x.shape))
        if tuple(recorded.shape) != tuple(x.shape):
            raise RuntimeError(f"Site {site.name}: the engine recorded shape {recorded.shape}, torch has "
                               f"{tuple(x.shape)}")
        scale = float(x.detach().abs().max()) if x.numel() else 0.0
        band = TIE_BAND * scale
        if kind == "relu":
            value = x.detach()
            near = value.abs() <= band
            engine = torch.from_numpy(recorded).to(x.device)
            flips = near & (engine != (value > 0))
            beyond = int(((~near) & (engine != (value > 0))).sum())
            mask = torch.where(near, engine, value > 0).to(x.dtype)
            closeness = value.abs()[flips] / scale if scale else value.abs()[flips]
            out = x * mask  # out of place: every caller uses the returned tensor
        else:
            bound = _pool_args(func, args, kwargs)
            own = _winners(func, bound, x.detach())
            theirs = _winners(func, bound, torch.from_numpy(recorded).to(x.device, x.dtype))
            flat = x.detach().flatten(2)
            best = flat.gather(2, own.flatten(2))
            near = (best - flat.gather(2, theirs.flatten(2))) <= band
            chosen = torch.where(near, theirs.flatten(2), own.flatten(2))
            flips = near & (theirs.flatten(2) != own.flatten(2))
            beyond = int(((~near) & (theirs.flatten(2) != own.flatten(2))).sum())
            gap = best - flat.gather(2, theirs.flatten(2))
            closeness = gap[flips] / scale if scale else gap[flips]
            out = x.flatten(2).gather(2, chosen).view(own.shape)
            if bound.get("return_indices"):
                out = (out, chosen.view(own.shape))
        count = int(flips.sum())
        if count or beyond:
            ties.append({"site": site.name, "kind": site.kind, "count": count, "beyond_band": beyond,
                         "min_rel": float(closeness.min()) if count else None,
                         "max_rel": float(closeness.max()) if count else None})
        return out

    @contextmanager
    def context() -> Iterator[None]:
        index[0] = 0
        ties.clear()
        with _sites_mode(handler):
            yield
        if index[0] != len(sites):
            raise RuntimeError(f"The torch forward met {index[0]} ReLU/max-pool sites; the plan has {len(sites)}")

    return context(), ties
