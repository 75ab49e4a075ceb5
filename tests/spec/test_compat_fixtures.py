"""Files written by earlier releases keep loading and mean the same network. Each folder under
tests/fixtures/ was written by scripts/make_compat_fixtures.py with that release's code: v0_1 by 0.1 (the flat
ResNetSpec, spec JSON without a format), v0_2 by the release of the "Shape" issue (sub-specs, spec JSON
"format": 2, before the ResNeSt/Res2Net/SKNet block types and the drop rates). Spec JSON files give the spec
their flat keywords build, with the same plan; weight files in every format give that spec back, and torch
logits bit-identical to the ones that release computed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.spec import ResNetSpec

ROOT = Path(__file__).parents[1] / "fixtures"
RELEASES = ("v0_1", "v0_2")
KWARGS = {r: json.loads((ROOT / r / "kwargs.json").read_text()) for r in RELEASES}
PLANS = {r: json.loads((ROOT / r / "plans.json").read_text()) for r in RELEASES}
SPEC_CASES = [(r, name) for r in RELEASES for name in sorted(KWARGS[r])]
WEIGHT_CASES = [(r, p.name) for r in RELEASES for p in sorted((ROOT / r / "weights").iterdir())]


@pytest.mark.parametrize("release", RELEASES)
def test_the_fixtures_are_all_there(release):
    assert set(KWARGS[release]) == set(PLANS[release]) == \
        {p.stem for p in (ROOT / release / "specs").glob("*.json")}
    assert len(KWARGS[release]) >= 10 and len([c for c in WEIGHT_CASES if c[0] == release]) >= 17


def test_each_release_wrote_its_own_spec_json_form():
    assert not any('"format"' in p.read_text() for p in (ROOT / "v0_1" / "specs").glob("*.json"))
    assert all('"format": 2' in p.read_text() for p in (ROOT / "v0_2" / "specs").glob("*.json"))


def _stem(filename: str) -> str:
    for end in (".weights.h5", ".safetensors", ".keras", ".pth", "_transformers"):
        filename = filename.removesuffix(end)
    return filename


@pytest.mark.parametrize(("release", "name"), SPEC_CASES)
def test_an_old_spec_json_file_gives_the_spec_of_its_flat_keywords_and_plan(release, name):
    spec = ResNetSpec.from_json((ROOT / release / "specs" / f"{name}.json").read_text())
    assert spec == ResNetSpec(**KWARGS[release][name]) and spec.name == name
    assert [[p.name, list(p.shape)] for p in rc.make_plan(spec).params] == PLANS[release][name]
    assert ResNetSpec.from_json(spec.to_json()) == spec  # and the current form reads back


@pytest.mark.torch
@pytest.mark.parametrize(("release", "filename"), WEIGHT_CASES)
def test_an_old_weights_file_builds_the_same_network_bit_for_bit_on_torch(release, filename, torch):
    name = _stem(filename)
    loaded = rc.read_weights(ROOT / release / "weights" / filename)
    assert loaded.spec == ResNetSpec(**KWARGS[release][name])
    stored = np.load(ROOT / release / "logits.npz")
    images = stored["input"][:, :loaded.spec.in_channels]
    model = rc.build(loaded.spec, backend="torch")
    rc.set_weights(model, loaded.weights)
    with torch.no_grad():
        logits = model.eval()(torch.from_numpy(images)).numpy()
    np.testing.assert_array_equal(logits, stored[name])
