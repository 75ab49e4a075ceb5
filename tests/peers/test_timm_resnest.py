"""timm's ResNeSt (ResNestBottleneck with SplitAttn): import, export, presets, inference, summary, TorchScript.

Each family is timm's own architecture with one block per stage and narrow stages (timm kwargs), holding
random weights with perturbed BatchNorm statistics, at an odd input size (65x77).
"""

from __future__ import annotations

import dataclasses
import gc
import warnings

import numpy as np
import pytest
from timm_helpers import (
    BATCH,
    HEIGHT,
    WIDTH,
    assert_refused,
    assert_timm_round_trip,
    conv_linear_macs,
    holding,
    run,
)

import resnet_core as rc
from resnet_core.io import read_weights, write_weights
from resnet_core.presets import RESNEST_PRESETS
from resnet_core.spec import ResNeSt
from resnet_core.testing import assert_same_weights, loaded, random_images, random_weights

pytestmark = pytest.mark.torch

SMALL = {"layers": (1, 1, 1, 1), "channels": (8, 16, 32, 64), "stem_width": 8}
SMALL_SPEC = {"layers": (1, 1, 1, 1), "base_planes": 8, "stem_width": 8}

# family -> (timm architecture, extra timm kwargs, extra spec changes on top of the preset of that name)
FAMILIES = {
    "radix2-avd-last": ("resnest14d", {}, {}),
    "radix4-avd-first-card2": ("resnest50d_4s2x40d", {"base_width": 32}, {"width_per_group": 32}),
    "radix1-sigmoid-card4": ("resnest50d_1s4x24d", {}, {}),
    "radix2-os16": ("resnest26d", {"output_stride": 16}, {"output_stride": 16}),  # dilated: no avd in stage 4
    "radix2-no-avd": ("resnest14d", {"block_args": {"radix": 2, "avd": False}},
                      {"block_spec": ResNeSt(radix=2)}),
}
SMALL_PRESETS = ("resnest14d", "resnest26d", "resnest50d", "resnest50d_1s4x24d", "resnest50d_4s2x40d")


def expected_spec(family: str) -> rc.ResNetSpec:
    name, _, changes = FAMILIES[family]
    layers = (2, 1, 1, 1) if family == "radix2-os16" else SMALL_SPEC["layers"]  # an identity block too
    return rc.get_spec(name).replace(**{**SMALL_SPEC, "layers": layers}, **changes)


def _peer(torch, timm, family: str, seed: int):
    name, kwargs, _ = FAMILIES[family]
    spec = expected_spec(family)
    weights = random_weights(spec, seed=seed)
    model = timm.create_model(name, pretrained=False, **{**SMALL, "layers": spec.layers}, **kwargs)
    return spec, weights, holding(torch, model, weights)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_import_infers_the_spec_and_is_bit_identical(torch, timm, family, parity_record):
    spec, weights, peer = _peer(torch, timm, family, seed=1)
    got_spec, got = rc.from_peer(peer)
    assert got_spec == spec
    assert_same_weights(got, weights)
    images = random_images(BATCH, HEIGHT, WIDTH, seed=2)
    ours, theirs = run(torch, loaded(got_spec, got), images), run(torch, peer, images)
    parity_record(f"timm:{family}", "torch logits", float(np.abs(ours - theirs).max()))
    assert np.array_equal(ours, theirs)  # the same ops in the same order
    del peer
    gc.collect()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_export_to_timm_round_trips(torch, timm, family):
    spec = expected_spec(family)
    assert_timm_round_trip(torch, timm, spec, random_weights(spec, seed=5), seed=6)


def test_exported_blocks_are_timms_classes(torch, timm):
    spec = expected_spec("radix4-avd-first-card2")
    peer = rc.to_peer(spec, random_weights(spec, seed=3), "timm")
    block = peer.layer2[0]
    assert type(block).__name__ == "ResNestBottleneck" and type(block.conv2).__name__ == "SplitAttn"
    assert (block.conv2.radix, block.conv2.rsoftmax.cardinality) == (4, 2)
    assert block.avd_first is not None and block.avd_last is None and peer.layer1[0].avd_first is None


@pytest.mark.parametrize("name", SMALL_PRESETS)
def test_presets_have_timms_parameters_and_state_dict_order(torch, timm, name):
    _check_preset(torch, timm, name)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(RESNEST_PRESETS) - set(SMALL_PRESETS)))
def test_large_presets_have_timms_parameters_and_state_dict_order(torch, timm, name):
    _check_preset(torch, timm, name)


def _check_preset(torch, timm, name):
    plan = rc.make_plan(rc.get_spec(name))
    with torch.device("meta"):  # names, shapes and counts only
        model = timm.create_model(name, pretrained=False)
    state = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert list(state) == [p.name for p in plan.params]
    assert list(state.values()) == [p.shape for p in plan.params]
    assert plan.num_params == sum(p.numel() for p in model.parameters())


def test_preset_names_the_timm_architecture_on_import(torch, timm):
    with torch.device("meta"):
        model = timm.create_model("resnest14d", pretrained=False)
    spec = rc.from_peer(model.to_empty(device="cpu"))[0]
    assert spec.name == "resnest14d" and spec == rc.get_spec("resnest14d")


def test_weights_file_gives_the_spec_back(torch, need, tmp_path):
    save_file = need("torch", "safetensors.numpy").save_file
    for family in ("radix4-avd-first-card2", "radix1-sigmoid-card4"):
        spec = expected_spec(family).replace(num_classes=5)
        weights = random_weights(spec, seed=4)
        stored = read_weights(write_weights(tmp_path / f"{family}.safetensors", weights, spec))
        assert stored[0] == spec  # the file keeps the spec, block parameters included
        save_file(weights, str(tmp_path / f"{family}-bare.safetensors"))  # names and shapes only
        got_spec, got = read_weights(tmp_path / f"{family}-bare.safetensors")
        # avd pools hold no tensors: a file without its spec is read with the presets' avd (after the 3x3)
        want = spec.replace(block_spec=dataclasses.replace(spec.block_spec, avd_first=False))
        assert got_spec.replace(name=spec.name) == want
        assert_same_weights(got, weights)


def test_summary_equals_torch_parameters_and_fvcore_macs(torch, need):
    fvcore = need("torch", "fvcore.nn")
    for family in ("radix4-avd-first-card2", "radix1-sigmoid-card4", "radix2-os16"):
        spec = expected_spec(family)
        table = rc.summary(spec, f"{HEIGHT}x{WIDTH}")
        model = rc.build(spec, backend="torch").eval()
        assert table.params == sum(p.numel() for p in model.parameters())
        assert table.macs == conv_linear_macs(torch, fvcore, model, (1, 3, HEIGHT, WIDTH)), family
        assert "split attention radix" in table.rows[2].shape


def test_torchscript_equals_eager(torch, tmp_path):
    for family in ("radix4-avd-first-card2", "radix1-sigmoid-card4"):
        spec = expected_spec(family)
        model = loaded(spec, random_weights(spec, seed=8))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated, not gone
            scripted = torch.jit.script(model)
        torch.jit.save(scripted, str(tmp_path / "m.pt"))
        back = torch.jit.load(str(tmp_path / "m.pt"))
        x = torch.from_numpy(random_images(1, HEIGHT, WIDTH, seed=9))
        with torch.no_grad():
            want = model(x)
            for _ in range(2):  # the profiling executor optimises the graph on the second call
                assert torch.equal(back(x), want), family


def test_peers_without_the_block_refuse_it_by_name(torch):
    spec = expected_spec("radix2-avd-last")
    weights = random_weights(spec)
    for peer in ("torchvision", "transformers"):
        assert_refused(lambda p=peer: rc.to_peer(spec, weights, p), ["block type 'resnest'"])


def test_timm_export_refuses_what_resnestbottleneck_cannot_build(torch, timm):
    base = expected_spec("radix2-avd-last")
    cases = [
        (base.replace(block_spec=ResNeSt(radix=2, avd=True, rd_ratio=0.5)), ["rd_ratio=0.5"]),
        (base.replace(attention="se"), ["attention='se' with ResNeSt blocks"]),
        (base.replace(block_types=("resnest", "resnest", "basic", "resnest")), ["mixed with ['basic']"]),
    ]
    for spec, texts in cases:
        assert_refused(lambda s=spec: rc.to_peer(s, random_weights(s), "timm"), texts)


def test_import_refuses_avd_pools_the_spec_cannot_say(torch, timm):
    _, _, peer = _peer(torch, timm, "radix2-avd-last", seed=10)
    peer.layer2[0].avd_last = torch.nn.AvgPool2d(3, 2, padding=1, count_include_pad=False)
    assert_refused(lambda: rc.from_peer(peer), ["layer2.0.avd_last", "AvgPool2d(3, stride=2, padding=1)"])
    _, _, peer = _peer(torch, timm, "radix2-avd-last", seed=10)
    peer.layer2[0].conv2.act1 = torch.nn.SiLU()
    assert_refused(lambda: rc.from_peer(peer), ["SiLU", "ReLU only"])


def test_attention_widths_are_timms(torch, timm):
    from timm.layers.helpers import make_divisible

    from resnet_core.plan import resnest_attn_width

    for width in range(1, 300, 7):
        for radix, ratio, divisor in ((1, 0.25, 8), (2, 0.25, 8), (4, 0.25, 8), (2, 0.5, 16), (1, 1.0, 32)):
            sub = ResNeSt(radix=radix, rd_ratio=ratio, rd_divisor=divisor)
            assert resnest_attn_width(width, sub) == make_divisible(width * radix * ratio, min_value=32,
                                                                    divisor=divisor), (width, radix, ratio)
