"""Random canonical weights and images: what parity checks, exports and conversion checks run on.

Framework-free (numpy alone), so every engine sees identical inputs from the same seed.
"""

from __future__ import annotations

from typing import cast

import numpy as np

from .plan import ConvNorm, Norm, Plan, make_plan
from .presets import get_spec
from .spec import ResNetSpec


def random_weights(spec: str | ResNetSpec | Plan, seed: int = 0, dtype: str = "float32") -> dict[str, np.ndarray]:
    """Canonical weights with non-trivial batch-norm statistics and affine parameters.

    Parity tests on freshly initialised models prove little: mean 0, variance 1, gamma 1 and beta 0
    hide a swapped or mis-ordered BN tensor, and zero biases hide a missing one. Here every tensor is
    distinct and away from its init value, scaled (He, fan-in) so activations stay finite in deep
    presets; the last norm of each residual branch is damped as a trained network's would be.
    """
    plan = spec if isinstance(spec, Plan) else make_plan(get_spec(spec))
    rng = np.random.default_rng(seed)
    # (a pre-activation branch ends in a bare conv: its kernel is damped instead)
    lasts = [(cast(ConvNorm, block.main[-1]), block.main[-2]) for block in plan.blocks]  # every type ends in a unit
    damped = {(last.norm or last.conv).name for last, _ in lasts}
    if plan.spec.std_conv:  # a standardised kernel cannot be damped: damp the norm feeding the bare last conv
        damped |= {cast(Norm, cast(ConvNorm, before).norm).name for last, before in lasts if last.norm is None}
    out: dict[str, np.ndarray] = {}
    for p in plan.params:
        if p.role == "kernel":
            fan_in = int(np.prod(p.shape[1:]))
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), p.shape) * (0.25 if p.module in damped else 1.0)
        elif p.role == "gamma":
            low, high = (0.1, 0.4) if p.module in damped else (0.5, 1.5)
            value = rng.uniform(low, high, p.shape)
        elif p.role in ("beta", "bias"):
            value = rng.normal(0.0, 0.2, p.shape)
        elif p.role == "moving_mean":
            value = rng.normal(0.0, 0.5, p.shape)
        elif p.role == "moving_variance":
            value = rng.uniform(0.5, 2.0, p.shape)
        elif p.role == "v":  # EvoNorm's gate slope: away from 1, some negative
            value = rng.uniform(-0.5, 1.5, p.shape)
        elif p.role == "tau":  # FRN's threshold: either side of 0, so the TLU clips both ways
            value = rng.normal(0.0, 0.3, p.shape)
        else:  # pragma: no cover - the plan's roles are listed above
            raise RuntimeError(f"Unknown role {p.role!r} for {p.name}")
        out[p.name] = value.astype(dtype)
    return out


def random_images(batch: int, height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """NCHW float32 images in roughly the range a normalised photo has."""
    return np.random.default_rng(seed).normal(0.0, 1.0, (batch, channels, height, width)).astype("float32")
