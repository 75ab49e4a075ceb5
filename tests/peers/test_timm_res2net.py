"""timm's Res2Net / Res2NeXt (Bottle2neck blocks): import and export bit-identical, presets, refusals.

Small members of timm's own architectures (fewer blocks, narrower stages) hold random weights with perturbed
norm statistics; stages of two blocks run the cascade (a stage's first block convolves each split on its own
and average-pools the last). Inputs are odd (65x77), so the pooled split's padded edges count.
"""

from __future__ import annotations

import numpy as np
import pytest
from timm_helpers import assert_refused, assert_timm_round_trip, holding, run

import resnet_core as rc
from resnet_core.plan import Res2NetScales
from resnet_core.presets import TIMM_RES2NET_PRESETS
from resnet_core.spec import Res2Net
from resnet_core.testing import assert_same_weights, loaded, random_images, random_weights, relative_error

HEIGHT, WIDTH, BATCH = 65, 77, 2
SMALL = {"layers": (2, 2, 1, 1), "channels": (16, 32, 64, 128)}
SMALL_SPEC = {"layers": (2, 2, 1, 1), "base_planes": 16}

# family -> (timm architecture, extra timm kwargs, extra spec changes on top of the preset of that name)
FAMILIES = {
    "26w_4s": ("res2net50_26w_4s", {}, {}),
    "48w_2s": ("res2net50_48w_2s", {}, {}),
    "14w_8s": ("res2net50_14w_8s", {}, {}),
    "res2next": ("res2next50", {}, {}),
    "d": ("res2net50d", {}, {}),
    "os8": ("res2net50_26w_4s", {"output_stride": 8}, {"output_stride": 8}),  # stride-1 pooled splits, dilated
    "scale1": ("res2net50_26w_4s", {"block_args": {"scale": 1}}, {"block_spec": Res2Net(scale=1)}),
}


def expected_spec(family: str) -> rc.ResNetSpec:
    name, _, changes = FAMILIES[family]
    return rc.get_spec(name).replace(**SMALL_SPEC, **changes)


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
    ours = run(torch, loaded(got_spec, got), images)
    theirs = run(torch, peer, images)
    parity_record(f"timm:res2net-{family}", "torch logits", relative_error(ours, theirs))
    assert np.array_equal(ours, theirs)  # the same ops in the same order


@pytest.mark.torch
@pytest.mark.parametrize("family", ["26w_4s", "res2next", "d", "os8", "26w_4s+se", "d+eca"])
def test_export_to_timm_round_trips(torch, timm, family):
    """Attention too: Bottle2neck takes timm's attn_layer (SE, ECA) after bn3."""
    family, _, attention = family.partition("+")
    spec = expected_spec(family).replace(attention=attention or None)
    assert_timm_round_trip(torch, timm, spec, random_weights(spec, seed=5), seed=6, size=(HEIGHT, WIDTH), batch=BATCH)


@pytest.mark.torch
def test_first_blocks_pool_the_last_split_and_others_cascade(torch, timm):
    """is_first (a stride or a downsample) in exactly the blocks timm sets it; their pools are timm's."""
    spec = expected_spec("26w_4s")
    peer = rc.to_peer(spec, random_weights(spec, seed=3), "timm")
    for block in rc.make_plan(spec).blocks:
        mixer = next(u for u in block.main if isinstance(u, Res2NetScales))
        theirs = peer.get_submodule(block.name)
        assert mixer.first == theirs.is_first, block.name
        assert (mixer.pool is None) == (theirs.pool is None), block.name
    # layer1.0 neither strides nor projects here (the 64-wide stem meets 16 x 4 channels): it cascades too.
    assert [b.name for b in rc.make_plan(spec).blocks if not b.main[1].first] == ["layer1.0", "layer1.1", "layer2.1"]


@pytest.mark.torch
@pytest.mark.parametrize("name", TIMM_RES2NET_PRESETS)
def test_presets_have_timms_parameters_in_timms_order(torch, timm, name):
    with torch.device("meta"):  # shapes only: no memory for the big ones
        model = timm.create_model(name, pretrained=False)
    plan = rc.make_plan(rc.get_spec(name))
    keys = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    assert keys == [p.name for p in plan.params]
    assert [tuple(t.shape) for k, t in model.state_dict().items() if k in keys] == [p.shape for p in plan.params]
    assert plan.num_params == sum(t.numel() for t in model.parameters())


@pytest.mark.torch
def test_our_torch_model_has_timms_state_dict_and_scripts(torch):
    spec = expected_spec("res2next")
    weights = random_weights(spec, seed=7)
    model = loaded(spec, weights)
    assert list(model.state_dict()) == [k for k in model.state_dict() if k in weights or
                                        k.endswith("num_batches_tracked")]
    assert [k for k in model.state_dict() if not k.endswith("num_batches_tracked")] == list(weights)
    images = torch.from_numpy(random_images(BATCH, HEIGHT, WIDTH, seed=8))
    scripted = torch.jit.script(model)
    with torch.no_grad():
        assert torch.equal(scripted(images), model(images))


@pytest.mark.torch
def test_other_peers_refuse_the_block_type(torch):
    spec = expected_spec("26w_4s")
    weights = random_weights(spec, seed=9)
    for peer in ("torchvision", "transformers"):
        assert_refused(lambda: rc.to_peer(spec, weights, peer), ["block type 'res2net'"])  # noqa: B023


@pytest.mark.torch
def test_timm_refusals_name_the_option(torch, timm):
    model = timm.create_model("res2net50_26w_4s", pretrained=False, **SMALL)
    model.layer2[1].scale = 3  # a scale differing between blocks: the sub-spec has one
    assert_refused(lambda: rc.from_peer(model), ["Bottle2neck scales [3, 4]"])
    with pytest.raises(rc.SpecError, match="anti_alias"):
        expected_spec("26w_4s").replace(anti_alias="avg")  # refused when made: it would never build


@pytest.mark.torch
def test_training_step_is_timms_bit_for_bit(torch, timm):
    """Train mode (batch statistics) and the gradients of every parameter, equal to timm's."""
    spec, weights, peer = _peer(torch, timm, "26w_4s", seed=11)
    ours = loaded(spec, weights)
    peer.train()
    ours.train()
    images = torch.from_numpy(random_images(BATCH, HEIGHT, WIDTH, seed=12))
    theirs_out, ours_out = peer(images), ours(images)
    assert torch.equal(theirs_out, ours_out)
    theirs_out.square().mean().backward()
    ours_out.square().mean().backward()
    theirs = dict(peer.named_parameters())
    assert [k for k, _ in ours.named_parameters()] == list(theirs)
    assert all(torch.equal(p.grad, theirs[k].grad) for k, p in ours.named_parameters())
