"""timm's SKNet (selective-kernel basic and bottleneck blocks): small members of each architecture and of the
options timm's SelectiveKernel takes (plain 5x5 kernels, three paths, a dilated last stage), imported and
exported bit-identically, at an odd input size with perturbed norm statistics."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from timm_helpers import assert_refused, assert_timm_round_trip, holding, perturb, run

import resnet_core as rc
from resnet_core.spec import Basic, SKBasic, SKBottleneck
from resnet_core.testing import assert_same_weights, loaded, random_images, random_weights, relative_error

HEIGHT, WIDTH, BATCH = 65, 77, 2
SMALL = {"layers": (1, 1, 1, 1), "channels": (16, 32, 64, 128)}
SMALL_SPEC = {"layers": (1, 1, 1, 1), "base_planes": 16}
_SK50 = rc.get_spec("resnet50").replace(block_spec=SKBottleneck())  # timm's skresnet50 (no pretrained weights)

# family -> (timm architecture, timm kwargs, the expected spec before SMALL_SPEC)
FAMILIES = {
    "skresnet18": ("skresnet18", {}, rc.get_spec("skresnet18")),
    "skresnext50_32x4d": ("skresnext50_32x4d", {}, rc.get_spec("skresnext50_32x4d")),
    "skresnet50-os8": ("skresnet50", {"output_stride": 8}, _SK50.replace(output_stride=8)),
    "skresnet50d": ("skresnet50d", {}, _SK50.replace(stem="deep", stem_width=32, downsample="avg")),
    "plain-kernels": ("skresnet18", {"block_args": {"sk_kwargs": {"keep_3x3": False, "split_input": False,
                                                                  "rd_ratio": 1 / 4}}},
                      rc.get_spec("skresnet18").replace(block_spec=SKBasic(keep_3x3=False, split_input=False,
                                                                           rd_ratio=1 / 4))),
    "three-paths": ("skresnet18", {"block_args": {"sk_kwargs": {"kernel_size": [3, 5, 7], "split_input": False}}},
                    rc.get_spec("skresnet18").replace(block_spec=SKBasic(kernel_sizes=(3, 5, 7), split_input=False))),
    "se": ("skresnet18", {"block_args": {"attn_layer": "se", "sk_kwargs": {"rd_ratio": 1 / 8, "rd_divisor": 16}}},
           rc.get_spec("skresnet18").replace(attention="se")),
}


def expected_spec(family: str) -> rc.ResNetSpec:
    return FAMILIES[family][2].replace(**SMALL_SPEC)


def _peer(torch, timm, family: str, seed: int):
    name, kwargs, _ = FAMILIES[family]
    spec = expected_spec(family)
    weights = random_weights(spec, seed=seed)
    return spec, weights, holding(torch, timm.create_model(name, pretrained=False, **SMALL, **kwargs), weights)


@pytest.mark.torch
@pytest.mark.parametrize("family", list(FAMILIES))
def test_import_infers_the_spec_and_is_bit_identical_in_torch(torch, timm, family, parity_record):
    spec, weights, peer = _peer(torch, timm, family, seed=1)
    got_spec, got = rc.from_peer(peer)
    assert got_spec == spec
    assert_same_weights(got, weights)
    images = random_images(BATCH, HEIGHT, WIDTH, seed=2)
    ours, theirs = run(torch, loaded(got_spec, got), images), run(torch, peer, images)
    parity_record(f"timm:{family}", "torch logits", relative_error(ours, theirs))
    assert np.array_equal(ours, theirs)  # the same ops in the same order
    del peer
    gc.collect()


@pytest.mark.torch
@pytest.mark.parametrize("family", list(FAMILIES))
def test_export_to_timm_round_trips(torch, timm, family):
    spec = expected_spec(family)
    assert_timm_round_trip(torch, timm, spec, random_weights(spec, seed=5), seed=6)


@pytest.mark.torch
@pytest.mark.parametrize("name", ["skresnet18", "skresnext50_32x4d",
                                  pytest.param("skresnet34", marks=pytest.mark.slow)])
def test_full_size_timm_models_import_exactly(torch, timm, name):
    """timm's own architecture at full size: the preset's spec, its state_dict order and parameter count, and
    logits bit-identical with perturbed statistics and kernels."""
    peer = perturb(torch, timm.create_model(name, pretrained=False), seed=3)
    spec, weights = rc.from_peer(peer)
    assert spec == rc.get_spec(name)
    plan = rc.make_plan(spec)
    assert [p.name for p in plan.params] == [k for k in peer.state_dict() if not k.endswith("num_batches_tracked")]
    assert plan.num_params == sum(p.numel() for p in peer.parameters())
    images = random_images(1, HEIGHT, WIDTH, seed=4)
    assert np.array_equal(run(torch, loaded(spec, weights), images), run(torch, peer, images))


@pytest.mark.torch
def test_torchscript_compiles_selective_kernels(torch):
    spec = expected_spec("skresnet18")
    weights = random_weights(spec, seed=7)
    model = loaded(spec, weights)
    scripted = torch.jit.script(model)
    images = random_images(1, HEIGHT, WIDTH, seed=8)
    assert np.array_equal(run(torch, scripted, images), run(torch, model, images))


# (id, timm model, kwargs, text the refusal must contain)
REFUSALS = [
    ("aa", "skresnet18", {"aa_layer": "avg"}, "aa_layer in selective-kernel paths"),
    ("rd-channels", "skresnet18", {"block_args": {"sk_kwargs": {"rd_channels": 24}}}, "rd_channels"),
    ("act", "skresnet18", {"act_layer": "silu"}, "ResNetSpec uses ReLU only"),
]


@pytest.mark.torch
@pytest.mark.parametrize(("name", "kwargs", "text"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_what_timm_builds_beyond_the_spec_is_refused_by_name(torch, timm, name, kwargs, text):
    if kwargs.get("aa_layer") == "avg":
        kwargs = {"aa_layer": torch.nn.AvgPool2d}
    peer = timm.create_model(name, pretrained=False, **SMALL, **kwargs)
    assert_refused(lambda: rc.from_peer(peer), [text])


@pytest.mark.torch
@pytest.mark.parametrize("peer", ["torchvision", "transformers"])
def test_peers_without_selective_kernels_refuse_them(torch, peer):
    spec = expected_spec("skresnet18")
    assert_refused(lambda: rc.to_peer(spec, random_weights(spec), peer), ["block type 'sk_basic'"])


@pytest.mark.torch
def test_timm_refuses_selective_kernels_beside_other_blocks(torch, timm):
    spec = expected_spec("skresnet18").replace(block_spec=(SKBasic(), Basic(), Basic(), Basic()))
    assert_refused(lambda: rc.to_peer(spec, random_weights(spec), "timm"), ["one selective-kernel block"])


@pytest.mark.torch
@pytest.mark.parametrize("family", ["skresnet18", "skresnext50_32x4d", "skresnet50-os8", "three-paths"])
def test_summary_equals_torch_parameters_and_fvcore_macs(torch, timm, need, family):
    """resnet-core summary's figures at an odd size: timm's parameter count, fvcore's conv+linear MACs of timm's
    model and of ours."""
    fvcore = need("torch", "fvcore.nn")
    spec, _, peer = _peer(torch, timm, family, seed=9)
    table = rc.summary(spec, input_size="65x77")
    assert table.params == sum(p.numel() for p in peer.parameters())
    for model in (peer, loaded(spec, random_weights(spec))):
        counter = fvcore.FlopCountAnalysis(model, torch.zeros(1, 3, HEIGHT, WIDTH))
        counter.unsupported_ops_warnings(False)
        counter.uncalled_modules_warnings(False)
        ops = counter.by_operator()
        assert table.macs == ops["conv"] + ops.get("linear", 0)
