"""Res2Net's one Keras layer of resnet_core's own: slicing a range of channels (the scale split, torch.split).

Keras has no built-in layer that slices channels (a Lambda layer does not load in safe mode, and permuting the
channels to a spatial axis for Cropping2D costs two transposes per split); this layer slices in the graph, exactly.
"""

from __future__ import annotations

from typing import Any

import keras

PACKAGE = "resnet_core"  # as keras_adapter.PACKAGE: our layers register as "resnet_core>ClassName"


@keras.saving.register_keras_serializable(package=PACKAGE)
class ChannelSlice(keras.layers.Layer):
    """Channels ``[start, stop)`` of a channels-last tensor (Res2Net's split of its 1x1 conv's output)."""

    def __init__(self, start: int, stop: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.start, self.stop = int(start), int(stop)

    def call(self, x):
        return x[..., self.start:self.stop]

    def compute_output_shape(self, shape):
        return (*shape[:-1], self.stop - self.start)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "start": self.start, "stop": self.stop}
