"""``resnet-core info``: spec and where it came from, tensor count, dtype, sizes, writer."""

from __future__ import annotations

import json

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.cli import main
from resnet_core.io import write_weights
from resnet_core.io.formats import TensorInfo
from resnet_core.io.safetensors_io import write as write_safetensors
from resnet_core.testing import random_weights

SPEC = "tiny_resnext"


def info_json(capsys, *argv) -> dict:
    assert main(["info", "--json", *map(str, argv)]) == 0
    return json.loads(capsys.readouterr().out)


def test_text_output(tmp_path, capsys):
    weights = random_weights(SPEC)
    path = write_weights(tmp_path / "m.safetensors", weights, SPEC)
    assert main(["info", str(path)]) == 0
    lines = dict(line.split(":", 1) for line in capsys.readouterr().out.splitlines() if not line.startswith(" "))
    assert lines["format"].strip() == f"safetensors, written by resnet-core {rc.__version__} (weights format 1)"
    assert lines["spec"].strip() == "tiny_resnext (spec tiny_resnext stored in the file)"
    assert lines["tensors"].strip() == str(len(weights))
    assert lines["dtype"].strip() == "float32"
    assert lines["params"].strip() == f"{rc.make_plan(rc.get_spec(SPEC)).num_params:,}"
    assert lines["size"].strip() == f"{sum(v.nbytes for v in weights.values()) / 1e6:,.1f} MB of tensors, " \
                                    f"{path.stat().st_size / 1e6:,.1f} MB on disk"


def test_json_output(tmp_path, capsys):
    weights = random_weights(SPEC, dtype="float16")
    path = write_weights(tmp_path / "m.safetensors", weights, SPEC)
    info = info_json(capsys, path)
    assert info["spec"] == rc.get_spec(SPEC).to_dict() and info["spec_source"] == "file"
    assert info["tensors"] == len(weights) and info["dtypes"] == ["float16"]
    assert info["tensor_bytes"] == sum(v.nbytes for v in weights.values())
    assert info["file_bytes"] == path.stat().st_size and info["format"] == "safetensors"


def test_a_file_whose_spec_cannot_be_inferred_is_still_described(tmp_path, capsys):
    tensors = {"encoder.weight": np.zeros((4, 3), np.float32), "encoder.bias": np.zeros(4, np.float32)}
    infos = {k: TensorInfo(v.shape, v.dtype) for k, v in tensors.items()}
    path = tmp_path / "other.safetensors"
    write_safetensors(path, rc.get_spec(SPEC), infos, tensors.__getitem__, lambda n: None)
    raw = path.read_bytes()  # drop our metadata: a file from another tool
    import struct

    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    del header["__metadata__"]
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + raw[8 + n:])
    info = info_json(capsys, path)
    assert info["spec"] is None and info["tensors"] == 2 and info["tensor_bytes"] == 64
    assert info["spec_error"].startswith(f"Cannot infer the architecture of {path}")
    assert main(["info", str(path)]) == 0
    assert "spec:    unknown: Cannot infer the architecture" in capsys.readouterr().out


def test_arch_mismatch_and_bad_files_exit_2(tmp_path, capsys):
    path = write_weights(tmp_path / "m.safetensors", random_weights(SPEC), SPEC)
    assert main(["info", str(path), "--arch", "resnet18"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("resnet-core info: error: ") and "does not fit resnet18" in err and err.count("\n") == 1
    (tmp_path / "bad.safetensors").write_bytes(b"\1\0\0\0\0\0\0\0{")
    assert main(["info", str(tmp_path / "bad.safetensors")]) == 2
    assert "not a valid safetensors file" in capsys.readouterr().err


@pytest.mark.keras
def test_a_keras_file_reports_the_inferred_spec(tmp_path, capsys):
    import keras

    model = rc.build(SPEC, backend="keras")
    model.save_weights(tmp_path / "k.weights.h5")
    del keras
    info = info_json(capsys, tmp_path / "k.weights.h5")
    assert info["spec_source"] == "inferred" and info["spec"]["name"] == SPEC
    assert info["producer"] == "Keras save_weights"
    assert info["note"] == "inferred from tensor names and shapes: preset tiny_resnext"


@pytest.mark.torch
def test_a_bfloat16_checkpoint(tmp_path, capsys):
    import torch

    weights = random_weights(SPEC)
    torch.save({k: torch.from_numpy(v).to(torch.bfloat16) for k, v in weights.items()}, tmp_path / "m.pt")
    info = info_json(capsys, tmp_path / "m.pt")
    assert info["dtypes"] == ["bfloat16"] and info["producer"] == "PyTorch state_dict"
    assert info["tensor_bytes"] == sum(v.nbytes for v in weights.values()) // 2
