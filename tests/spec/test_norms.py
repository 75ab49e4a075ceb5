"""Norm kinds (batch, group, evo_s0, frn) and weight-standardised convs: spec, plan and weight table. numpy only.

The numbers (formulas against timm, cross-framework parity) are in test_peers_timm_norms.py.
"""

from __future__ import annotations

import pytest

import resnet_core as rc
from resnet_core.io import infer_spec
from resnet_core.plan import NORM_ROLES
from resnet_core.spec import SpecError
from resnet_core.testing import random_weights

_V2D = rc.ResNetSpec(preact=True, layers=(1, 1, 1, 1), stem="deep", stem_width=32, downsample="avg", num_classes=5)


@pytest.mark.parametrize(("changes", "text"), [
    ({"norm": "layer"}, "ResNetSpec.norm: expected one of ('batch', 'group', 'evo_s0', 'frn', 'folded')"),
    ({"norm": "evo_s0", "preact": False}, "with preact=False"),
    ({"norm": "frn", "preact": False}, "with preact=False"),
    ({"norm_groups": 0}, "ResNetSpec.norm_groups: expected a positive integer"),
    ({"std_conv": 1}, "ResNetSpec.std_conv: expected a bool"),
    ({"std_conv_eps": 0.0}, "ResNetSpec.std_conv_eps: expected a float in (0, 1)"),
    ({"std_conv": True, "stem": "7x7", "stem_width": 1}, "ResNetSpec.std_conv: expected False when a width is 1"),
])
def test_bad_norm_fields_are_refused_by_name(changes, text):
    with pytest.raises(SpecError, match="Received") as info:
        _V2D.replace(preact=changes.pop("preact", True), **changes)
    assert text in str(info.value)


def test_a_group_count_that_divides_no_width_is_refused_naming_the_width():
    # the 32-channel stem norm is not divisible by 24: refused when the spec is made, not when it is built
    with pytest.raises(SpecError, match=r"norm_groups.*the stem's conv 1 has 32 channels"):
        _V2D.replace(norm="group", norm_groups=24)


@pytest.mark.parametrize("norm", ["batch", "group", "evo_s0", "frn"])
def test_each_kind_owns_timms_tensors_and_fuses_its_activation(norm):
    plan = rc.make_plan(_V2D.replace(norm=norm))
    suffixes = {"batch": ["weight", "bias", "running_mean", "running_var"], "group": ["weight", "bias"],
                "evo_s0": ["weight", "bias", "v"], "frn": ["weight", "bias", "tau"]}[norm]
    assert [p.name for p in plan.params if p.module == "layer1.0.norm1"] == [f"layer1.0.norm1.{s}" for s in suffixes]
    assert [p.role for p in plan.params if p.module == "norm"] == list(NORM_ROLES[norm])
    for n in plan.norms():
        assert n.kind == norm and n.groups == (32 if norm in ("group", "evo_s0") else 1)
        assert n.fused_act == (norm in ("evo_s0", "frn")) and n.eps == 1e-5
    trainable = {p.role for p in plan.params if p.trainable}
    assert trainable == set(NORM_ROLES[norm]) - {"moving_mean", "moving_variance"} | {"kernel", "bias"}


def test_std_conv_marks_every_block_and_stem_conv_but_not_the_classifier():
    plan = rc.make_plan(rc.get_spec("resnetv2_50x1_bit"))
    convs = [m for m in plan.modules() if not isinstance(m, rc.plan.Norm)]
    assert convs and all(c.standardize_eps == 1e-8 for c in convs)
    assert plan.stem.pool.pad_value == 0.0 and plan.stem.units[0].conv.padding == 3
    assert rc.make_plan(rc.get_spec("resnetv2_50")).stem.units[0].conv.standardize_eps is None


def test_bit_widths_scale_with_the_width_factor():
    plan = rc.make_plan(rc.get_spec("resnetv2_50x3_bit"))
    assert plan.stem.out_channels == 192
    assert [b.out_channels for b in plan.blocks if b.index == 0] == [768, 1536, 3072, 6144]
    assert plan.blocks[0].main[1].conv.out_channels == 192


@pytest.mark.parametrize("name", ["resnet50_gn", "resnetv2_50d_gn", "resnetv2_50d_evos", "resnetv2_50d_frn",
                                  "resnetv2_50x1_bit", "resnetv2_152x2_bit"])
def test_presets_are_inferred_from_their_tensors(name):
    weights = {p.name: p.shape for p in rc.make_plan(rc.get_spec(name)).params}
    spec, note = infer_spec(weights)
    assert spec == rc.get_spec(name) and note.endswith(f"preset {name}")


@pytest.mark.parametrize("spec", [
    _V2D.replace(norm="evo_s0", base_planes=32, downsample="conv"),  # (preact: the avg pool is invisible)
    _V2D.replace(norm="frn", stem="7x7", downsample="conv"),
    rc.ResNetSpec(block="basic", layers=(1, 1, 1, 1), norm="group", num_classes=3),
], ids=["evo_s0", "frn", "group-post-activation"])
def test_custom_norm_specs_are_inferred_from_tensor_names(spec):
    got, note = infer_spec(random_weights(spec))
    assert got == spec and "no preset matches" in note
    assert f"norm={spec.norm!r}" in note or f"norm={spec.norm}" in note.replace("'", "")
    assert "std_conv=False" in note  # weights do not show it, and the note says so


def test_peers_that_know_only_batch_norm_refuse_other_norms_by_name():
    from resnet_core.peers._common import refuse_export

    spec = rc.get_spec("resnetv2_50x1_bit")
    with pytest.raises(rc.PeerError, match="norm='group' .*std_conv=True") as info:
        refuse_export(spec, "keras.applications", [])
    assert "keras.applications builds batch norms only" in str(info.value)
    refuse_export(spec, "timm", [], norms=("batch", "group"), std_conv=True)  # what timm's ResNetV2 can build
