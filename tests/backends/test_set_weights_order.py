"""rc.set_weights returns the names it loaded in the plan's canonical order, the same on both backends."""

from __future__ import annotations

import pytest

import resnet_core as rc
from resnet_core.testing import random_weights

pytestmark = pytest.mark.keras


@pytest.mark.parametrize("strict", [True, False])
def test_set_weights_names_in_plan_order_on_both_backends(torch, strict):
    spec = rc.get_spec("tiny_resnext")
    weights = random_weights(spec, seed=4)
    given = dict(reversed(list(weights.items())))  # any order in, the plan's order out
    if not strict:
        del given["fc.weight"], given["fc.bias"]
    order = [p.name for p in rc.make_plan(spec).params if p.name in given]
    for backend in ("torch", "keras"):
        assert rc.set_weights(rc.build(spec, backend=backend), given, strict=strict) == order
