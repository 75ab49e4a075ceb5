"""PyTorch files: read only through torch.load(weights_only=True), usual checkpoint wrappers, bare state_dicts out."""

from __future__ import annotations

import collections
import os

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.io import WeightsFileError, read_weights, write_weights
from resnet_core.testing import random_weights

pytestmark = pytest.mark.torch

SPEC = "tiny_resnext"


@pytest.fixture(scope="module")
def torch():
    import torch

    return torch


def tensors(torch, weights: dict) -> collections.OrderedDict:
    return collections.OrderedDict((k, torch.from_numpy(np.ascontiguousarray(v))) for k, v in weights.items())


def bits(weights: dict) -> dict:
    return {k: (v.dtype.name, v.shape, v.tobytes()) for k, v in weights.items()}


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_round_trip_is_bit_exact(tmp_path, torch, dtype):
    from resnet_core.io.formats import dtype_by_name

    weights = random_weights(SPEC, dtype=dtype_by_name(dtype))
    path = write_weights(tmp_path / "m.pth", weights, SPEC)
    spec, back = read_weights(path)
    assert spec == rc.get_spec(SPEC) and spec.name == SPEC
    assert bits(back) == bits(weights)
    state = torch.load(path, weights_only=True)
    assert str(state["conv1.weight"].dtype) == f"torch.{dtype}"


def test_our_file_is_a_plain_state_dict(tmp_path, torch, need):
    """torch.load + load_state_dict(strict=True) works on our models and torchvision's, spec metadata and all."""
    torchvision = need("torch", "torchvision")
    weights = random_weights("resnet18")
    path = write_weights(tmp_path / "r18.pth", weights, "resnet18")
    state = torch.load(path, weights_only=True)
    assert list(state) == list(weights)
    reference = torchvision.models.resnet18(weights=None)
    reference.load_state_dict(state, strict=True)
    ours = rc.build("resnet18", backend="torch")
    ours.load_state_dict(state, strict=True)
    got = reference.state_dict()
    assert all(got[k].numpy().tobytes() == weights[k].tobytes() for k in weights)


def test_reads_a_torchvision_checkpoint(tmp_path, torch, need):
    torchvision = need("torch", "torchvision")
    model = torchvision.models.resnet18(weights=None)
    state = model.state_dict()  # with num_batches_tracked buffers
    torch.save(state, tmp_path / "tv.pth")
    spec, back = read_weights(tmp_path / "tv.pth")
    assert spec == rc.get_spec("resnet18") and spec.name == "resnet18"
    expected = {k: v.numpy() for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert bits(back) == bits(expected)


@pytest.mark.parametrize("wrap", [
    lambda sd: {"state_dict": sd},
    lambda sd: {"model": sd, "epoch": 3, "best_acc1": 0.5},
    lambda sd: {"model_state_dict": sd, "optimizer_state_dict": {}},
    lambda sd: collections.OrderedDict(("module." + k, v) for k, v in sd.items()),
    lambda sd: {"state_dict": collections.OrderedDict(("module." + k, v) for k, v in sd.items())},
], ids=["state_dict", "model", "model_state_dict", "DataParallel", "state_dict+DataParallel"])
def test_reads_checkpoint_wrappers(tmp_path, torch, wrap):
    weights = random_weights(SPEC)
    torch.save(wrap(tensors(torch, weights)), tmp_path / "ckpt.pt")
    spec, back = read_weights(tmp_path / "ckpt.pt")
    assert spec.name == SPEC
    assert bits(back) == bits(weights)


def test_reads_the_legacy_non_zip_format(tmp_path, torch):
    weights = random_weights(SPEC, dtype="float16")
    torch.save(tensors(torch, weights), tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    assert bits(read_weights(tmp_path / "old.pth").weights) == bits(weights)


class _Payload:
    """Unpickling this would run ``touch <sentinel>``."""

    def __init__(self, sentinel):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_a_pickle_carrying_code_is_refused_and_never_run(tmp_path, torch, legacy):
    sentinel = tmp_path / "PWNED"
    state = tensors(torch, random_weights(SPEC))
    state["fc.bias"] = _Payload(sentinel)
    torch.save(state, tmp_path / "evil.pth", _use_new_zipfile_serialization=not legacy)
    with pytest.raises(WeightsFileError, match=r"Refused to load .*evil\.pth.*nothing in it was run") as info:
        read_weights(tmp_path / "evil.pth")
    assert "posix.system" in str(info.value) or "Unsupported" in str(info.value)
    assert not sentinel.exists()


def test_a_plain_pickle_with_code_is_refused(tmp_path, torch):
    import pickle

    sentinel = tmp_path / "PWNED"
    (tmp_path / "evil.pth").write_bytes(pickle.dumps(_Payload(sentinel), protocol=2))
    with pytest.raises(WeightsFileError, match="Refused to load"):
        read_weights(tmp_path / "evil.pth")
    assert not sentinel.exists()


@pytest.mark.parametrize("obj, message", [
    (lambda t: t.zeros(3), "holds a Tensor, not a state_dict"),
    (lambda t: [1, 2], "holds a list, not a state_dict"),
    (lambda t: {"epoch": 3, "lr": 0.1}, r"holds no state_dict: top-level keys \['epoch', 'lr'\]"),
    (lambda t: {"conv1.weight": t.zeros(2), "step": 3}, r"non-tensor entries: step \(int\)"),
])
def test_files_that_hold_no_state_dict_are_refused(tmp_path, torch, obj, message):
    torch.save(obj(torch), tmp_path / "x.pth")
    with pytest.raises(WeightsFileError, match=message):
        read_weights(tmp_path / "x.pth")


def test_write_weights_takes_torch_tensors(tmp_path, torch):
    weights = random_weights(SPEC)
    as_torch = {k: torch.from_numpy(v).to(torch.bfloat16) for k, v in weights.items()}
    _, back = read_weights(write_weights(tmp_path / "m.safetensors", as_torch, SPEC))
    expected = {k: v.view(torch.int16).numpy().tobytes() for k, v in as_torch.items()}
    assert {k: v.tobytes() for k, v in back.items()} == expected
    assert {v.dtype.name for v in back.values()} == {"bfloat16"}


@pytest.mark.parametrize("name", ["resnet50d", "seresnext26d_32x4d"])
def test_reads_timm_safetensors_and_recognises_the_preset(tmp_path, torch, need, name):
    """A timm checkpoint as the hub ships it: safetensors in timm's names (deep stem, avg shortcut, SE)."""
    timm = need("torch", "timm")
    stn = need("torch", "safetensors.torch")
    state = timm.create_model(name, pretrained=False).state_dict()
    stn.save_file(state, str(tmp_path / "model.safetensors"))
    spec, back = read_weights(tmp_path / "model.safetensors")
    assert spec == rc.get_spec(name) and spec.name == name
    expected = {k: v.numpy() for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert bits(back) == bits(expected)
