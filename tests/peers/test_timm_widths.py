"""Per-stage block types and widths (timm's test_resnet) and per-block widths (its channel-pruned ECA-ResNets).

timm builds ``test_resnet`` from a block class and a base width per stage, and ``ecaresnet*d_pruned``
by cutting every conv of an ECA-ResNet-D to the widths in its pruning file, keeping the ECA kernels of
the unpruned widths. Small networks run everywhere; the 20M-parameter pruned ResNet-50 only on torch.
"""

from __future__ import annotations

import importlib.resources
import re

import numpy as np
import pytest
from safetensors_helpers import strip_metadata
from timm_helpers import BATCH, HEIGHT, WIDTH, assert_timm_round_trip, holding, run

import resnet_core as rc
from resnet_core.io import infer_spec, read_weights, write_weights
from resnet_core.peers import PeerError
from resnet_core.spec import SpecError
from resnet_core.testing import (
    assert_same_weights,
    loaded,
    random_images,
    random_weights,
    relative_error,
    to_channels_last,
)

# An ECA-ResNet-D cut to per-block widths, stages of 1, 2, 1, 1 blocks; kernel 7 where the width gives 3.
PRUNED = rc.get_spec("ecaresnet50d").replace(
    layers=(1, 2, 1, 1), block_widths=((5, 7, 9), (6, 3, 11), (4, 5, 11), (10, 6, 13), (7, 12, 17)),
    eca_kernels=(3, 5, 3, 7), num_classes=7, name="pruned_small")
SPECS = {"test_resnet": rc.get_spec("test_resnet").replace(num_classes=7), "pruned": PRUNED}


def signature(spec: rc.ResNetSpec) -> dict[str, tuple[int, ...]]:
    return {p.name: p.shape for p in rc.make_plan(spec).params}


# --- the spec ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("changes", "field"), [
    ({"block": "basic", "block_types": ("basic", "bottleneck")}, "block_types"),  # 4 stages, 2 types
    ({"block_types": ("basic", "bottleneck", "bottleneck", "bottleneck")}, "block"),  # block is stage 1's
    ({"block_types": ("bottleneck", "plain", "basic", "basic")}, "block_types"),
    ({"planes": (64, 128, 256)}, "planes"),
    ({"planes": (32, 64, 128, 256)}, "base_planes"),  # planes[0] is base_planes
    ({"planes": (64, 0, 256, 512)}, "planes"),
    ({"layers": (1, 1), "block_widths": ((4, 4, 8),)}, "block_widths"),  # one block of two
    ({"layers": (1,), "block_widths": ((4, 8),)}, "block_widths"),  # a bottleneck has three convs
    ({"layers": (2,), "block_widths": ((4, 4, 8), (4, 4, 12))}, "block_widths"),  # one output per stage
    ({"layers": (1,), "block_widths": ((4, 4, 8),), "width_per_group": 32}, "block_widths"),  # rule fields
    ({"layers": (1,), "block_widths": ((6, 6, 8),), "groups": 4}, "block_widths"),  # 4 groups of 6
    ({"eca_kernels": (3, 3, 3, 3)}, "eca_kernels"),  # without ECA
    ({"attention": "eca", "eca_kernels": (3, 4, 3, 3)}, "eca_kernels"),  # even
])
def test_per_stage_fields_refuse_by_name(changes, field):
    with pytest.raises(SpecError, match=rf"Invalid ResNetSpec\.{field}: expected"):
        rc.ResNetSpec(**changes)


def test_one_representation_per_network():
    """What the single-value fields already say becomes None, so specs of one network compare equal."""
    assert rc.ResNetSpec(block="basic", layers=(2, 2, 2, 2), block_types=("basic",) * 4) == rc.get_spec("resnet18")
    assert rc.ResNetSpec(planes=(64, 128, 256, 512)).planes is None
    assert rc.ResNetSpec(block_widths=rc.ResNetSpec().main_widths()) == rc.ResNetSpec()
    # widths the rule gives with other fields are said by those fields
    wide = rc.ResNetSpec(layers=(1, 1), block_widths=((128, 128, 256), (256, 256, 512)))
    assert (wide.block_widths, wide.width_per_group) == (None, 128)
    assert rc.ResNetSpec(attention="eca", eca_kernels=(5, 5, 5, 7)).eca_kernels is None
    assert PRUNED.block_widths is not None and PRUNED.eca_kernels == (3, 5, 3, 7)
    assert rc.ResNetSpec.from_json(PRUNED.to_json()) == PRUNED  # nested lists come back as tuples


def test_plan_and_table1_follow_the_per_stage_widths():
    plan = rc.make_plan(SPECS["test_resnet"])
    assert plan.stage_widths == (32, 48, 192, 96)
    assert [len(b.main) for b in plan.blocks] == [2, 2, 3, 2]
    pruned = rc.make_plan(PRUNED)
    assert [b.attention.conv.kernel_size for b in pruned.blocks] == [3, 5, 5, 3, 7]
    assert [b.shortcut is not None for b in pruned.blocks] == [True, True, False, True, True]
    rows = rc.summary(PRUNED, "65x77").rows
    assert rows[2].shape == "[1x1, 6; 3x3, 3; 1x1, 11; ECA k=5] x 1, [1x1, 4; 3x3, 5; 1x1, 11; ECA k=5] x 1"
    assert sum(r.params for r in rows) == pruned.num_params


@pytest.mark.parametrize("spec", [*SPECS.values(), rc.get_spec("ecaresnet50d_pruned"),
                                  rc.get_spec("ecaresnet101d_pruned")], ids=lambda s: s.name)
def test_spec_inferred_from_tensor_shapes(spec):
    inferred, _ = infer_spec(signature(spec))
    assert inferred == spec
    if spec.name in rc.list_specs():
        assert inferred.name == spec.name


def test_weights_file_round_trip_and_inference_without_the_stored_spec(tmp_path):
    weights = random_weights(PRUNED, seed=1)
    spec, back = read_weights(write_weights(tmp_path / "p.safetensors", weights, PRUNED))
    assert spec == PRUNED
    assert_same_weights(back, weights)
    bare = write_weights(tmp_path / "bare.safetensors", weights, PRUNED)
    strip_metadata(bare)  # no spec in the metadata
    assert read_weights(bare)[0] == PRUNED


# --- timm (torch) -------------------------------------------------------------------------------------

def _timm_model(torch, timm, name: str, weights: dict[str, np.ndarray]):
    """timm's own architecture (its pruning included) holding ``weights`` (perturbed norm statistics)."""
    return holding(torch, timm.create_model(name, pretrained=False), weights)


@pytest.mark.torch
@pytest.mark.parametrize("name", ["test_resnet", "ecaresnet50d_pruned"])
def test_timm_import_is_the_preset_and_bit_identical(torch, timm, name, parity_record):
    weights = random_weights(name, seed=2)
    peer = _timm_model(torch, timm, name, weights)
    spec, got = rc.from_peer(peer)
    assert spec == rc.get_spec(name) and spec.name == name
    assert_same_weights(got, weights)
    images = random_images(BATCH, HEIGHT, WIDTH, seed=3)
    error = relative_error(run(torch, loaded(spec, got), images), run(torch, peer, images))
    parity_record(f"timm:{name}", "torch logits", error)
    assert error == 0.0


@pytest.mark.torch
def test_pruned_presets_are_timms_pruning_files(torch, timm):
    """Every block's widths and ECA kernel, against the files timm's ``*_pruned`` models are cut by."""
    for name in ("ecaresnet50d_pruned", "ecaresnet101d_pruned"):
        text = (importlib.resources.files("timm.models") / "_pruned" / f"{name}.txt").read_text()
        files = {k: tuple(int(v) for v in re.findall(r"\d+", s)) for k, s in
                 (entry.split(":") for entry in text.strip().split("***"))
                 if not k.endswith("_M.weight")}  # the file's extra entries name no module of the network
        ours = {p.name: p.shape for p in rc.make_plan(rc.get_spec(name)).params if p.role in ("kernel", "gamma")}
        assert ours == files


@pytest.mark.torch
@pytest.mark.parametrize("key", [*SPECS, "eca_kernels"])
def test_export_to_timm_round_trips_bit_identical(torch, timm, key):
    # eca_kernels alone: the rule's widths (16 to 128), kernels 5, 5, 5, 5 where they give 3, 3, 3, 5
    spec = SPECS.get(key) or rc.get_spec("ecaresnet26t").replace(
        layers=(1, 1, 1, 1), base_planes=4, eca_kernels=(5, 5, 5, 5), num_classes=7)
    assert_timm_round_trip(torch, timm, spec, random_weights(spec, seed=4), seed=5)


@pytest.mark.torch
def test_eca_kernels_differing_inside_a_stage_are_refused(torch, timm):
    peer = rc.to_peer(PRUNED, random_weights(PRUNED, seed=6), "timm")
    peer.layer2[1].se.conv = torch.nn.Conv1d(1, 1, 3, padding=1, bias=False)
    with pytest.raises(PeerError, match=r"ECA kernel sizes .* differ inside a stage"):
        rc.from_peer(peer)


# --- Keras --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def keras(need):
    return need("keras", "keras")


@pytest.mark.keras
@pytest.mark.torch
@pytest.mark.parametrize("key", list(SPECS))
def test_keras_matches_timm_and_recovers_the_spec(torch, timm, keras, key, parity_record):
    spec = SPECS[key]
    weights = random_weights(spec, seed=7)
    peer = rc.to_peer(spec, weights, "timm")
    images = random_images(BATCH, HEIGHT, WIDTH, seed=8)
    model = rc.build(spec, backend="keras", weights=weights)
    out = keras.ops.convert_to_numpy(model(to_channels_last(images), training=False))
    error = relative_error(out, run(torch, peer, images))
    parity_record(f"timm:{key}", f"keras[{keras.backend.backend()}] logits", error)
    assert error < 1e-5
    del model.spec, model.plan  # as keras.saving.load_model leaves it: layers only
    assert rc.spec_of(model) == spec
    keras.backend.clear_session()


@pytest.mark.torch
def test_peers_with_one_block_type_and_doubled_widths_refuse_by_field(torch):
    spec = rc.get_spec("resnet18").replace(planes=(64, 96, 96, 128))
    with pytest.raises(PeerError, match=r"planes=\(64, 96, 96, 128\) \(torchvision builds one block type"):
        rc.to_peer(spec, random_weights(spec), "torchvision")


@pytest.mark.torch
@pytest.mark.parametrize("key", list(SPECS))
def test_table1_equals_torch_parameters_and_fvcore_macs(torch, need, key):
    fvcore = need("torch", "fvcore.nn")
    spec = SPECS[key]
    table = rc.summary(spec, "65x77")
    model = rc.build(spec, backend="torch").eval()
    assert table.params == sum(p.numel() for p in model.parameters())
    counter = fvcore.FlopCountAnalysis(model, torch.zeros(1, 3, HEIGHT, WIDTH))
    counter.unsupported_ops_warnings(False)
    counter.uncalled_modules_warnings(False)
    ops = counter.by_operator()
    assert table.macs == ops["conv"] + ops.get("linear", 0)
