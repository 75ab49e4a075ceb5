"""Peer name tables (framework-free): patterns parse and format, each table reads both ways, lazy imports."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from import_probe import attempted

import resnet_core as rc
from resnet_core import name_tables as _table
from resnet_core.layouts import Layout
from resnet_core.peers import hf_peer, keras_applications_peer, torchvision_peer
from resnet_core.testing import random_weights


@pytest.mark.parametrize(("pattern", "name", "values"), [
    ("encoder.stages.{s-1}.layers.{b}.layer.{i-1}.convolution", "encoder.stages.2.layers.0.layer.1.convolution",
     {"s": 3, "b": 0, "i": 2}),
    ("conv{s+1}_block{b+1}_{i}_bn", "conv5_block3_2_bn", {"s": 4, "b": 2, "i": 2}),
    ("{m:path}.running_var", "layer1.0.downsample.2.running_var", {"m": "layer1.0.downsample.2"}),
], ids=["hf-shift-down", "keras-shift-up", "path"])
def test_pattern_parses_and_formats_back(pattern, name, values):
    p = _table.Pattern(pattern)
    assert p.parse(name) == values
    assert p.format(values) == name
    assert p.parse(name + "x") is None
    if not pattern.startswith("{"):
        assert p.parse("x" + name) is None


def test_pattern_refuses_a_repeated_field():
    with pytest.raises(RuntimeError, match="repeats field 's'"):
        _table.Pattern("layer{s}.{s}")


TABLES = {
    "torchvision": (torchvision_peer.TABLE, "resnext50_32x4d"),
    "transformers-classifier": (hf_peer.TABLES["ResNetForImageClassification"], "resnet50"),
    "transformers-backbone": (hf_peer.TABLES["ResNetModel"], "resnet18"),
    "keras.applications": (keras_applications_peer.TABLE, "keras_resnet50"),
}


@pytest.mark.parametrize("key", list(TABLES), ids=str)
def test_every_canonical_tensor_maps_to_the_peer_and_back(key):
    table, preset = TABLES[key]
    spec = rc.get_spec(preset)
    if key == "transformers-backbone":
        spec = spec.replace(include_top=False, pooling="avg", num_classes=0)
    plan = rc.make_plan(spec)
    weights = random_weights(plan)
    peer = table.to_peer(plan, weights)
    assert len(set(peer)) == len(plan.params)
    back = table.to_canonical(plan, peer, key)
    assert list(back) == list(weights)
    assert all(np.array_equal(back[k], weights[k]) for k in weights)


@pytest.mark.parametrize(("canonical", "peer", "layout"), [
    ("conv1.weight", "conv1_conv/kernel", Layout.CONV),
    ("layer1.0.downsample.0.weight", "conv2_block1_0_conv/kernel", Layout.CONV),  # the 0 row wins over {i}
    ("layer1.0.downsample.1.running_var", "conv2_block1_0_bn/moving_variance", Layout.SAME),
    ("layer4.2.bn3.weight", "conv5_block3_3_bn/gamma", Layout.SAME),
    ("layer3.5.conv2.bias", "conv4_block6_2_conv/bias", Layout.SAME),
    ("fc.weight", "predictions/kernel", Layout.DENSE),
], ids=["stem", "shortcut-conv", "shortcut-bn", "bn-gamma", "conv-bias", "dense"])
def test_keras_applications_rows(canonical, peer, layout):
    table = keras_applications_peer.TABLE
    assert table.peer_name(canonical) == (peer, layout)
    assert table.canonical_name(peer) == (canonical, layout)


def test_hf_rows_shift_stage_and_layer_indices():
    table = hf_peer.TABLES["ResNetForImageClassification"]
    name = "resnet.encoder.stages.3.layers.1.layer.2.normalization.running_mean"
    assert table.canonical_name(name) == ("layer4.1.bn3.running_mean", Layout.SAME)
    assert table.peer_name("layer4.1.bn3.running_mean") == (name, Layout.SAME)
    assert table.peer_module("layer2.0.downsample.1") == "resnet.encoder.stages.1.layers.0.shortcut.normalization"


def test_unused_missing_and_misshapen_tensors_are_listed():
    plan = rc.make_plan(rc.get_spec("resnet18"))
    source = torchvision_peer.TABLE.to_peer(plan, random_weights(plan))
    source["layer9.0.conv1.weight"] = np.zeros(1, np.float32)
    source["layer1.0.bn1.num_batches_tracked"] = np.zeros((), np.int64)  # ignored: a training counter
    del source["fc.bias"]
    source["conv1.weight"] = np.zeros((64, 3, 3, 3), np.float32)
    with pytest.raises(rc.PeerError) as info:
        torchvision_peer.TABLE.to_canonical(plan, source, "torchvision")
    text = str(info.value)
    assert "1 torchvision tensor(s) unused by the inferred spec: layer9.0.conv1.weight" in text
    assert "1 canonical tensor(s) missing: fc.bias" in text
    assert "conv1.weight: (64, 3, 3, 3) != (64, 3, 7, 7)" in text
    assert "num_batches_tracked" not in text


def test_importing_every_peer_module_tries_no_framework(run_python):
    """Not even an attempt (checked in every env, frameworks installed or not): peers load theirs on use."""
    code = textwrap.dedent("""
        import resnet_core as rc
        import resnet_core.peers.torchvision_peer, resnet_core.peers.timm_peer, resnet_core.peers.hf_peer
        import resnet_core.peers.keras_applications_peer, resnet_core.preprocess
        import numpy as np
        rc.preprocess(np.zeros((4, 4, 3), np.uint8), "resnet50")
    """)
    assert attempted(run_python, code) == []
