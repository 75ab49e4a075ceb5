"""bfloat16 weights (torch tensors, or the ml_dtypes arrays read_weights gives) reach the torch peers bit for bit.

numpy has no bfloat16: resnet_core.arrays is the one place that converts it (through the bits). The
keras.applications case is in test_peers_keras.py (BFLOAT16_WEIGHTS).
"""

from __future__ import annotations

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.arrays import bfloat16
from resnet_core.testing import random_weights

TORCH_PEERS = {"torchvision": "torchvision", "timm": "timm", "transformers": "transformers"}


def _bits(array) -> np.ndarray:
    return np.asarray(array).view(np.uint16)


@pytest.mark.torch
@pytest.mark.parametrize("peer", list(TORCH_PEERS))
def test_bfloat16_torch_tensors_round_trip_through_torch_peers(torch, need, peer):
    need("torch", TORCH_PEERS[peer])
    spec = rc.get_spec("resnet18").replace(layers=(1, 1, 1, 1), name="resnet10")
    weights = {k: torch.from_numpy(v).to(torch.bfloat16) for k, v in random_weights(spec, seed=5).items()}
    model = rc.to_peer(spec, weights, peer)  # a float32 peer: bfloat16 widens exactly
    _, back = rc.from_peer(model)
    for name, tensor in weights.items():
        assert back[name].dtype == np.float32 and np.array_equal(back[name], tensor.float().numpy()), name
    _, kept = rc.from_peer(model.to(torch.bfloat16))  # a bfloat16 peer gives bfloat16 arrays, same bits
    for name, tensor in weights.items():
        assert kept[name].dtype == bfloat16(), name
        assert np.array_equal(_bits(kept[name]), tensor.view(torch.int16).numpy().view(np.uint16)), name


@pytest.mark.torch
def test_bfloat16_in_and_out_of_our_torch_model(torch):
    spec = rc.get_spec("tiny_resnext")
    weights = {k: v.astype(bfloat16()) for k, v in random_weights(spec, seed=6).items()}  # as read_weights gives
    model = rc.build(spec, backend="torch").to(torch.bfloat16)
    rc.set_weights(model, weights)
    got = rc.get_weights(model)
    assert all(got[k].dtype == bfloat16() and np.array_equal(_bits(got[k]), _bits(v)) for k, v in weights.items())
