"""Torch vs Keras on random valid specs (each Keras env, so every engine): the same logits or features
within 1e-5 relative, with non-trivial BN statistics and odd input sizes, and Keras's shapes equal the plan's."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from spec_strategies import ci_settings, odd_sizes, valid_specs

from resnet_core.plan import make_plan
from resnet_core.spec import ResNetSpec
from resnet_core.testing import (
    loaded,
    random_images,
    random_weights,
    relative_error,
    to_channels_first,
    to_channels_last,
)

pytestmark = pytest.mark.keras
TOLERANCE = 1e-5
_worst: list[float] = [0.0]


# One block per stage: a Keras build costs per layer (on JAX every initializer compiles), the options do not.
@ci_settings(max_examples=10)
@given(valid_specs(layers=st.lists(st.just(1), min_size=1, max_size=4).map(tuple)), odd_sizes(1, 41))
@example(ResNetSpec(block="bottleneck", layers=(1, 1), base_planes=8, groups=2, width_per_group=8, stem="deep_tiered",
                    stem_width=8, downsample="avg", attention="se", output_stride=8, include_top=False, name="drawn"),
         (13, 17))
def test_keras_computes_what_torch_computes(torch, need, parity_record, spec, size):
    keras = need("keras", "keras")
    plan = make_plan(spec)
    weights = random_weights(plan)
    images = random_images(2, *size, spec.in_channels)
    with torch.no_grad():
        reference = loaded(spec, weights, "torch")(torch.from_numpy(images)).numpy()
    output = keras.ops.convert_to_numpy(loaded(spec, weights, "keras").predict_on_batch(to_channels_last(images)))
    assert reference.std() > 0, "a constant output would prove nothing"
    if output.ndim == 4:
        assert output.shape[1:3] == plan.output_size(*size)
        output = to_channels_first(output)
    error = relative_error(output, reference)
    _worst[0] = max(_worst[0], error)
    parity_record("random specs (hypothesis)", "logits or features, worst", _worst[0])
    assert error < TOLERANCE, f"relative error {error:.2e} at {size}"
