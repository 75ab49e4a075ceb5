"""ResNetSpec: validation messages, the sub-specs and 0.1's flat names, normalisation and serialisation
(framework-free)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

import resnet_core as rc
from resnet_core.drop_rates import DROP_FIELDS
from resnet_core.spec import (
    ALIASES,
    FLAT_FIELDS,
    SE,
    Basic,
    BatchNorm,
    Bottleneck,
    Classifier,
    Features,
    GroupNorm,
    ResNetSpec,
    StdConv,
    Stem,
)

FIXTURE_SPEC = Path(__file__).parents[1] / "fixtures" / "v0_1" / "specs" / "resnet18_like.json"

# (id, constructor kwargs, field the message must name, received value as the message must show it,
#  text of the allowed values the message must contain)
INVALID = [
    ("block-unknown", {"block": "resnet"}, "block", "'resnet'", "('basic', 'bottleneck', 'resnest'"),
    ("block-none", {"block": None}, "block", "None", "('basic', 'bottleneck', 'resnest'"),
    ("block-capitalised", {"block": "Bottleneck"}, "block", "'Bottleneck'", "('basic', 'bottleneck', 'resnest'"),
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
    ("num_classes-negative", {"num_classes": -1}, "num_classes", "-1", "positive integer"),
    ("num_classes-float", {"num_classes": 10.0}, "num_classes", "10.0", "positive integer"),
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
    ("eca_kernels-without-eca", {"eca_kernels": (3, 3, 3, 3)}, "eca_kernels", "(3, 3, 3, 3)", "attention='eca'"),
    ("eca_kernels-even", {"attention": "eca", "eca_kernels": (3, 4, 3, 3)}, "eca_kernels", "(3, 4, 3, 3)", "odd"),
    ("block_types-unknown", {"block_types": ("bottleneck", "plain")}, "block_types", "('bottleneck', 'plain')",
     "('basic', 'bottleneck', 'resnest', 'res2net', 'sk_basic', 'sk_bottleneck') per stage"),
    ("replace_stem_pool-without-pool", {"stem_pool": False, "replace_stem_pool": True}, "replace_stem_pool", "True",
     "False without stem_pool"),
    ("norm-unknown", {"norm": "layer"}, "norm", "'layer'", "('batch', 'group', 'evo_s0', 'frn', 'folded')"),
    ("norm_groups-zero", {"norm": "group", "norm_groups": 0}, "norm_groups", "0", "positive integer"),
    ("std_conv_eps-zero", {"std_conv": True, "std_conv_eps": 0}, "std_conv_eps", "0", "(0, 1)"),
    ("norm_spec-a-string", {"norm_spec": "batch"}, "norm_spec", "'batch'", "BatchNorm or GroupNorm"),
    ("attention_spec-a-string", {"attention_spec": "se"}, "attention_spec", "'se'", "SE or ECA or None"),
    ("block_spec-per-stage-count", {"block_spec": (Basic(), Basic())}, "block_types", "('basic', 'basic')",
     "per stage (4 stages)"),
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
    ("headless", {"include_top": False}),
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
    spec = ResNetSpec(block="bottleneck", layers=(1, 2), groups=2, width_per_group=8, include_top=False,
                      pooling="max", in_channels=1, stem_width=8, base_planes=8, bn_eps=1e-3, bn_momentum=0.01,
                      zero_init_residual=True, stride_in_1x1=True, conv_bias=True, name="custom")
    data = spec.to_dict()
    assert data["format"] == 2 and data["norm_spec"] == {"type": "batch", "eps": 1e-3, "momentum": 0.01}
    assert data["head_spec"] == {"type": "features", "pooling": "max"}
    back = ResNetSpec.from_dict(data)
    assert back == spec and back.name == "custom"
    assert back.to_dict(flat=True) == spec.to_dict(flat=True)
    assert ResNetSpec.from_json(spec.to_json()).to_dict() == data


def test_the_flat_names_are_those_of_0_1_and_the_drop_rates_and_read_what_they_did():
    old = json.loads(FIXTURE_SPEC.read_text())  # resnet-core 0.1's to_json: every field it had
    assert set(FLAT_FIELDS) == set(old) | set(DROP_FIELDS)  # and the plain fields added since
    assert set(ALIASES) == set(old) - {f.name for f in dataclasses.fields(ResNetSpec)}
    spec = ResNetSpec.from_dict(old)
    assert spec.to_dict(flat=True) == {**old, "drop_rate": 0.0, "drop_path_rate": 0.0}  # as 0.1 stored


def test_flat_and_structured_keywords_build_the_same_spec():
    flat = ResNetSpec(block="basic", layers=(1, 1), norm="group", norm_groups=8, bn_eps=1e-3, attention="se",
                      se_ratio=0.25, include_top=False, pooling="avg", std_conv=True, std_conv_eps=1e-8, stem="deep",
                      stem_width=16, replace_stem_pool=True)
    structured = ResNetSpec(block_spec=Basic(), layers=(1, 1), norm_spec=GroupNorm(groups=8, eps=1e-3),
                            attention_spec=SE(ratio=0.25), head_spec=Features(pooling="avg"),
                            std_conv_spec=StdConv(eps=1e-8), stem_spec=Stem(kind="deep", width=16, pool="conv"))
    assert flat == structured and hash(flat) == hash(structured)
    assert (flat.norm, flat.norm_groups, flat.bn_eps, flat.se_ratio, flat.stem_pool, flat.replace_stem_pool) == \
        ("group", 8, 1e-3, 0.25, True, True)


def test_flat_names_change_the_sub_spec_given_keeping_its_other_parameters():
    spec = ResNetSpec(norm_spec=BatchNorm(eps=1e-3, momentum=0.01))
    assert spec.replace(norm="group").norm_spec == GroupNorm(groups=32, eps=1e-3)  # the eps carries over
    assert spec.replace(bn_momentum=0.2).norm_spec == BatchNorm(eps=1e-3, momentum=0.2)
    resnext = ResNetSpec(groups=32, width_per_group=4)
    assert resnext.replace(stride_in_1x1=True).block_spec == Bottleneck(32, 4, stride_in_1x1=True)
    assert resnext.replace(num_classes=10).head_spec == Classifier(10)
    # a flat name and its sub-spec given together: the flat name changes the sub-spec
    assert ResNetSpec(norm_spec=GroupNorm(groups=8), bn_eps=1e-3).norm_spec == GroupNorm(groups=8, eps=1e-3)


def test_a_per_stage_block_tuple_of_one_type_is_that_type():
    per_stage = ResNetSpec(layers=(1, 1), block_spec=(Basic(), Basic()))
    assert per_stage.block_spec == Basic() and per_stage == ResNetSpec(layers=(1, 1), block="basic")
    mixed = ResNetSpec(layers=(1, 1), block="basic", block_types=("basic", "bottleneck"))
    assert mixed.block_spec == (Basic(), Bottleneck()) and mixed.block == "basic"
    with pytest.raises(rc.SpecError, match=r"block_spec.*one Bottleneck for every bottleneck stage"):
        ResNetSpec(layers=(1, 1, 1), block_spec=(Bottleneck(), Basic(), Bottleneck(groups=2, width_per_group=32)))


@pytest.mark.parametrize("call", [lambda: ResNetSpec(num_class=10), lambda: ResNetSpec().replace(num_class=10),
                                  lambda: ResNetSpec.from_dict({"num_class": 10})],
                         ids=["constructor", "replace", "from_dict"])
def test_an_unknown_name_is_a_spec_error_naming_the_closest_field(call):
    with pytest.raises(rc.SpecError, match=r"^Unknown ResNetSpec field 'num_class'; did you mean 'num_classes'\?$"):
        call()


def test_from_dict_rejects_unknown_fields_naming_each():
    data = {**ResNetSpec().to_dict(), "blocks": "basic", "depth": 50}
    with pytest.raises(rc.SpecError) as info:
        ResNetSpec.from_dict(data)
    message = str(info.value)
    assert "'blocks'; did you mean 'block'?" in message and "'depth'" in message
    assert "width_per_group" in message and "norm_spec" in message  # and lists the known names


def test_from_dict_reads_both_formats_and_refuses_a_newer_one():
    spec = ResNetSpec(block="basic", layers=(1, 1), attention="eca", eca_kernels=(5, 7))
    flat, structured = spec.to_dict(flat=True), spec.to_dict()
    assert "format" not in flat and structured["attention_spec"] == {"type": "eca", "kernels": [5, 7]}
    assert ResNetSpec.from_dict(flat) == ResNetSpec.from_dict(structured) == spec
    assert ResNetSpec.from_dict({**structured, "num_classes": 7}).num_classes == 7  # flat names mix in
    with pytest.raises(rc.SpecError, match=r"format 3.*reads formats 1 \(flat\) and 2"):
        ResNetSpec.from_dict({**structured, "format": 3})
    with pytest.raises(rc.SpecError, match=r"attention_spec.*expected a type among \['se', 'eca'\]"):
        ResNetSpec.from_dict({**structured, "attention_spec": {"type": "cbam"}})
    with pytest.raises(rc.SpecError, match=r"norm_spec: BatchNorm .*'groups'"):
        ResNetSpec.from_dict({**structured, "norm_spec": {"type": "batch", "groups": 4}})


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


# (flat field, a value without effect, the spec changes that leave it without effect, one that gives it effect)
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
def test_a_value_without_effect_has_no_place_in_the_spec(field, value, base, effect):
    """0.1 kept such values (its files hold them) and compared them as defaults; now no sub-spec holds them."""
    plain = ResNetSpec(layers=(1, 1), base_planes=32, **base)
    noisy = ResNetSpec(layers=(1, 1), base_planes=32, **base, **{field: value})
    assert noisy == plain and hash(noisy) == hash(plain) and noisy.to_json() == plain.to_json()
    assert getattr(noisy, field) == getattr(plain, field) != value
    # given with the option that uses it, it is kept and tells the specs apart
    used = plain.replace(**effect, **{field: value})
    assert getattr(used, field) == value and used != plain.replace(**effect)
    assert ResNetSpec.from_json(used.to_json()) == used


def test_specs_differing_in_a_used_value_or_only_in_name():
    assert ResNetSpec(attention="se").replace(se_ratio=0.25) != ResNetSpec(attention="se")
    assert ResNetSpec(num_classes=7) != ResNetSpec() and ResNetSpec(name="a") == ResNetSpec(name="b")


def test_build_refuses_an_unknown_override_naming_the_closest_field():
    """rc.build routes overrides through spec.replace: the error comes before any framework loads."""
    with pytest.raises(rc.SpecError, match=r"^Unknown ResNetSpec field 'num_class'; did you mean 'num_classes'\?$"):
        rc.build("resnet18", backend="torch", num_class=10)


def test_flat_block_names_change_a_per_stage_block_spec():
    """Importers pass the width rule's flat names (block, block_types, width_per_group) to specs whose
    block_spec is a tuple, one block per stage."""
    spec = rc.get_spec("test_resnet")
    assert isinstance(spec.block_spec, tuple)
    assert spec.replace(block=spec.block, block_types=spec.block_types, width_per_group=64) == spec
    assert spec.replace(block_types=("basic",) * 4).block_spec == rc.ResNetSpec(block="basic").block_spec
