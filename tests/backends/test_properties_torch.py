"""Properties on PyTorch (torch env): every spec drawn is refused with a SpecError or builds and runs, and
the plan's sizes are the sizes the network computes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, example, given
from spec_strategies import RAW, ci_settings, odd_sizes, size_the_plan_supports, spec_fields, valid_specs

import resnet_core as rc
from resnet_core.plan import make_plan
from resnet_core.spec import ResNetSpec, SpecError
from resnet_core.testing import loaded, random_images, random_weights

pytestmark = pytest.mark.torch


def expected_shape(spec: ResNetSpec, batch: int, height: int, width: int) -> tuple[int, ...]:
    plan = make_plan(spec)
    if plan.head.fc is not None:
        return (batch, spec.num_classes)
    if plan.head.pool is not None:
        return (batch, plan.head.out_channels)
    return (batch, plan.head.out_channels, *plan.output_size(height, width))


@ci_settings(max_examples=60)
@given(spec_fields(RAW), odd_sizes(1, 41))
@example({"block": "bottleneck", "layers": (1,), "base_planes": 12, "groups": 2, "width_per_group": 4}, (9, 11))
@example({"block": "basic", "layers": (1, 1), "base_planes": 1, "attention": "se"}, (9, 11))
# Found by the size property: reduce_first was checked on stage 1 only (stage 3's width 18 / 2 = 9, groups 2)
@example({"block": "bottleneck", "layers": (1, 1, 1), "groups": 2, "width_per_group": 16, "base_planes": 9,
          "reduce_first": 2}, (9, 9))
# ... and a standardised 1x1 conv with one input channel (torch's batch_norm refuses it)
@example({"block": "basic", "layers": (1, 1), "stem_width": 1, "base_planes": 1, "std_conv": True}, (1, 1))
def test_every_spec_is_refused_or_builds_and_runs(torch, fields, size):
    try:
        spec = ResNetSpec(**fields)
    except SpecError:
        return
    assume(size_the_plan_supports(spec, *size))
    model = rc.build(spec, backend="torch").eval()
    with torch.no_grad():
        out = model(torch.from_numpy(random_images(2, *size, spec.in_channels)))
    assert tuple(out.shape) == expected_shape(spec, 2, *size)
    assert bool(torch.isfinite(out).all())


@ci_settings(max_examples=40)
@given(valid_specs(), odd_sizes(1, 41))
@example(ResNetSpec(block="basic", layers=(1,), stem_width=1, base_planes=1, include_top=False, stem_pool=False,
                    norm="group", norm_groups=1), (1, 1))
def test_plan_sizes_are_the_sizes_torch_computes(torch, spec, size):
    """plan.norm_sizes (every norm's input) and plan.output_size equal the shapes torch sees.

    A batch of 2: torch's GroupNorm refuses a group holding a single value, which one 1x1 image with one
    channel per group would be (its output would be the bias alone)."""
    assume(size_the_plan_supports(spec, *size))
    model = loaded(spec, random_weights(make_plan(spec)))
    seen: dict[str, tuple[int, ...]] = {}
    modules = dict(model.named_modules())
    for norm in make_plan(spec).norms():  # whatever the norm's kind, the module at its canonical name
        modules[norm.name].register_forward_hook(
            lambda m, args, out, name=norm.name: seen.__setitem__(name, tuple(args[0].shape)))
    with torch.no_grad():
        taps = model.forward_taps(torch.from_numpy(random_images(2, *size, spec.in_channels)))
    plan = make_plan(spec)
    features = taps[plan.blocks[-1].name]
    assert {k: v[2:] for k, v in seen.items()} == plan.norm_sizes(*size)
    assert all(v[1] == plan.param_index[f"{k}.weight"].shape[0] for k, v in seen.items())
    assert tuple(features.shape[2:]) == plan.output_size(*size)
    assert np.isfinite(features.numpy()).all()
