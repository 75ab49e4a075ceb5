"""ResNetSpec: validation messages, immutability, normalisation and serialisation (framework-free)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

import resnet_core as rc
from resnet_core.spec import ResNetSpec

# (id, constructor kwargs, field the message must name, received value as the message must show it,
#  text of the allowed values the message must contain)
INVALID = [
    ("block-unknown", {"block": "resnet"}, "block", "'resnet'", "('basic', 'bottleneck')"),
    ("block-none", {"block": None}, "block", "None", "('basic', 'bottleneck')"),
    ("block-capitalised", {"block": "Bottleneck"}, "block", "'Bottleneck'", "('basic', 'bottleneck')"),
    ("layers-empty-tuple", {"layers": ()}, "layers", "()", "non-empty"),
    ("layers-empty-list", {"layers": []}, "layers", "()", "non-empty"),
    ("layers-zero", {"layers": (3, 0, 6, 3)}, "layers", "(3, 0, 6, 3)", "positive integers"),
    ("layers-negative", {"layers": (3, 4, -6, 3)}, "layers", "(3, 4, -6, 3)", "positive integers"),
    ("layers-float", {"layers": (3, 4.0, 6, 3)}, "layers", "(3, 4.0, 6, 3)", "positive integers"),
    ("layers-bool", {"layers": (3, True, 6, 3)}, "layers", "(3, True, 6, 3)", "positive integers"),
    ("layers-str-items", {"layers": ("3", "4")}, "layers", "('3', '4')", "positive integers"),
    ("layers-scalar", {"layers": 5}, "layers", "5", "non-empty sequence"),
    ("layers-string", {"layers": "3463"}, "layers", "'3463'", "non-empty sequence"),
    ("layers-none", {"layers": None}, "layers", "None", "non-empty sequence"),
    ("groups-zero", {"groups": 0}, "groups", "0", "positive integer"),
    ("groups-negative", {"groups": -32}, "groups", "-32", "positive integer"),
    ("groups-float", {"groups": 32.0}, "groups", "32.0", "positive integer"),
    ("groups-str", {"groups": "32"}, "groups", "'32'", "positive integer"),
    ("groups-bool", {"groups": True}, "groups", "True", "positive integer"),
    ("width_per_group-zero", {"width_per_group": 0}, "width_per_group", "0", "positive integer"),
    ("width_per_group-none", {"width_per_group": None}, "width_per_group", "None", "positive integer"),
    ("width_per_group-float", {"width_per_group": 4.5}, "width_per_group", "4.5", "positive integer"),
    ("in_channels-zero", {"in_channels": 0}, "in_channels", "0", "positive integer"),
    ("stem_width-negative", {"stem_width": -64}, "stem_width", "-64", "positive integer"),
    ("base_planes-float", {"base_planes": 1.5}, "base_planes", "1.5", "positive integer"),
    ("num_classes-negative", {"num_classes": -1}, "num_classes", "-1", "non-negative integer"),
    ("num_classes-float", {"num_classes": 10.0}, "num_classes", "10.0", "non-negative integer"),
    ("num_classes-zero-with-top", {"num_classes": 0}, "num_classes", "0", "positive integer when include_top=True"),
    ("basic-groups", {"block": "basic", "layers": (2, 2, 2, 2), "groups": 32}, "groups", "32", "groups=1"),
    ("basic-width", {"block": "basic", "layers": (2, 2, 2, 2), "width_per_group": 128}, "width_per_group", "128",
     "width_per_group=64"),
    ("include_top-int", {"include_top": 1}, "include_top", "1", "a bool"),
    ("zero_init_residual-str", {"zero_init_residual": "yes"}, "zero_init_residual", "'yes'", "a bool"),
    ("stride_in_1x1-none", {"stride_in_1x1": None}, "stride_in_1x1", "None", "a bool"),
    ("conv_bias-int", {"conv_bias": 0}, "conv_bias", "0", "a bool"),
    ("pooling-unknown", {"include_top": False, "pooling": "mean"}, "pooling", "'mean'", "(None, 'avg', 'max')"),
    ("pooling-with-include_top", {"pooling": "avg"}, "pooling", "'avg'", "None when include_top=True"),
    ("pooling-max-with-include_top", {"pooling": "max"}, "pooling", "'max'", "None when include_top=True"),
    ("bn_eps-zero", {"bn_eps": 0.0}, "bn_eps", "0.0", "(0, 1)"),
    ("bn_eps-negative", {"bn_eps": -1e-5}, "bn_eps", "-1e-05", "(0, 1)"),
    ("bn_eps-one", {"bn_eps": 1.0}, "bn_eps", "1.0", "(0, 1)"),
    ("bn_eps-nan", {"bn_eps": math.nan}, "bn_eps", "nan", "(0, 1)"),
    ("bn_eps-str", {"bn_eps": "1e-5"}, "bn_eps", "'1e-5'", "(0, 1)"),
    ("bn_eps-bool", {"bn_eps": True}, "bn_eps", "True", "(0, 1)"),
    ("bn_momentum-negative", {"bn_momentum": -0.1}, "bn_momentum", "-0.1", "[0, 1]"),
    ("bn_momentum-above-one", {"bn_momentum": 1.5}, "bn_momentum", "1.5", "[0, 1]"),
    ("bn_momentum-nan", {"bn_momentum": math.nan}, "bn_momentum", "nan", "[0, 1]"),
    ("bn_momentum-none", {"bn_momentum": None}, "bn_momentum", "None", "[0, 1]"),
    ("stride_in_1x1-basic", {"block": "basic", "layers": (2, 2, 2, 2), "stride_in_1x1": True}, "stride_in_1x1",
     "True", "False for the basic block"),
    ("stem-unknown", {"stem": "5x5"}, "stem", "'5x5'", "('7x7', 'deep', 'deep_tiered')"),
    ("stem_pool-int", {"stem_pool": 1}, "stem_pool", "1", "a bool"),
    ("downsample-unknown", {"downsample": "max"}, "downsample", "'max'", "('conv', 'avg')"),
    ("attention-unknown", {"attention": "cbam"}, "attention", "'cbam'", "(None, 'se', 'eca')"),
    ("se_ratio-zero", {"attention": "se", "se_ratio": 0.0}, "se_ratio", "0.0", "(0, 1]"),
    ("se_ratio-above-one", {"attention": "se", "se_ratio": 2}, "se_ratio", "2", "(0, 1]"),
    ("output_stride-4", {"output_stride": 4}, "output_stride", "4", "(8, 16, 32)"),
    ("output_stride-str", {"output_stride": "16"}, "output_stride", "'16'", "(8, 16, 32)"),
    ("stem_width-tiered-too-small", {"stem": "deep_tiered", "stem_width": 3}, "stem_width", "3", "at least 4"),
    ("name-empty", {"name": ""}, "name", "''", "non-empty string"),
    ("name-none", {"name": None}, "name", "None", "non-empty string"),
]


@pytest.mark.parametrize(("kwargs", "field", "received", "allowed"), [case[1:] for case in INVALID],
                         ids=[case[0] for case in INVALID])
def test_invalid_field_names_field_value_and_allowed(kwargs, field, received, allowed):
    with pytest.raises(rc.SpecError) as info:
        ResNetSpec(**kwargs)
    message = str(info.value)
    assert f"{field}={received}" in message, message  # the field and the value received, as given
    assert allowed in message, message  # what would have been accepted
    assert isinstance(info.value, ValueError)  # SpecError is a ValueError, so generic handlers catch it


@pytest.mark.parametrize(("kwargs", "field", "received", "allowed"), [case[1:] for case in INVALID[:12]],
                         ids=[case[0] for case in INVALID[:12]])
def test_replace_validates_like_the_constructor(kwargs, field, received, allowed):
    base = ResNetSpec()
    with pytest.raises(rc.SpecError, match=field):
        base.replace(**kwargs)


VALID = [
    ("defaults", {}),
    ("one-stage", {"layers": (1,)}),
    ("five-stages", {"layers": (1, 1, 1, 1, 1)}),
    ("basic-defaults", {"block": "basic", "layers": [2, 2]}),
    ("bn_momentum-zero", {"bn_momentum": 0}),
    ("bn_momentum-one", {"bn_momentum": 1.0}),
    ("bn_eps-tiny", {"bn_eps": 1e-12}),
    ("headless-zero-classes", {"include_top": False, "num_classes": 0}),
    ("headless-max", {"include_top": False, "pooling": "max"}),
    ("headless-avg", {"include_top": False, "pooling": "avg"}),
    ("stride_in_1x1-bottleneck", {"stride_in_1x1": True}),
    ("grouped", {"groups": 64, "width_per_group": 4}),
]


@pytest.mark.parametrize("kwargs", [case[1] for case in VALID], ids=[case[0] for case in VALID])
def test_valid_specs_keep_their_values(kwargs):
    spec = ResNetSpec(**kwargs)
    for key, value in kwargs.items():
        expected = tuple(value) if key == "layers" else value
        assert getattr(spec, key) == expected


def test_spec_is_frozen():
    spec = ResNetSpec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.groups = 32  # type: ignore[misc]
    assert spec.groups == 1


def test_specs_are_hashable_and_equal_specs_hash_equal():
    a = ResNetSpec(layers=(2, 2), groups=4, width_per_group=16)
    b = ResNetSpec(layers=[2, 2], groups=4, width_per_group=16)
    c = a.replace(groups=8)
    assert a == b and hash(a) == hash(b)
    assert a != c
    assert {a: "x", c: "y"}[b] == "x"
    assert len({a, b, c}) == 2


def test_name_is_a_label_not_part_of_identity():
    # Two specs differing only by name describe the same network (and share one plan).
    a, b = ResNetSpec(name="a"), ResNetSpec(name="b")
    assert a == b and hash(a) == hash(b)
    assert (a.name, b.name) == ("a", "b")


@pytest.mark.parametrize("layers", [[3, 4, 6, 3], (3, 4, 6, 3), range(1, 5)], ids=["list", "tuple", "range"])
def test_layers_normalise_to_tuple(layers):
    spec = ResNetSpec(layers=layers)
    assert type(spec.layers) is tuple
    assert spec.layers == tuple(layers)


def test_replace_returns_new_spec_and_leaves_original():
    spec = ResNetSpec()
    other = spec.replace(layers=[3, 8, 36, 3], num_classes=10)
    assert other.layers == (3, 8, 36, 3) and type(other.layers) is tuple
    assert other.num_classes == 10
    assert spec.layers == (3, 4, 6, 3) and spec.num_classes == 1000


@pytest.mark.parametrize("name", rc.list_specs())
def test_json_round_trip_of_every_preset(name):
    spec = rc.get_spec(name)
    text = spec.to_json()
    data = json.loads(text)
    assert data["layers"] == list(spec.layers)  # JSON-friendly: a list
    back = ResNetSpec.from_json(text)
    assert back == spec
    assert back.name == spec.name  # name is not compared by ==, so check it explicitly
    assert back.to_dict() == spec.to_dict()


def test_to_dict_from_dict_round_trip_with_every_field_changed():
    spec = ResNetSpec(block="bottleneck", layers=(1, 2), groups=2, width_per_group=8, num_classes=7,
                      include_top=False, pooling="max", in_channels=1, stem_width=8, base_planes=8,
                      bn_eps=1e-3, bn_momentum=0.01, zero_init_residual=True, stride_in_1x1=True,
                      conv_bias=True, name="custom")
    data = spec.to_dict()
    assert set(data) == {f.name for f in dataclasses.fields(ResNetSpec)}
    back = ResNetSpec.from_dict(data)
    assert back == spec and back.name == "custom"
    assert all(getattr(back, k) == getattr(spec, k) for k in data)
    assert ResNetSpec.from_json(spec.to_json()).to_dict() == data


def test_from_dict_rejects_unknown_fields_naming_each():
    data = {**ResNetSpec().to_dict(), "blocks": "basic", "depth": 50}
    with pytest.raises(rc.SpecError) as info:
        ResNetSpec.from_dict(data)
    message = str(info.value)
    assert "'blocks'" in message and "'depth'" in message
    assert "width_per_group" in message  # and lists the known fields


def test_from_dict_validates_values():
    with pytest.raises(rc.SpecError, match=r"groups=0"):
        ResNetSpec.from_dict({"groups": 0})


def test_from_dict_does_not_mutate_its_input():
    data = {"layers": [1, 1], "block": "basic"}
    snapshot = json.loads(json.dumps(data))
    ResNetSpec.from_dict(data)
    assert data == snapshot


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"])
def test_depth_matches_the_number_in_the_name(name):
    assert rc.get_spec(name).depth == int(name.removeprefix("resnet"))


@pytest.mark.parametrize(("block", "expansion"), [("basic", 1), ("bottleneck", 4)])
def test_expansion(block, expansion):
    assert ResNetSpec(block=block).expansion == expansion


# (field, a value without effect, the spec changes that leave it without effect, one that gives it effect)
NO_EFFECT = [
    ("se_ratio", 0.25, {}, {"attention": "se"}),
    ("se_ratio", 0.25, {"attention": "eca"}, {"attention": "se"}),
    ("num_classes", 7, {"include_top": False, "pooling": "avg"}, {"include_top": True, "pooling": None}),
    ("norm_groups", 8, {}, {"norm": "group"}),
    ("bn_momentum", 0.01, {"norm": "group"}, {"norm": "batch"}),
    ("std_conv_eps", 1e-3, {}, {"std_conv": True}),
    ("stem_pool_padding", "zero", {}, {"preact": True}),
    ("stem_pool_padding", "zero", {"preact": True, "stem_pool": False}, {"stem_pool": True}),
]


@pytest.mark.parametrize(("field", "value", "base", "effect"), NO_EFFECT,
                         ids=[f"{r[0]}-{'-'.join(r[2]) or 'default'}" for r in NO_EFFECT])
def test_fields_without_effect_compare_as_their_defaults_and_keep_their_value(field, value, base, effect):
    plain = ResNetSpec(layers=(1, 1), base_planes=32, **base)
    noisy = plain.replace(**{field: value})
    assert noisy == plain and hash(noisy) == hash(plain) and len({noisy, plain}) == 1
    assert getattr(noisy, field) == value and getattr(noisy.canonical(), field) == getattr(plain, field)
    tensors = [[(p.name, p.shape) for p in rc.make_plan(s).params] for s in (noisy, plain)]
    assert tensors[0] == tensors[1]
    # the value is kept, so giving the field an effect uses it, and then the specs differ
    assert getattr(noisy.replace(**effect), field) == value
    assert noisy.replace(**effect) != plain.replace(**effect)
    back = ResNetSpec.from_json(noisy.to_json())
    assert back == noisy and getattr(back, field) == value


def test_fields_with_effect_still_tell_specs_apart():
    spec = ResNetSpec(attention="se")
    assert spec.replace(se_ratio=0.25) != spec and spec.canonical() is spec
    assert ResNetSpec(num_classes=7) != ResNetSpec() and ResNetSpec(name="a") == ResNetSpec(name="b")
