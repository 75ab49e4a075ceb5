"""drop_rate and drop_path_rate as spec fields, framework-free: validated by name, plain fields in the JSON
(format-2 files written before them read as 0), carried by the plan (the head's dropout, each block's
drop-path rate by timm's linear rule) without changing any weight, and read back from per-block rates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import resnet_core as rc
from resnet_core.drop_rates import DROP_FIELDS, drop_path_schedule, rate_of_schedule
from resnet_core.finetune import fine_tune
from resnet_core.spec import ResNetSpec, SpecError
from resnet_core.testing import random_weights

V0_2 = Path(__file__).parents[1] / "fixtures" / "v0_2" / "specs"


@pytest.mark.parametrize(("changes", "message"), [
    ({"drop_rate": 1.0}, r"drop_rate: expected a float in \[0, 1\)"),
    ({"drop_rate": -0.1}, r"drop_rate: expected a float in \[0, 1\)"),
    ({"drop_path_rate": float("nan")}, r"drop_path_rate: expected a float in \[0, 1\)"),
    ({"drop_path_rate": True}, r"drop_path_rate: expected a float in \[0, 1\)"),
    ({"drop_rate": "0.1"}, r"drop_rate: expected a float in \[0, 1\)"),
    ({"drop_rate": 0.1, "include_top": False}, r"drop_rate: expected 0.0 without a classifier or global pooling"),
    ({"drop_path_rate": 0.1, "layers": (1,)}, r"drop_path_rate: expected 0.0 in a one-block network"),
])
def test_bad_rates_are_refused_naming_the_field(changes, message):
    with pytest.raises(SpecError, match=message):
        rc.get_spec("resnet18").replace(**changes)


def test_rates_are_plain_fields_in_the_json_and_default_to_zero():
    spec = rc.get_spec("resnet18").replace(drop_rate=0.2, drop_path_rate=0)
    data = spec.to_dict()
    assert (data["drop_rate"], data["drop_path_rate"]) == (0.2, 0.0) and isinstance(spec.drop_path_rate, float)
    assert ResNetSpec.from_json(spec.to_json()) == spec
    assert spec != rc.get_spec("resnet18")  # a different training model
    assert spec.replace(drop_rate=0.0) == rc.get_spec("resnet18")
    assert rc.get_spec("resnet18").replace(include_top=False, pooling="avg", drop_rate=0.5).drop_rate == 0.5


@pytest.mark.parametrize("path", sorted(V0_2.glob("*.json")), ids=lambda p: p.stem)
def test_format_2_files_written_before_the_rates_read_as_zero(path):
    data = json.loads(path.read_text())
    assert not set(DROP_FIELDS) & set(data)
    spec = ResNetSpec.from_json(path.read_text())
    assert (spec.drop_rate, spec.drop_path_rate) == (0.0, 0.0)


def test_the_plan_carries_the_rates_and_no_weights():
    spec = rc.get_spec("resnet50").replace(drop_rate=0.25, drop_path_rate=0.1)
    plan = rc.make_plan(spec)
    assert plan.head.dropout == 0.25
    # timm's make_blocks: drop_path_rate * net_block_idx / (net_num_blocks - 1), the same float expression
    assert [b.drop_path for b in plan.blocks] == [0.1 * i / 15 for i in range(16)]
    assert plan.blocks[0].drop_path == 0.0 and plan.blocks[-1].drop_path == pytest.approx(0.1, rel=1e-15)
    assert plan.params == rc.make_plan(rc.get_spec("resnet50")).params
    assert rc.summary(spec, input_size=64).params == rc.summary("resnet50", input_size=64).params


def test_the_rate_is_read_back_from_per_block_rates():
    assert drop_path_schedule(0.2, 4)[-1] == 0.20000000000000004  # the last block's rate is not the rate ...
    assert rate_of_schedule(drop_path_schedule(0.2, 4)) == 0.2  # ... its shortest form gives the same schedule
    for rate, n in [(0.1, 8), (0.05, 16), (0.123456789, 33), (0.0, 3), (0.3, 1)]:
        assert rate_of_schedule(drop_path_schedule(rate, n)) == (rate if n > 1 else 0.0)
    assert rate_of_schedule([0.0, 0.5, 0.1]) is None  # no line from 0 gives these
    assert rate_of_schedule([0.1, 0.1]) is None  # the first block's rate is always 0
    single = [float(f"{x:.8g}") for x in drop_path_schedule(0.1, 5)]  # values rounded to float32 precision
    assert rate_of_schedule(single) is None
    assert rate_of_schedule(single, lambda r, n: [float(f"{x:.8g}") for x in drop_path_schedule(r, n)],
                            float32=True) == 0.1


def test_fine_tuning_overrides_set_the_rates_and_keep_every_weight():
    weights = random_weights("resnet18")
    spec, tuned, _ = fine_tune(rc.get_spec("resnet18"), weights, drop_rate=0.3, drop_path_rate=0.05)
    assert (spec.drop_rate, spec.drop_path_rate) == (0.3, 0.05)
    assert tuned.keys() == weights.keys()
    with pytest.raises(SpecError, match="drop_rate"):
        fine_tune(rc.get_spec("resnet18"), weights, drop_rate=1.5)
