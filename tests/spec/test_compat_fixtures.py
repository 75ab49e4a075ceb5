"""Files written by resnet-core 0.1 keep loading and mean the same network (tests/fixtures/v0_1, written by
scripts/make_compat_fixtures.py with 0.1's flat ResNetSpec): spec JSON files give the spec their flat keywords
build, with the same plan; weight files in every format give that spec back, and torch logits bit-identical
to the ones 0.1 computed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.spec import ResNetSpec

FIXTURES = Path(__file__).parents[1] / "fixtures" / "v0_1"
KWARGS = json.loads((FIXTURES / "kwargs.json").read_text())
PLANS = json.loads((FIXTURES / "plans.json").read_text())
WEIGHT_FILES = sorted(p.name for p in (FIXTURES / "weights").iterdir())


def test_the_fixtures_are_all_there():
    assert set(KWARGS) == set(PLANS) == {p.stem for p in (FIXTURES / "specs").glob("*.json")}
    assert len(KWARGS) >= 10 and len(WEIGHT_FILES) >= 17


def _stem(filename: str) -> str:
    for end in (".weights.h5", ".safetensors", ".keras", ".pth", "_transformers"):
        filename = filename.removesuffix(end)
    return filename


@pytest.mark.parametrize("name", sorted(KWARGS))
def test_an_old_spec_json_file_gives_the_spec_of_its_flat_keywords_and_plan(name):
    spec = ResNetSpec.from_json((FIXTURES / "specs" / f"{name}.json").read_text())
    assert spec == ResNetSpec(**KWARGS[name]) and spec.name == name
    assert [[p.name, list(p.shape)] for p in rc.make_plan(spec).params] == PLANS[name]
    assert ResNetSpec.from_json(spec.to_json()) == spec  # and the current form reads back


@pytest.mark.torch
@pytest.mark.parametrize("filename", WEIGHT_FILES)
def test_an_old_weights_file_builds_the_same_network_bit_for_bit_on_torch(filename, torch):
    name = _stem(filename)
    loaded = rc.read_weights(FIXTURES / "weights" / filename)
    assert loaded.spec == ResNetSpec(**KWARGS[name])
    stored = np.load(FIXTURES / "logits.npz")
    images = stored["input"][:, :loaded.spec.in_channels]
    model = rc.build(loaded.spec, backend="torch")
    rc.set_weights(model, loaded.weights)
    with torch.no_grad():
        logits = model.eval()(torch.from_numpy(images)).numpy()
    np.testing.assert_array_equal(logits, stored[name])
