"""Spec inference from tensor names and shapes: presets, custom structures, ambiguity. numpy only."""

from __future__ import annotations

import pytest
from safetensors_helpers import strip_metadata

import resnet_core as rc
from resnet_core import presets
from resnet_core.io import InferenceError, infer_spec, read_weights
from resnet_core.io.infer import _structure
from resnet_core.plan import depths_shown
from resnet_core.testing import random_weights

FIELDS = set(rc.spec.FIELD_NAMES)  # fields and 0.1's flat names


def shapes(spec: rc.ResNetSpec) -> dict[str, tuple[int, ...]]:
    return {p.name: p.shape for p in rc.make_plan(spec).params}


@pytest.mark.parametrize("name", rc.list_specs())
def test_every_preset_is_recognised(name):
    spec, note = infer_spec(shapes(rc.get_spec(name)))
    preset = rc.get_spec(name)
    twins = [n for n in rc.list_specs() if rc.get_spec(n) == preset.replace(anti_alias=None)]
    if preset.anti_alias is not None and twins:  # the plain twin's tensors are the same
        assert spec == preset.replace(anti_alias=None) and spec.name == twins[0]
        return
    assert spec == preset and spec.name == name
    unseen = f" (anti_alias={preset.anti_alias!r} is the preset's: weights do not show it)" if preset.anti_alias else ""
    assert note == f"inferred from tensor names and shapes: preset {name}" + unseen


def test_a_preset_with_another_head_or_input_keeps_its_name_and_says_what_changed():
    spec, note = infer_spec(shapes(rc.get_spec("resnet50").replace(num_classes=10, in_channels=1)))
    assert spec == rc.get_spec("resnet50").replace(num_classes=10, in_channels=1) and spec.name == "resnet50"
    assert note.endswith("preset resnet50 with num_classes=10, in_channels=1") or \
        note.endswith("preset resnet50 with in_channels=1, num_classes=10")
    headless, note = infer_spec(shapes(rc.get_spec("resnet18").replace(include_top=False)))
    assert headless == rc.get_spec("resnet18").replace(include_top=False)
    assert "include_top=False" in note


def test_keras_applications_presets_are_told_apart_by_their_conv_biases():
    spec, _ = infer_spec(shapes(rc.get_spec("keras_resnet50")))
    assert spec.name == "keras_resnet50" and spec.stride_in_1x1 and spec.bn_eps == 1.001e-5


def custom_specs() -> list[rc.ResNetSpec]:
    specs = [
        rc.ResNetSpec(block="basic", layers=(2, 3, 1), in_channels=1, stem_width=32, base_planes=32, num_classes=7),
        rc.ResNetSpec(layers=(1, 2, 2, 1, 1), groups=2, width_per_group=32, base_planes=32, num_classes=12),
        rc.ResNetSpec(layers=(2, 1, 1, 1), groups=8, width_per_group=8, stem_width=24, base_planes=16,
                      conv_bias=True, include_top=False),
    ]
    if {"stem", "downsample", "attention", "se_ratio"} <= FIELDS:
        specs += [
            rc.ResNetSpec(layers=(1, 1, 2, 1), stem="deep", stem_width=16, base_planes=16, downsample="avg",
                          attention="se", se_ratio=1 / 8, num_classes=4),
            rc.ResNetSpec(block="basic", layers=(1, 1, 1, 1), stem="deep_tiered", stem_width=16, base_planes=16,
                          attention="se", num_classes=4),
            rc.ResNetSpec(layers=(1, 2, 1, 1), stem_width=16, base_planes=16, preact=True, num_classes=4),
            rc.ResNetSpec(block="basic", layers=(1, 1, 1, 1), stem="deep", stem_width=16, base_planes=16,
                          preact=True, conv_bias=True, include_top=False),
            # timm's ECA, ResNet-RS stem and SENet-154 options: each shows in the tensors
            rc.ResNetSpec(layers=(1, 1, 1, 1), stem="deep_tiered", stem_width=16, base_planes=16, downsample="avg",
                          attention="eca", replace_stem_pool=True, num_classes=4),
            rc.ResNetSpec(layers=(1, 2, 1, 1), groups=4, width_per_group=16, stem="deep", stem_width=16,
                          base_planes=16, reduce_first=2, down_kernel_size=3, num_classes=4),
            rc.ResNetSpec(block="basic", layers=(1, 1, 1, 1), base_planes=16, reduce_first=2, down_kernel_size=3,
                          attention="eca", num_classes=4),
        ]
    return specs


@pytest.mark.parametrize("spec", custom_specs(), ids=lambda s: "-".join(map(str, s.layers)))
def test_custom_structures_are_read_off_the_tensors(spec):
    inferred, note = infer_spec(shapes(spec))
    assert shapes(inferred) == shapes(spec)
    assert inferred == spec  # every field the weights determine, and defaults for the rest
    assert note.startswith("inferred from tensor names and shapes (no preset matches)")
    assert "assumed, as weights do not show them: stride_in_1x1=False" in note
    if spec.preact:
        assert "stride_block='first', stem_pool_padding='-inf'" in note


def test_preact_presets_are_told_apart_by_their_biases():
    for name in ("keras_resnet50v2", "resnetv2_50"):
        spec, note = infer_spec(shapes(rc.get_spec(name)))
        assert spec.name == name and note == f"inferred from tensor names and shapes: preset {name}"


def test_ambiguity_asks_for_the_arch(monkeypatch):
    twin = rc.get_spec("resnet50").replace(stride_in_1x1=True, name="resnet50_v1")
    monkeypatch.setitem(presets._REGISTRY, "resnet50_v1", twin)
    with pytest.raises(InferenceError, match=r"fit several presets \(resnet50, resnet50_v1\).*spec=NAME"):
        infer_spec(shapes(rc.get_spec("resnet50")))


def test_tensors_of_no_resnet_are_not_guessed():
    with pytest.raises(InferenceError, match="no tensor 'conv1.0.weight'"):
        infer_spec({"encoder.weight": (3, 4)})
    broken = shapes(rc.get_spec("resnet18"))
    broken["layer2.0.conv1.weight"] = (128, 64, 5, 5)
    with pytest.raises(InferenceError, match=r"layer2.0.conv1.weight has shape \(128, 64, 5, 5\), the guess expects "
                                             r"shape \(128, 64, 3, 3\)"):
        _structure(broken)


def test_a_file_without_spec_says_it_was_inferred(tmp_path):
    from resnet_core.io import open_weights
    from resnet_core.io.safetensors_io import write as write_safetensors

    spec = custom_specs()[0]
    weights = random_weights(spec)
    # a safetensors file in canonical names but without our metadata, as other tools write it
    path = tmp_path / "plain.safetensors"
    write_safetensors(path, spec, {k: _info(v) for k, v in weights.items()}, weights.__getitem__, lambda n: None)
    strip_metadata(path)
    with open_weights(path) as opened:
        assert opened.spec_source == "inferred" and opened.spec == spec
        assert opened.note.startswith("inferred from tensor names and shapes")
    assert read_weights(path).spec == spec


def _info(array):
    from resnet_core.io.formats import TensorInfo

    return TensorInfo(array.shape, array.dtype)


@pytest.mark.parametrize("name", rc.list_specs())
def test_plan_names_show_the_stage_depths(name):
    """Inference rules out presets by the depths the names show before making their plans: the names must show them."""
    spec = rc.get_spec(name)
    assert depths_shown(p.name for p in rc.make_plan(spec).params) == tuple(spec.layers)
