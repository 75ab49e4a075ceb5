"""Fine-tuning overrides on pretrained canonical weights, in numpy, so every backend gets the same tensors.

``num_classes`` other than the source's keeps the backbone and leaves the head to the model's fresh
initialisation; ``include_top=False`` (or ``num_classes=0``) drops the head, with ``pooling``;
``in_channels`` adapts the stem kernel as timm's ``adapt_input_conv`` does, and the recorded input
normalisation with it (see :func:`adapt_normalisation`). ``drop_rate`` and ``drop_path_rate`` (training
regularisers, no weights) may be set on any pretrained model.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .drop_rates import DROP_FIELDS
from .errors import InputError
from .plan import make_plan
from .preprocess import NORMALISATIONS
from .spec import ResNetSpec
from .weights_info import WeightsInfo

logger = logging.getLogger("resnet_core")

FINE_TUNE_FIELDS = ("num_classes", "include_top", "pooling", "in_channels", *DROP_FIELDS)


def adapt_input_conv(kernel: np.ndarray, in_channels: int) -> np.ndarray:
    """The stem kernel (O, I, kh, kw) for ``in_channels`` inputs, by timm's rule.

    One channel: the sum over the input channels, so a gray image gives exactly what the original
    model gives on that image repeated on every channel. More: the RGB kernel repeated, cut to
    ``in_channels`` and scaled by 3 / in_channels, so the activations keep their scale.
    """
    out, have, kh, kw = kernel.shape
    if in_channels == have:
        return kernel
    dtype = kernel.dtype
    k = np.asarray(kernel, np.float32)
    if in_channels == 1:
        if have > 3:
            if have % 3:
                raise InputError(f"Cannot adapt a stem kernel of {have} input channels to 1 (not a multiple of 3)")
            k = k.reshape(out, have // 3, 3, kh, kw).sum(axis=2)
        else:
            k = k.sum(axis=1, keepdims=True)
    elif have == 3:
        repeat = math.ceil(in_channels / 3)
        k = np.tile(k, (1, repeat, 1, 1))[:, :in_channels] * np.float32(3 / float(in_channels))
    else:
        raise InputError(f"Cannot adapt a stem kernel of {have} input channels to {in_channels}: timm's rule "
                         "starts from 1 or 3")
    return k.astype(dtype)


def fine_tune(spec: ResNetSpec, weights: Mapping[str, np.ndarray], info: WeightsInfo | None = None,
              **overrides: Any) -> tuple[ResNetSpec, dict[str, np.ndarray], WeightsInfo | None]:
    """``spec``, ``weights`` and ``info`` changed by the fine-tuning ``overrides`` (see the module docstring);
    the returned weights lack the head when it is to be initialised afresh."""
    unknown = sorted(set(overrides) - set(FINE_TUNE_FIELDS))
    if unknown:
        spec.replace(**{k: overrides[k] for k in unknown})  # a name that is no field: SpecError with the closest
        raise InputError(f"With pretrained weights, only {FINE_TUNE_FIELDS} can be changed (the rest is the "
                         f"architecture of the weights). Received: {unknown}")
    changes = dict(overrides)
    if changes.get("num_classes") == 0 or changes.get("include_top") is False:
        changes.update(num_classes=0, include_top=False)
        changes.setdefault("pooling", "avg")
    elif changes.get("num_classes") and not spec.include_top:
        changes.update(include_top=True, pooling=None)
    new = spec.replace(**changes)
    plan, new_plan = make_plan(spec), make_plan(new)
    out = dict(weights)
    head = plan.head.fc
    if head is not None and (new_plan.head.fc is None or new_plan.head.fc.out_features != head.out_features):
        for suffix in (".weight", ".bias"):
            out.pop(head.name + suffix, None)
        if new_plan.head.fc is not None:
            logger.warning("resnet_core: the head (%s) is re-initialised for num_classes=%d; the pretrained "
                           "backbone is kept (the source has %d classes)", head.name, new.num_classes,
                           head.out_features)
        if info is not None:
            info = info.replace(class_names=None)
    if new.in_channels != spec.in_channels:
        stem = plan.stem.units[0].conv.name + ".weight"
        out[stem] = adapt_input_conv(np.asarray(out[stem]), new.in_channels)
        if info is not None:
            info = adapt_normalisation(info, new.in_channels)
    return new, out, info


def adapt_normalisation(info: WeightsInfo, in_channels: int) -> WeightsInfo:
    """``info`` for a stem adapted to ``in_channels`` by :func:`adapt_input_conv`.

    The normalisation follows the kernel: input channel i of a tiled kernel is the source's channel i % 3,
    so it takes that channel's mean and std; a single channel sees the sum of the three kernels, so it
    takes their average (exact when the three are equal; timm records no rule for it). "tf" scaling is
    the same on any channel count. "caffe" is restated as "torch" mean/std in the model's channel order
    (B, G, R, B, ...): a new channel count has no RGB to reverse.
    """
    size = None if info.input_size is None else (in_channels, *info.input_size[1:])
    if info.preprocessing == "tf":
        return info.replace(input_size=size)
    if info.preprocessing == "caffe":  # x - mean on [0, 255] is (x / 255 - mean / 255) / (1 / 255)
        caffe = NORMALISATIONS["caffe"].mean
        mean, std = tuple(m / 255.0 for m in caffe), (1 / 255.0,) * len(caffe)
    else:
        mean, std = info.normalisation
    if in_channels == len(mean):
        return info.replace(input_size=size)
    if in_channels == 1:
        mean, std = (sum(mean) / len(mean),), (sum(std) / len(std),)
    else:
        mean, std = tuple(mean[i % len(mean)] for i in range(in_channels)), tuple(
            std[i % len(std)] for i in range(in_channels))
    return info.replace(preprocessing="torch", mean=mean, std=std, input_size=size)
