"""Keras layers for the plan's weight-standardised convs and fused norms (EvoNorm-S0, FRN-TLU), and
a careful training path for Keras's own BatchNormalization.

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


def careful_batch_norm(layer: keras.layers.BatchNormalization) -> None:
    """Make ``layer`` normalise with batch statistics (training) the way PyTorch does, term by term.

    Keras's own training path loses digits when a channel's mean is large against its spread:
    its torch engine computes the variance as ``E[x^2] - E[x]^2`` (catastrophic cancellation), and
    every engine applies ``x * inv + (beta - mean * inv)``, whose autodiff forms gamma's gradient as
    ``inv * (sum(dy * x) - mean * sum(dy))``. Here the variance is ``mean((x - mean)^2)`` and the
    output ``(x - mean) * (gamma * inv) + beta``. Measured on one layer at |mean|/std = 100 against
    float64: Keras's torch engine 1.3e-3 before, 3.9e-6 after (PyTorch 6.3e-6). Eval mode is Keras's own
    code (it matches keras.applications bit for bit). The method is replaced on this instance only: the
    layer stays a built-in ``BatchNormalization`` with its config unchanged, so ``.keras`` files still
    load in plain Keras (which then trains with its own formulas).
    """
    if "call" not in vars(layer):  # once per layer
        layer.call = _CarefulBatchNorm(layer)


class _CarefulBatchNorm:
    """``BatchNormalization.call`` for ``layer``: training without renorm or mask computed carefully,
    anything else by Keras's own method. Moving statistics are updated exactly as Keras updates them."""

    def __init__(self, layer: keras.layers.BatchNormalization):
        self.layer = layer

    def __call__(self, inputs: Any, training: Any = None, mask: Any = None) -> Any:
        layer = self.layer
        if not (training and layer.trainable) or layer.renorm or mask is not None:
            return type(layer).call(layer, inputs, training=training, mask=mask)
        x = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))  # as Keras: statistics in fp32
        axes = layer._reduction_axes
        mean = ops.mean(x, axis=axes, keepdims=True)
        centred = x - mean
        # The variance's gradient through the mean is zero (sum(x - mean) = 0): left out, as PyTorch's
        # closed-form backward and tf.nn.moments leave it out.
        variance = ops.mean(ops.square(x - ops.stop_gradient(mean)), axis=axes, keepdims=True)
        flat_mean, flat_variance = ops.squeeze(mean, axis=axes), ops.squeeze(variance, axis=axes)
        m = layer.momentum
        layer.moving_mean.assign(ops.cast(layer.moving_mean, x.dtype) * m + flat_mean * (1.0 - m))
        layer.moving_variance.assign(ops.cast(layer.moving_variance, x.dtype) * m + flat_variance * (1.0 - m))
        scale = ops.rsqrt(variance + layer.epsilon)
        if layer.scale:
            scale = scale * ops.cast(layer.gamma, x.dtype)
        out = centred * scale
        if layer.center:
            out = out + ops.cast(layer.beta, x.dtype)
        return ops.cast(out, layer.compute_dtype)


LAYERS = {cls.__name__: cls for cls in (StdConv2D, EvoNormS0, FilterResponseNormTLU)}
