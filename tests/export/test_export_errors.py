"""``resnet-core export`` on bad input: one line, exit 2, nothing left behind; no framework needed."""

from __future__ import annotations

import importlib.util
import os
import re

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.cli import main
from resnet_core.export.formats import ExportError, format_for, missing_requirements
from resnet_core.io.atomic import atomic_folder
from resnet_core.testing import random_weights

SPEC = "tiny_resnext"


@pytest.fixture()
def weights_file(tmp_path):
    path = tmp_path / "w.safetensors"
    rc.write_weights(path, random_weights(SPEC), SPEC)
    return path


def one_error_line(capsys, code: int) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("out, options, expected", [
    ("m.xyz", [], "Cannot tell the export format of"),
    ("m.onnx", ["--format", "coreml"], "Unknown export format 'coreml'"),
    ("m.onnx", ["--format", "tflite"], "A tflite file ends with .tflite"),
    ("m.pt2", ["--from", "keras"], "pt2 is written from the torch model only, not from keras"),
    ("m.tflite", ["--from", "torch"], "tflite is written from the keras model only, not from torch"),
    ("m.tflite", ["--quantize", "int8", "--calibration", "x.npy"], "tflite cannot hold it"),
    ("m.onnx", ["--quantize", "int8"], "--quantize int8 needs --calibration IMAGES.npy"),
    ("m.onnx", ["--calibration", "x.npy"], "--calibration is only used with --quantize int8"),
    ("m.onnx", ["--opset", "3"], "opset must be an ONNX opset number"),
])
def test_bad_requests_exit_2_with_one_line_and_leave_nothing(tmp_path, capsys, weights_file, out, options, expected):
    before = sorted(os.listdir(tmp_path))
    line = one_error_line(capsys, main(["export", str(weights_file), str(tmp_path / out), *options]))
    assert expected in line
    assert sorted(os.listdir(tmp_path)) == before


def test_an_existing_output_is_not_replaced(tmp_path, capsys, weights_file):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"keep")
    line = one_error_line(capsys, main(["export", str(weights_file), str(target)]))
    assert "already exists; pass --force" in line and target.read_bytes() == b"keep"
    folder_target = tmp_path / "f"
    folder_target.write_text("a file")
    line = one_error_line(capsys, main(["export", str(weights_file), str(folder_target), "--format", "saved_model"]))
    assert "exists and is not a folder" in line


def test_a_missing_exporter_names_its_extra(tmp_path, capsys, weights_file, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    line = one_error_line(capsys, main(["export", str(weights_file), str(tmp_path / "m.onnx")]))
    assert re.search(r"needs [a-z, ]*onnxscript, which is not installed: pip install 'resnet-core\[onnx", line)
    assert sorted(os.listdir(tmp_path)) == ["w.safetensors"]
    assert "resnet-core[litert]" in missing_requirements((("surely_not_a_module_x", "litert"),))
    assert missing_requirements((("numpy", "core"),)) is None


def test_a_missing_source_exits_2(tmp_path, capsys):
    line = one_error_line(capsys, main(["export", str(tmp_path / "none.safetensors"), str(tmp_path / "m.pt2")]))
    assert "none.safetensors" in line


def test_format_names_and_extensions():
    assert format_for("a/b.ONNX").name == "onnx" and format_for("m.pt2").name == "pt2"
    assert format_for("folder", "saved-model").name == "saved_model" and format_for("m.tflite").name == "tflite"
    with pytest.raises(ExportError, match="saved_model"):
        format_for("folder")


def test_a_folder_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError, match="writer broke"):
        with atomic_folder(target) as tmp:
            tmp.mkdir()
            (tmp / "half").write_text("x")
            raise RuntimeError("writer broke")
    assert os.listdir(tmp_path) == []
    with atomic_folder(target) as tmp:
        tmp.mkdir()
        (tmp / "a").write_text("1")
    with atomic_folder(target, overwrite=True) as tmp:
        tmp.mkdir()
        (tmp / "b").write_text("2")
    assert os.listdir(tmp_path) == ["out"] and os.listdir(target) == ["b"]


@pytest.mark.parametrize("kwargs, expected", [
    ({"mode": "train"}, "eval mode only"),
    ({"grad": True}, "eval mode only"),
    ({"dtype": "bfloat16"}, "run float32 artifacts"),
    ({"reference": "onnxruntime"}, "The reference must run every layer"),
])
def test_artifact_engines_refuse_what_an_artifact_cannot_do(kwargs, expected):
    with pytest.raises(ValueError, match=expected):
        rc.parity(SPEC, backends="torch,onnxruntime", size=33, **kwargs)


def test_calibration_images_are_checked(tmp_path):
    from resnet_core.export.quantize import load_calibration

    bad = tmp_path / "nhwc.npy"
    np.save(bad, np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ExportError, match=r"\(N, 3, H, W\), NCHW"):
        load_calibration(bad, 3)
    with pytest.raises(FileNotFoundError, match="existing .npy"):
        load_calibration(tmp_path / "none.npy", 3)
