"""The torch adapter's build with weights: made on the meta device, the weights become its tensors."""

from __future__ import annotations

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.testing import random_weights

pytestmark = pytest.mark.torch

SPEC = rc.ResNetSpec(block="bottleneck", layers=(1, 1), base_planes=8, groups=2, width_per_group=8, num_classes=4,
                     attention="se", se_ratio=0.25)


def test_build_with_weights_equals_random_build_then_set_weights(torch):
    weights = random_weights(SPEC, seed=2)
    fast = rc.build(SPEC, backend="torch", weights=weights).eval()
    slow = rc.build(SPEC, backend="torch").eval()
    rc.set_weights(slow, weights)
    fast_state, slow_state = fast.state_dict(), slow.state_dict()
    assert list(fast_state) == list(slow_state)
    for name, tensor in fast_state.items():
        assert tensor.device.type == "cpu" and tensor.dtype == slow_state[name].dtype
        assert torch.equal(tensor, slow_state[name]), name
    assert all(p.requires_grad for p in fast.parameters())
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 3, 65, 77)).astype("float32"))
    with torch.no_grad():
        assert torch.equal(fast(x), slow(x))


def test_build_with_weights_copies_and_casts(torch):
    weights = {k: v.astype(np.float64) for k, v in random_weights(SPEC, seed=3).items()}
    before = weights["conv1.weight"].copy()
    model = rc.build(SPEC, backend="torch", weights=weights)
    assert {p.dtype for p in model.state_dict().values() if p.is_floating_point()} == {torch.float32}
    with torch.no_grad():
        model.conv1.weight.add_(1.0)  # the model's tensor is its own: the caller's array is untouched
    assert np.array_equal(weights["conv1.weight"], before)
    assert np.array_equal(rc.get_weights(model)["conv1.weight"], (before.astype(np.float32) + 1))


def test_build_with_weights_is_strict(torch):
    weights = random_weights(SPEC, seed=4)
    del weights["fc.bias"]
    with pytest.raises(rc.WeightsMismatchError, match="missing 1 key"):
        rc.build(SPEC, backend="torch", weights=weights)
