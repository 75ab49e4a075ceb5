"""The PyTorch adapter's pre-activation blocks, written out by hand in plain torch ops.

No torch peer builds keras.applications' V2 (test_peers_keras.py proves our Keras model is that
network); here each rule is recomputed from the weights with torch.nn.functional, so the torch
adapter is checked against the definition, not against itself.
"""

from __future__ import annotations

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.testing import random_images, random_weights, relative_error

pytestmark = pytest.mark.torch

SPEC = rc.get_spec("tiny_resnext").replace(preact=True, stride_block="last", conv_bias=True,
                                           stem_pool_padding="zero", attention="se")


def _reference(torch, plan, w, x):
    """relu(norm(.)) before each block, a bare last conv, no ReLU after the add, final norm; all explicit."""
    F = torch.nn.functional
    t = {k: torch.from_numpy(v) for k, v in w.items()}

    def conv(x, c):
        return F.conv2d(x, t[f"{c.name}.weight"], t.get(f"{c.name}.bias"), c.stride, c.padding, c.dilation, c.groups)

    def norm(x, n):
        return F.batch_norm(x, t[f"{n.name}.running_mean"], t[f"{n.name}.running_var"], t[f"{n.name}.weight"],
                            t[f"{n.name}.bias"], False, 0.0, n.eps)

    def units(x, items):
        for u in items:
            x = conv(x, u.conv)
            x = x if u.norm is None else norm(x, u.norm)
            x = torch.relu(x) if u.relu else x
        return x

    x = units(x, plan.stem.units)
    x = F.max_pool2d(F.pad(x, (1, 1, 1, 1), value=0.0), 3, 2)  # zero padding, as keras.applications V2
    for b in plan.blocks:
        p = torch.relu(norm(x, b.pre_norm))
        shortcut = units(p, (b.shortcut,)) if b.shortcut else x
        if b.shortcut_pool is not None:
            shortcut = shortcut[:, :, ::b.stride, ::b.stride]
        y = units(p, b.main)
        se = b.attention
        gate = conv(torch.relu(conv(y.mean((2, 3), keepdim=True), se.fc1)), se.fc2)
        x = y * torch.sigmoid(gate) + shortcut
    x = torch.relu(norm(x, plan.head.norm)).mean((2, 3))
    return F.linear(x, t["fc.weight"], t["fc.bias"])


def test_preact_forward_is_the_definition(torch):
    plan = rc.make_plan(SPEC)
    w = random_weights(SPEC, seed=4)
    model = rc.build(SPEC, backend="torch").eval()
    rc.set_weights(model, w)
    x = torch.from_numpy(random_images(2, 65, 77, seed=5)) * 3.0  # negative stem outputs: padding matters
    with torch.no_grad():
        got = model(x).numpy()
        want = _reference(torch, plan, w, x).numpy()
        stem = model.forward_taps(x)["stem"]
    assert (stem < 0).any()  # so zero and -inf padding would differ
    assert relative_error(got, want) < 1e-6


def test_state_dict_is_the_plan_in_order(torch):
    model = rc.build(SPEC, backend="torch")
    assert [k for k in model.state_dict() if not k.endswith("num_batches_tracked")] == \
        [p.name for p in rc.make_plan(SPEC).params]


def test_final_norm_tap_feeds_the_head(torch):
    model = rc.build(SPEC, backend="torch").eval()
    rc.set_weights(model, random_weights(SPEC, seed=6))
    x = torch.from_numpy(random_images(1, 64, 64, seed=7))
    with torch.no_grad():
        taps = model.forward_taps(x)
        assert list(taps) == list(model.plan.taps)
        assert (taps["norm"] >= 0).all()
        np.testing.assert_array_equal(taps["logits"].numpy(), model(x).numpy())


def test_zero_init_residual_makes_each_block_its_shortcut(torch):
    spec = SPEC.replace(zero_init_residual=True, attention=None, conv_bias=False, stride_block="first")
    model = rc.build(spec, backend="torch").eval()
    block = model.layer2[1]  # identity shortcut, no subsampling
    x = torch.randn(1, block.conv1.in_channels, 9, 9)
    with torch.no_grad():
        assert torch.equal(block(x), x)
