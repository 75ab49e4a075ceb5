"""Keras layers for the plan's weight-standardised convs and fused norms (EvoNorm-S0, FRN-TLU), and
careful batch statistics for Keras's own BatchNormalization.

Group norm needs none: Keras's GroupNormalization groups consecutive channels and adds epsilon to the
variance inside the rsqrt, as PyTorch does. Each formula follows timm term by term (see
``backends/torch_norms.py``); statistics are biased and computed in float32. The layers are
registered serialisable, so ``.keras`` files holding them load by name.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

_PACKAGE = "resnet_core"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class StdConv2D(keras.layers.Conv2D):
    """Conv2D whose kernel is standardised per output channel in every call (timm's StdConv2d).

    The kernel variable keeps the trained (stored) values; ``eps`` is added to the biased variance.
    """

    def __init__(self, *args: Any, eps: float = 1e-6, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.eps = float(eps)

    def convolution_op(self, inputs, kernel):
        k = ops.cast(kernel, "float32")
        mean = ops.mean(k, axis=(0, 1, 2), keepdims=True)
        var = ops.var(k, axis=(0, 1, 2), keepdims=True)
        k = ops.cast((k - mean) * ops.rsqrt(var + self.eps), kernel.dtype)
        return super().convolution_op(inputs, k)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "eps": self.eps}


class _FusedNorm(keras.layers.Layer):
    """Per-channel gamma, beta and one more per-channel variable (``_extra``), created in that order."""

    _extra = ""
    _extra_init = "ones"

    def __init__(self, epsilon: float = 1e-5, gamma_initializer: Any = "ones", **kwargs: Any):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)
        self.gamma_initializer = keras.initializers.get(gamma_initializer)

    def build(self, input_shape) -> None:
        c = (input_shape[-1],)
        self.gamma = self.add_weight(shape=c, name="gamma", initializer=self.gamma_initializer)
        self.beta = self.add_weight(shape=c, name="beta", initializer="zeros")
        setattr(self, self._extra, self.add_weight(shape=c, name=self._extra, initializer=self._extra_init))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "epsilon": self.epsilon,
                "gamma_initializer": keras.initializers.serialize(self.gamma_initializer)}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class EvoNormS0(_FusedNorm):
    """``x * sigmoid(v * x) / group_std(x) * gamma + beta`` (timm's EvoNorm2dS0), channels last.

    The std runs over each group of ``groups`` consecutive channels and every pixel of one sample.
    """

    _extra = "v"

    def __init__(self, groups: int = 32, **kwargs: Any):
        super().__init__(**kwargs)
        self.groups = int(groups)

    def call(self, x):
        shape = ops.shape(x)
        c = x.shape[-1]
        grouped = ops.reshape(x, (-1, shape[1], shape[2], self.groups, c // self.groups))
        var = ops.var(ops.cast(grouped, "float32"), axis=(1, 2, 4), keepdims=True)
        std = ops.cast(ops.sqrt(var + self.epsilon), x.dtype)
        v = ops.reshape(ops.cast(self.v, x.dtype), (self.groups, c // self.groups))
        y = ops.reshape(grouped * ops.sigmoid(grouped * v) / std, shape)
        return y * ops.cast(self.gamma, x.dtype) + ops.cast(self.beta, x.dtype)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "groups": self.groups}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FilterResponseNormTLU(_FusedNorm):
    """``max(x * rsqrt(mean_hw(x^2) + eps) * gamma + beta, tau)`` (timm's FilterResponseNormTlu2d)."""

    _extra = "tau"
    _extra_init = "zeros"

    def call(self, x):
        nu2 = ops.mean(ops.square(ops.cast(x, "float32")), axis=(1, 2), keepdims=True)
        x = x * ops.cast(ops.rsqrt(nu2 + self.epsilon), x.dtype)
        x = x * ops.cast(self.gamma, x.dtype) + ops.cast(self.beta, x.dtype)
        return ops.maximum(x, ops.cast(self.tau, x.dtype))


def careful_batch_statistics(layer: keras.layers.BatchNormalization) -> None:
    """Make ``layer`` compute its training-mode batch variance in two passes, as PyTorch does.

    Keras's torch engine computes it as ``E[x^2] - E[x]^2``, which cancels catastrophically when a
    channel's mean is large against its spread: at |mean|/std = 100 one BatchNormalization layer's
    output is 1.3e-3 from float64 (PyTorch: 6e-6), at 1000 it is 0.3. ``mean((x - mean)^2)`` is what
    JAX and TensorFlow already compute. The method is replaced on this instance only: the layer stays
    a built-in ``BatchNormalization`` whose saved config is unchanged, so ``.keras`` files still load in
    plain Keras (which then trains with its own statistics).
    """
    if "_moments" not in vars(layer):  # once per layer
        layer._moments = _TwoPassMoments(layer)


class _TwoPassMoments:
    """Batch mean and biased variance over the layer's reduction axes; a mask goes to Keras's own code."""

    def __init__(self, layer: keras.layers.BatchNormalization):
        self.layer = layer

    def __call__(self, inputs: Any, mask: Any = None) -> tuple[Any, Any]:
        layer = self.layer
        if mask is not None:  # Keras's masked statistics are already two-pass
            return type(layer)._moments(layer, inputs, mask)
        axes = layer._reduction_axes
        mean = ops.mean(inputs, axis=axes, keepdims=True)
        # The mean's own gradient through the variance is zero (sum(x - mean) = 0): stopped, as
        # tf.nn.moments and PyTorch's closed-form backward leave it out.
        variance = ops.mean(ops.square(inputs - ops.stop_gradient(mean)), axis=axes)
        return ops.squeeze(mean, axis=axes), variance


LAYERS = {cls.__name__: cls for cls in (StdConv2D, EvoNormS0, FilterResponseNormTLU)}
