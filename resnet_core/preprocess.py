"""Input normalisation that travels with the weights (their ``WeightsInfo``), in numpy only.

Weights are only right for inputs normalised as in training: torchvision/timm/transformers use
"torch" (RGB, [0, 1], ImageNet mean/std), keras.applications ResNet v1 "caffe" (BGR, [0, 255],
ImageNet mean subtracted), ResNetV2 "tf" ([-1, 1]). Each is computed in float32 in the same order
as the peer's own function, so results match torchvision's Normalize and Keras's preprocess_input
bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputError, InputTypeError
from .trained_with import info_of
from .weights_info import WeightsInfo


@dataclass(frozen=True)
class Normalisation:
    """``((x / divisor) - mean) / std`` per channel, after reversing channels when ``bgr``."""

    divisor: float
    mean: tuple[float, ...]  # in the channel order the model sees
    std: tuple[float, ...] | None
    bgr: bool

    def on_unit_range(self, channels: int = 3) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """The same map as ``(x - mean) / std`` on RGB in [0, 1] (timm's pretrained_cfg); None when BGR."""
        if self.bgr:
            return None
        scale = self.divisor / 255.0  # exact for the divisors used: 1.0 and 0.5

        def per_channel(values: tuple[float, ...]) -> tuple[float, ...]:
            return tuple(v * scale for v in (values * channels if len(values) == 1 else values))

        return per_channel(self.mean), per_channel(self.std or (1.0,))


NORMALISATIONS = {
    "torch": Normalisation(255.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), bgr=False),
    "caffe": Normalisation(1.0, (103.939, 116.779, 123.68), None, bgr=True),
    "tf": Normalisation(127.5, (1.0,), None, bgr=False),  # x / 127.5 - 1, on any number of channels
}
DATA_FORMATS = ("channels_last", "channels_first")


def normalisation_of(info: WeightsInfo) -> Normalisation:
    """The divisor, mean, std and channel order ``info`` stands for."""
    if info.preprocessing != "torch" or (info.mean is None and info.std is None):
        return NORMALISATIONS[info.preprocessing]
    mean, std = info.normalisation
    return Normalisation(255.0, mean, std, bgr=False)


def preprocess(images: Any, source: Any, data_format: str = "channels_last") -> np.ndarray:
    """Normalise ``images`` (uint8, or float in [0, 255]; one image or a batch) as the weights were trained.

    ``source`` is anything :func:`resnet_core.info_of` takes: a model built by resnet_core, a
    :class:`WeightsInfo`, ``read_weights``'s result, a weights file, a preset name or spec (the record
    its usual weights imply). Returns float32 in the same layout; the input is never modified.

    Args:
        images: One image ``(H, W, C)`` or a batch ``(N, H, W, C)`` (channels first with
            ``data_format="channels_first"``), uint8 or float in [0, 255]; any array-like.
        source: What the weights were trained with, as :func:`resnet_core.info_of` takes it.
        data_format: ``"channels_last"`` or ``"channels_first"``.

    Returns:
        The normalised images, float32, in the layout and shape of ``images``.

    Raises:
        InputError: An unknown ``data_format``, a shape that is not an image or a batch, float values
            outside [0, 255], or a channel count the normalisation does not have.
        InputTypeError: ``images`` is neither uint8 nor floating point.
        UnknownNameError: ``source`` names no preset (see :func:`resnet_core.info_of`).

    Example:
        >>> import numpy as np
        >>> import resnet_core as rc
        >>> white = np.full((2, 2, 3), 255, np.uint8)
        >>> x = rc.preprocess(white, "resnet50")  # ImageNet mean and std, RGB on [0, 1]
        >>> x.dtype, x.shape, [round(float(v), 4) for v in x[0, 0]]
        (dtype('float32'), (2, 2, 3), [2.2489, 2.4286, 2.64])
        >>> rc.preprocess(white, rc.WeightsInfo(preprocessing="tf"))[0, 0].tolist()  # x / 127.5 - 1
        [1.0, 1.0, 1.0]
    """
    if data_format not in DATA_FORMATS:
        raise InputError(f"data_format must be one of {DATA_FORMATS}. Received: {data_format!r}")
    info = info_of(source)
    name, mode = info.preprocessing, normalisation_of(info)
    x = np.asarray(images)
    if x.dtype != np.uint8 and x.dtype.kind != "f":
        raise InputTypeError(f"Expected uint8 or floating-point images in [0, 255]. Received dtype {x.dtype}")
    if x.ndim not in (3, 4):
        raise InputError(f"Expected an image (H, W, C) or a batch (N, H, W, C) in {data_format}. Received shape "
                         f"{x.shape}")
    if x.dtype.kind == "f" and x.size and not (np.isfinite(x).all() and x.min() >= 0 and x.max() <= 255):
        raise InputError(f"Float images must be finite and in [0, 255]; received values in [{x.min()}, "
                         f"{x.max()}]")
    axis = x.ndim - 1 if data_format == "channels_last" else x.ndim - 3
    channels = x.shape[axis]
    if len(mode.mean) > 1 and channels != len(mode.mean):
        raise InputError(f"{name!r} preprocessing normalises {len(mode.mean)} channels; the "
                         f"images have {channels} on axis {axis} ({data_format})")
    x = x.astype(np.float32)  # always a copy: the caller's array is left alone
    if mode.bgr:
        x = np.flip(x, axis)
    shape = [1] * x.ndim
    shape[axis] = -1
    mean = np.asarray(mode.mean, np.float32).reshape(shape)
    if mode.divisor != 1.0:
        x = x / np.float32(mode.divisor)
    x = x - mean
    if mode.std is not None:
        x = x / np.asarray(mode.std, np.float32).reshape(shape)
    return np.ascontiguousarray(x, dtype=np.float32)
