"""The preset registry and parameter counts (framework-free)."""

from __future__ import annotations

import pytest

import resnet_core as rc
from resnet_core import presets
from resnet_core.presets import TORCHVISION_PRESETS
from resnet_core.spec import ResNetSpec

# Trainable parameter counts published for torchvision.models (sum of p.numel() for p in parameters()).
TORCHVISION_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnext50_32x4d": 25_028_904,
    "resnext101_32x8d": 88_791_336,
    "resnext101_64x4d": 83_455_272,
    "wide_resnet50_2": 68_883_240,
    "wide_resnet101_2": 126_886_696,
}
# keras.applications.ResNet50: trainable parameters (its total also counts BN moving statistics).
KERAS_RESNET50_TRAINABLE = 25_583_592


@pytest.fixture
def registry():
    """Give a test the registry and restore it afterwards, whatever the test registered."""
    saved = dict(presets._REGISTRY)
    yield presets
    presets._REGISTRY.clear()
    presets._REGISTRY.update(saved)


def test_the_ten_torchvision_presets_are_registered():
    assert len(TORCHVISION_PRESETS) == 10 == len(set(TORCHVISION_PRESETS))
    assert set(TORCHVISION_PRESETS) == set(TORCHVISION_PARAMS)
    assert set(TORCHVISION_PRESETS) <= set(rc.list_specs())


def test_list_specs_is_sorted_and_includes_keras_and_tiny():
    names = rc.list_specs()
    assert names == sorted(names)
    assert {"keras_resnet50", "tiny_resnext"} <= set(names)


@pytest.mark.parametrize("name", rc.list_specs())
def test_preset_carries_its_name(name):
    spec = rc.get_spec(name)
    assert isinstance(spec, ResNetSpec)
    assert spec.name == name


@pytest.mark.parametrize("name", list(TORCHVISION_PARAMS))
def test_num_params_equals_torchvision(name):
    assert rc.make_plan(rc.get_spec(name)).num_params == TORCHVISION_PARAMS[name]


def test_keras_resnet50_num_params_equals_keras_applications():
    assert rc.make_plan(rc.get_spec("keras_resnet50")).num_params == KERAS_RESNET50_TRAINABLE


def _independent_count(spec: ResNetSpec) -> int:
    """Trainable parameters counted from the ResNet paper's rules, without the plan."""

    def conv(cin: int, cout: int, k: int, groups: int = 1) -> int:
        return cout * (cin // groups) * k * k + (cout if spec.conv_bias else 0)

    def bn(c: int) -> int:
        return 2 * c  # gamma and beta; running statistics are buffers

    total = conv(spec.in_channels, spec.stem_width, 7) + bn(spec.stem_width)
    cin = spec.stem_width
    for stage, depth in enumerate(spec.layers):
        planes = spec.base_planes * 2**stage
        for index in range(depth):
            stride = 2 if stage > 0 and index == 0 else 1
            if spec.block == "basic":
                cout = planes
                total += conv(cin, planes, 3) + bn(planes) + conv(planes, planes, 3) + bn(planes)
            else:
                cout = planes * 4
                width = int(planes * spec.width_per_group / 64) * spec.groups
                total += conv(cin, width, 1) + bn(width)
                total += conv(width, width, 3, spec.groups) + bn(width)
                total += conv(width, cout, 1) + bn(cout)
            if stride != 1 or cin != cout:
                total += conv(cin, cout, 1) + bn(cout)
            cin = cout
    if spec.include_top:
        total += cin * spec.num_classes + spec.num_classes
    return total


CUSTOM = {
    "basic-3stages-narrow-stem": ResNetSpec(block="basic", layers=(1, 2, 1), stem_width=32, num_classes=5),
    "bottleneck-headless": ResNetSpec(layers=(2, 1, 1, 1), include_top=False, pooling="avg"),
    "bottleneck-bias-1ch": ResNetSpec(layers=(1, 1), conv_bias=True, in_channels=1, num_classes=3),
    "resnext-5stages": ResNetSpec(layers=(1, 1, 1, 1, 1), groups=8, width_per_group=4, base_planes=16,
                                  stem_width=16),
}


# The classic family (7x7 stem, no attention): the presets this count's rules describe.
CLASSIC = (*TORCHVISION_PRESETS, "keras_resnet50", "keras_resnet101", "keras_resnet152", "tiny_resnext")


@pytest.mark.parametrize("spec", [*(rc.get_spec(n) for n in CLASSIC), *CUSTOM.values()], ids=[*CLASSIC, *CUSTOM])
def test_num_params_equals_independent_count(spec):
    assert rc.make_plan(spec).num_params == _independent_count(spec)


def test_unknown_name_raises_keyerror_listing_known_names():
    with pytest.raises(KeyError) as info:
        rc.get_spec("nope")
    message = str(info.value.args[0])
    assert "'nope'" in message
    for name in rc.list_specs():
        assert name in message


@pytest.mark.parametrize("bad", [None, 50, ["resnet50"]], ids=["none", "int", "unhashable-list"])
def test_non_string_names_raise_keyerror(bad):
    with pytest.raises(KeyError, match="Known specs"):
        rc.get_spec(bad)


def test_get_spec_passes_a_spec_through():
    spec = ResNetSpec(layers=(1, 1), name="mine")
    assert rc.get_spec(spec) is spec


def test_duplicate_registration_raises_and_keeps_the_original(registry):
    original = rc.get_spec("resnet50")
    with pytest.raises(ValueError, match=r"'resnet50' is already registered.*overwrite=True"):
        rc.register_spec("resnet50", ResNetSpec(layers=(1, 1, 1, 1)))
    assert rc.get_spec("resnet50") is original


def test_overwrite_replaces(registry):
    new = rc.register_spec("resnet50", ResNetSpec(layers=(1, 1, 1, 1)), overwrite=True)
    assert rc.get_spec("resnet50") is new
    assert new.layers == (1, 1, 1, 1) and new.name == "resnet50"


def test_register_new_name_stores_that_name(registry):
    stored = rc.register_spec("my_resnet", ResNetSpec(layers=(1, 1), name="ignored"))
    assert stored.name == "my_resnet"
    assert rc.get_spec("my_resnet") is stored
    assert "my_resnet" in rc.list_specs()
    with pytest.raises(ValueError, match="already registered"):
        rc.register_spec("my_resnet", ResNetSpec())


@pytest.mark.parametrize("bad", ["", None, 3], ids=["empty", "none", "int"])
def test_register_rejects_bad_names(registry, bad):
    before = rc.list_specs()
    with pytest.raises(ValueError, match="non-empty strings"):
        rc.register_spec(bad, ResNetSpec())
    assert rc.list_specs() == before


def test_registry_fixture_restored_state():
    # Runs after the tests above (same module order): their registrations did not leak.
    assert "my_resnet" not in rc.list_specs()
    assert rc.get_spec("resnet50").layers == (3, 4, 6, 3)
