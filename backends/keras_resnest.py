"""The one Keras layer ResNeSt's split attention needs beyond the built-in ones: the sum of its radix splits.

The splits are consecutive channel slices of one tensor (timm's ``x.reshape(B, radix, C, H, W).sum(1)``).
Keras has no layer that slices channels or sums over part of an axis, and a ``Reshape`` cannot split the
channel axis of a map whose height and width are unknown (one free dimension only), so this layer adds the
slices. Registered serialisable under ``resnet_core`` so ``.keras`` files holding it load by name in safe mode.
"""

from __future__ import annotations

from typing import Any

import keras

_PACKAGE = "resnet_core"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class RadixSum(keras.layers.Layer):
    """Channels-last ``(N, H, W, radix * C) -> (N, H, W, C)``: the sum of the ``radix`` consecutive channel
    slices, in split order (ResNeSt's split attention sums its splits before pooling and after gating)."""

    def __init__(self, radix: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.radix = int(radix)

    def call(self, x):
        width = x.shape[-1] // self.radix
        out = x[..., :width]
        for r in range(1, self.radix):
            out = out + x[..., r * width:(r + 1) * width]
        return out

    def compute_output_shape(self, shape):
        return (*shape[:-1], shape[-1] // self.radix)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "radix": self.radix}
