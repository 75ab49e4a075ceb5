"""What the Keras peers share: checks of Keras layers against plan entries (their tensors: name_tables.KERAS_KINDS)."""

from __future__ import annotations

from typing import Any

from ..plan import Conv, Norm
from ._common import keras_to_torch_momentum


def producer(tensor: Any) -> Any:
    return tensor._keras_history.operation


def padding(layer: Any) -> int | None:
    """Symmetric padding before ``layer`` (its own 'same', or a ZeroPadding2D feeding it); None if not symmetric."""
    cfg = layer.get_config()
    if cfg["padding"] == "same":
        k, s = cfg["pool_size" if "pool_size" in cfg else "kernel_size"], cfg["strides"]
        d = cfg.get("dilation_rate", (1, 1))
        if tuple(s) != (1, 1) or any((d_ * (k_ - 1)) % 2 for k_, d_ in zip(k, d, strict=True)):
            return None
        return d[0] * (k[0] - 1) // 2
    source = producer(layer.input)
    if type(source).__name__ != "ZeroPadding2D":
        return 0
    pads = {p for pair in source.get_config()["padding"] for p in pair}
    return pads.pop() if len(pads) == 1 else None


def check_conv(conv: Conv, layer: Any, where: str) -> list[str]:
    if layer is None:
        return [f"{where} is missing"]
    cfg = layer.get_config()
    want = dict(filters=conv.out_channels, kernel_size=(conv.kernel_size,) * 2, strides=(conv.stride,) * 2,
                dilation_rate=(conv.dilation,) * 2, groups=conv.groups, use_bias=conv.bias, padding=conv.padding,
                activation="linear", in_channels=conv.in_channels)
    have = dict(filters=cfg["filters"], kernel_size=tuple(cfg["kernel_size"]), strides=tuple(cfg["strides"]),
                dilation_rate=tuple(cfg["dilation_rate"]), groups=cfg["groups"], use_bias=cfg["use_bias"],
                padding=padding(layer), activation=cfg["activation"],
                in_channels=int(layer.kernel.shape[2]) * cfg["groups"])
    return [f"{where}.{k}={have[k]!r} (spec: {want[k]!r})" for k in want if have[k] != want[k]]


def check_norm(n: Norm, layer: Any, where: str) -> list[str]:
    if layer is None:
        return [f"{where} is missing"]
    faults = []
    if layer.epsilon != n.eps:
        faults.append(f"{where}.epsilon={layer.epsilon} (spec: {n.eps})")
    if keras_to_torch_momentum(layer.momentum) != n.momentum:
        faults.append(f"{where}.momentum={layer.momentum} (spec: 1 - {n.momentum})")
    if not (layer.center and layer.scale):
        faults.append(f"{where} has center={layer.center}, scale={layer.scale}")
    return faults
