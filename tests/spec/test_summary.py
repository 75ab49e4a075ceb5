"""Table 1 from the plan: parameters and MACs equal what torch and a FLOP counter measure."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

import resnet_core as rc
from resnet_core.cli import main
from resnet_core.table1 import parse_size, summary

# torchvision's documented GFLOPS (its weights' meta["_ops"]), rounded as torchvision prints them.
TORCHVISION_GFLOPS = {
    "resnet18": 1.81, "resnet34": 3.66, "resnet50": 4.09, "resnet101": 7.8, "resnet152": 11.51,
    "resnext50_32x4d": 4.23, "resnext101_32x8d": 16.41, "resnext101_64x4d": 15.46, "wide_resnet50_2": 11.4,
    "wide_resnet101_2": 22.75,
}
# Every family, narrowed and shortened (the rules are the same, the CI minutes fewer), for the torch-measured checks.
FAMILIES = ("resnet18", "tiny_resnext", "keras_resnet50", "keras_resnet50v2", "resnet26t", "seresnext26d_32x4d",
            "resnet18d", "ecaresnet26t", "resnetaa50d", "resnetblur50", "resnetrs50", "senet154", "resnet50_gn",
            "resnetv2_50x1_bit", "resnetv2_50d_evos", "resnetv2_50d_frn", "res2next50", "res2net50d")


def _small(name: str) -> rc.ResNetSpec:
    spec = rc.get_spec(name)
    planes = spec.groups * spec.reduce_first * (spec.norm_groups if spec.norm in ("group", "evo_s0") else 1)
    return spec.replace(layers=(1, 2, 1, 1), base_planes=max(16, planes), name=f"small_{name}")


# timm's anti-aliased networks run only where the blurred main path and the pooled shortcut agree in size.
SIZES = {"resnetaa50d": "65x65"}


@pytest.mark.parametrize("name", sorted(TORCHVISION_GFLOPS))
def test_macs_match_torchvision_documented_gflops(name):
    assert round(summary(name).macs / 1e9, 2) == TORCHVISION_GFLOPS[name]


def test_paper_table1_figures_are_v1_networks():
    # The paper's 3.8 / 7.6 / 11.3 GFLOPs are v1 (stride on the 1x1 conv); torchvision's v1.5 costs more.
    for preset, paper in (("keras_resnet50", 3.8), ("keras_resnet101", 7.6), ("keras_resnet152", 11.3)):
        assert abs(summary(preset).macs / 1e9 - paper) < 0.07, preset
    assert summary("resnet50").macs > summary("keras_resnet50").macs


def test_rows_give_stage_sizes_and_shapes():
    s = summary("resnet50")
    assert [r.name for r in s.rows] == ["conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x", "head"]
    assert [r.output_size for r in s.rows] == [(112, 112), (56, 56), (28, 28), (14, 14), (7, 7), (1, 1)]
    assert s.rows[1].shape == "3x3 max pool, stride 2; [1x1, 64; 3x3, 64; 1x1, 256] x 3"
    assert summary("resnext50_32x4d").rows[2].shape == "[1x1, 256; 3x3, 256, C=32; 1x1, 512] x 4"
    assert summary("resnet50", "65x77").rows[4].output_size == (3, 3)


@pytest.mark.parametrize("name", rc.list_specs())
def test_params_are_the_plans_trainable_count(name):
    assert summary(name).params == rc.make_plan(rc.get_spec(name)).num_params


@pytest.mark.parametrize("value, expected", [(224, (224, 224)), ("65x77", (65, 77)), ("96", (96, 96)),
                                             ((3, 5), (3, 5))])
def test_parse_size(value, expected):
    assert parse_size(value) == expected


@pytest.mark.parametrize("value", ["0", "65x", "a", "1x2x3", -4, 2.5])
def test_bad_sizes_are_refused(value):
    with pytest.raises(ValueError, match="input size"):
        parse_size(value)


def test_sizes_the_network_cannot_run_are_refused_by_name():
    with pytest.raises(rc.errors.InputError, match="65x77 cannot run through resnetaa50d: at layer2.0"):
        summary("resnetaa50d", "65x77")
    with pytest.raises(rc.errors.InputError, match="1x1 is too small for resnetaa50d: maxpool would get an empty"):
        summary("resnetaa50d", 1)


def test_tiny_inputs_keep_one_pixel_per_stage():
    assert [r.output_size for r in summary("resnet50", 1).rows] == [(1, 1)] * 6


def test_cli_json_and_errors(capsys, tmp_path):
    assert main(["summary", "resnet50", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["params"], data["macs"], data["input_size"]) == (25_557_032, 4_089_184_256, [224, 224])
    assert [s["name"] for s in data["stages"]][1:5] == ["conv2_x", "conv3_x", "conv4_x", "conv5_x"]
    assert main(["summary", "no_such_net"]) == 2
    assert "no_such_net" in capsys.readouterr().err
    assert main(["summary", "resnet50", "--size", "0x3"]) == 2
    assert "input size" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["resnet50", "resnet50d", "keras_resnet50v2", "seresnext26d_32x4d"])
def test_svg_draws_every_stage_and_block_type(name, tmp_path):
    out = tmp_path / f"{name}.svg"
    assert main(["summary", name, "--svg", str(out)]) == 0
    root = ET.parse(out).getroot()  # well-formed XML
    texts = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]
    plan = rc.make_plan(rc.get_spec(name))
    for stage in range(1, plan.num_stages + 1):
        assert any(t.startswith(f"conv{stage + 1}_x: {len(plan.stage_blocks(stage))} blocks") for t in texts)
    spec = plan.spec
    assert any("2x2 avg pool" in t for t in texts) == (spec.downsample == "avg")
    assert any("squeeze-excite" in t for t in texts) == (spec.attention == "se")
    assert any("pre-activation" in t for t in texts) == spec.preact
    assert any("1x1 max pool" in t for t in texts) == (spec.stride_block == "last")


@pytest.mark.torch
@pytest.mark.parametrize("name, size", [(n, SIZES.get(n, "65x77")) for n in FAMILIES] + [("resnet18", "224")])
def test_equals_torch_parameters_and_fvcore_macs(name, size, torch, need):
    fvcore = need("torch", "fvcore.nn")
    spec = _small(name)
    s = summary(spec, size)
    model = rc.build(spec, backend="torch").eval()
    assert s.params == sum(p.numel() for p in model.parameters())
    h, w = parse_size(size)
    counter = fvcore.FlopCountAnalysis(model, torch.zeros(1, spec.in_channels, h, w))
    counter.unsupported_ops_warnings(False)
    counter.uncalled_modules_warnings(False)
    ops = counter.by_operator()
    assert s.macs == ops["conv"] + ops.get("linear", 0)
