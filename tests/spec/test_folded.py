"""Folded norms (``norm="folded"``): the spec, its plan, rc.fold_norms' refusals, JSON and safetensors round
trips, inference from tensor names, and the peers' refusals. numpy only; the numbers are checked against the
unfolded models in test_folded_torch.py and test_folded_keras.py."""

from __future__ import annotations

import numpy as np
import pytest
from folded_helpers import FOLDABLE, TINY, folded

import resnet_core as rc
from resnet_core.io import infer_spec, read_weights
from resnet_core.spec import Folded, ResNeSt
from resnet_core.testing import random_weights


def test_the_flat_name_and_the_sub_spec_are_one_spec_and_conv_bias_reads_true():
    spec = rc.ResNetSpec(norm="folded")
    assert spec == rc.ResNetSpec(norm_spec=Folded(), conv_bias=True) == rc.ResNetSpec(norm_spec=Folded())
    assert spec.norm_spec == Folded() and spec.norm == "folded" and spec.conv_bias is True
    assert rc.get_spec("resnet50").replace(norm="folded").replace(norm="batch").conv_bias is True  # it stays


@pytest.mark.parametrize("name", sorted(FOLDABLE))
def test_the_plan_keeps_the_conv_names_biases_every_conv_and_has_no_norm(name):
    spec = FOLDABLE[name].replace(norm="folded")
    plan = rc.make_plan(spec)
    unfolded = rc.make_plan(FOLDABLE[name])
    assert plan.norms() == []
    convs = [p.module for p in unfolded.params if p.role == "kernel" and len(p.shape) == 4]
    want = [n for c in convs for n in (f"{c}.weight", f"{c}.bias")]
    got = [p.name for p in plan.params if len(p.shape) == 4 or p.module in convs]
    assert got == want
    assert not any(p.role in ("gamma", "moving_mean") for p in plan.params)
    # the ReLUs stay where they were: every unit is activated as its unfolded twin
    units = lambda p: [(u.conv.name, u.relu) for b in p.blocks for u in b.main] + \
        [(u.conv.name, u.relu) for u in p.stem.units]  # noqa: E731
    assert units(plan) == units(unfolded)


@pytest.mark.parametrize("name", sorted(FOLDABLE))
def test_fold_norms_gives_the_folded_spec_and_exactly_its_tensors(name):
    spec, weights = folded(name)
    assert spec == FOLDABLE[name].replace(norm="folded") and spec.name == FOLDABLE[name].name
    assert list(weights) == [p.name for p in rc.make_plan(spec).params]
    assert all(weights[p.name].shape == p.shape and weights[p.name].dtype == np.float32
               for p in rc.make_plan(spec).params)


def test_fold_norms_is_the_formula_in_float64_then_the_kernels_dtype():
    weights = random_weights(rc.make_plan(TINY), dtype="float16")
    _, out = rc.fold_norms(TINY, weights)
    w, g, b, m, v = (weights[k].astype(np.float64) for k in ("conv1.weight", "bn1.weight", "bn1.bias",
                                                            "bn1.running_mean", "bn1.running_var"))
    scale = g / np.sqrt(v + TINY.bn_eps)
    assert out["conv1.weight"].dtype == np.float16 and out["conv1.bias"].dtype == np.float16
    np.testing.assert_array_equal(out["conv1.weight"], (w * scale[:, None, None, None]).astype(np.float16))
    np.testing.assert_array_equal(out["conv1.bias"], (b - m * scale).astype(np.float16))
    np.testing.assert_array_equal(out["fc.weight"], weights["fc.weight"])  # kept as it was


def test_zero_init_residual_is_dropped_by_the_fold():
    spec, _ = rc.fold_norms(TINY.replace(zero_init_residual=True), random_weights(rc.make_plan(TINY)))
    assert spec.zero_init_residual is False


@pytest.mark.parametrize("changes, field", [
    ({"preact": True}, "preact"),
    ({"zero_init_residual": True}, "zero_init_residual"),
    ({"std_conv": True}, "std_conv"),
    ({"block_spec": ResNeSt()}, "norm"),
])
def test_the_spec_refuses_what_cannot_fold_naming_the_field(changes, field):
    with pytest.raises(rc.SpecError, match=rf"Invalid ResNetSpec\.{field}: .*'folded'"):
        TINY.replace(norm="folded", **changes)


@pytest.mark.parametrize("spec, problem", [
    (TINY.replace(norm="group", norm_groups=8), "norm='group'"),
    (TINY.replace(norm="evo_s0", norm_groups=8, preact=True), "norm='evo_s0'"),
    (TINY.replace(norm="frn", preact=True), "norm='frn'"),
    (TINY.replace(preact=True), "preact=True"),
    (TINY.replace(std_conv=True), "std_conv=True"),
    (TINY.replace(norm="folded"), "folded already"),
])
def test_fold_norms_refuses_naming_the_norm(spec, problem):
    with pytest.raises(rc.SpecError, match=f"Cannot fold the norms of spec 'tiny': .*{problem}"):
        rc.fold_norms(spec, random_weights(rc.make_plan(spec)))


def test_fold_norms_refuses_weights_that_do_not_fit():
    weights = random_weights(rc.make_plan(TINY))
    del weights["bn1.running_var"]
    with pytest.raises(rc.WeightsMismatchError, match="missing 1 key.*bn1.running_var"):
        rc.fold_norms(TINY, weights)


@pytest.mark.parametrize("name", sorted(FOLDABLE))
def test_the_folded_spec_round_trips_through_json(name):
    spec, _ = folded(name)
    assert rc.ResNetSpec.from_json(spec.to_json()) == spec
    assert '"norm_spec": {"type": "folded"}' in spec.to_json()
    assert rc.ResNetSpec.from_dict(spec.to_dict(flat=True)) == spec


@pytest.mark.parametrize("name", sorted(FOLDABLE))
def test_inference_from_names_and_shapes_gives_the_folded_spec(name):
    spec, weights = folded(name)
    inferred, note = infer_spec(weights)
    # stride_in_1x1, anti_alias and output_stride show in no tensor: they are assumed at their defaults
    assert inferred == spec.replace(stride_in_1x1=False, anti_alias=None, output_stride=32)
    assert "norm='folded'" in note


@pytest.mark.parametrize("preset", ["resnet50", "resnet50d", "seresnext26d_32x4d", "ecaresnet50t", "resnetrs50"])
def test_folded_presets_infer_back(preset):
    spec = rc.get_spec(preset).replace(norm="folded")
    inferred, _ = infer_spec({p.name: p.shape for p in rc.make_plan(spec).params})
    assert inferred == spec.replace(anti_alias=None, stride_in_1x1=False, zero_init_residual=False)


@pytest.mark.torch  # the frameworks env: safetensors' own writer for the bare file
def test_a_folded_safetensors_file_round_trips_bit_for_bit_with_and_without_its_spec(tmp_path):
    spec, weights = folded("bottleneck_d_se")
    path = rc.write_weights(tmp_path / "folded.safetensors", weights, spec)
    back, read = read_weights(path)
    assert back == spec and list(read) == list(weights)
    assert all(np.array_equal(read[k], weights[k]) for k in weights)
    from safetensors.numpy import save_file  # the bare tensors, no spec: inferred

    save_file(weights, str(tmp_path / "bare.safetensors"))
    assert read_weights(tmp_path / "bare.safetensors").spec == spec


@pytest.mark.parametrize("peer", [  # the torch peers import their library before they look at the spec
    *(pytest.param(p, marks=pytest.mark.torch) for p in ("torchvision", "timm", "transformers")),
    "keras.applications", "keras-hub"])
def test_peers_refuse_a_folded_spec_naming_the_norm(peer):
    spec, weights = rc.fold_norms("resnet50", random_weights("resnet50"))
    with pytest.raises(rc.PeerError, match="norm='folded' .*no folded form"):
        rc.to_peer(spec, weights, peer)


@pytest.mark.torch  # the frameworks env: h5py for the .weights.h5 written
def test_convert_fold_norms_writes_the_folded_weights_and_refuses_with_one_line(tmp_path, capsys):
    from resnet_core.cli import main

    weights = random_weights(rc.make_plan(TINY))
    source = rc.write_weights(tmp_path / "tiny.safetensors", weights, TINY)
    assert main(["convert", str(source), str(tmp_path / "folded.weights.h5"), "--fold-norms"]) == 0
    assert "norms folded" in capsys.readouterr().out
    spec, back = read_weights(tmp_path / "folded.weights.h5")
    want_spec, want = rc.fold_norms(TINY, weights)
    assert spec == want_spec and {k: v.tobytes() for k, v in back.items()} == {k: v.tobytes() for k, v in want.items()}
    again = tmp_path / "again.safetensors"
    assert main(["convert", str(tmp_path / "folded.weights.h5"), str(again), "--fold-norms"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "norm='folded' (they are folded already)" in err[0] and not again.exists()
    group = TINY.replace(norm="group", norm_groups=8)
    grouped = rc.write_weights(tmp_path / "group.safetensors", random_weights(rc.make_plan(group)), group)
    assert main(["convert", str(grouped), str(again), "--fold-norms"]) == 2
    assert "norm='group'" in capsys.readouterr().err and not again.exists()
