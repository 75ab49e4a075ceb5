"""Exporters from the torch model, end to end: each artifact runs in its own runtime at a batch size other
than the one exported (2), against our torch model within 1e-5; int8 within a measured bound; the artifact
engines of the parity report."""

from __future__ import annotations

import json

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.cli import main
from resnet_core.export import read_metadata
from resnet_core.testing import random_images, random_weights, relative_error

pytestmark = pytest.mark.torch

SPEC = "tiny_resnext"
SIZE = (65, 77)
BATCH = 3  # exported at 2: the batch axis must be dynamic


@pytest.fixture(scope="module")
def case(torch, tmp_path_factory):
    """A weights file, test images and our torch model's logits for them."""
    folder = tmp_path_factory.mktemp("export")
    weights = random_weights(SPEC, seed=3)
    path = folder / "tiny.safetensors"
    rc.write_weights(path, weights, SPEC)
    images = random_images(BATCH, *SIZE, seed=4)
    model = rc.build(SPEC, backend="torch").eval()
    rc.set_weights(model, weights)
    with torch.no_grad():
        logits = model(torch.from_numpy(images)).numpy()
    return folder, path, images, logits


def _check_metadata(meta: dict, layout: str) -> None:
    assert meta["input_layout"] == layout and meta["input_name"] == "images" and meta["output_name"] == "logits"
    assert meta["preprocessing"] == "torch"
    assert json.loads(meta["preprocessing_params"])["std"] == [0.229, 0.224, 0.225]
    assert rc.ResNetSpec.from_json(meta["resnet_core_spec"]) == rc.get_spec(SPEC)


@pytest.fixture(scope="module")
def onnx_file(case):
    """Exported through the command, as a user would."""
    folder, path, _, _ = case
    target = folder / "tiny.onnx"
    assert main(["export", str(path), str(target), "--size", "65x77", "-q"]) == 0
    return target


def test_onnx_from_torch_runs_in_onnxruntime(case, onnx_file, need):
    ort, onnx = need("torch", "onnxruntime"), need("torch", "onnx")
    _, _, images, logits = case
    target = onnx_file
    proto = onnx.load(str(target))
    assert {o.domain: o.version for o in proto.opset_import}[""] == 18
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    out = session.run(None, {"images": images})[0]
    assert out.shape == logits.shape
    assert relative_error(out, logits) < 1e-5
    _check_metadata(read_metadata(target), "NCHW")


def test_pt2_runs_through_torch_export_load(case, torch):
    folder, path, images, logits = case
    target = folder / "tiny.pt2"
    result = rc.export(path, target, size=SIZE)
    assert result.format == "pt2" and result.origin == "torch"
    program = torch.export.load(str(target))
    with torch.no_grad():
        out = program.module()(torch.from_numpy(images)).numpy()
    assert relative_error(out, logits) < 1e-5
    _check_metadata(read_metadata(target), "NCHW")


def test_int8_static_quantisation_within_its_measured_bound(case, need, torch):
    """Random weights and images, calibrated on 32 other images: measured max rel 5.6e-2, top-1 100%, top-5
    95% on 64 images (tiny_resnext, 10 classes). Bounds at about twice that error."""
    ort = need("torch", "onnxruntime")
    folder, path, _, _ = case
    calibration = folder / "calibration.npy"
    np.save(calibration, random_images(32, *SIZE, seed=5))
    target = folder / "tiny.int8.onnx"
    assert main(["export", str(path), str(target), "--quantize", "int8", "--calibration", str(calibration),
                 "-q"]) == 0
    assert "int8 static" in read_metadata(target)["quantization"]
    images = random_images(64, *SIZE, seed=9)
    model = rc.build(SPEC, backend="torch").eval()
    rc.set_weights(model, rc.read_weights(path).weights)
    with torch.no_grad():
        reference = model(torch.from_numpy(images)).numpy()
    out = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"]).run(None, {"images": images})[0]
    error = relative_error(out, reference)
    assert 1e-4 < error < 0.12  # really quantised, and close
    assert np.mean(out.argmax(1) == reference.argmax(1)) >= 0.9


def test_calibration_of_another_size_is_refused(case, capsys):
    folder, path, _, _ = case
    calibration = folder / "small.npy"
    np.save(calibration, random_images(2, 33, 33))
    code = main(["export", str(path), str(folder / "q.onnx"), "--quantize", "int8", "--calibration",
                 str(calibration), "--size", "65x77"])
    assert code == 2 and "33x33 but the export size is 65x77" in capsys.readouterr().err
    assert not (folder / "q.onnx").exists()


def test_parity_report_runs_onnxruntime_and_torch_export_engines(case, onnx_file):
    """torch-export exports its own artifact; onnxruntime checks the given one (as a user checks a shipped file)."""
    _, path, _, _ = case
    report = rc.parity(path, backends="torch,onnxruntime,torch-export", size=SIZE, batch=BATCH,
                       engine_weights={"onnxruntime": onnx_file})
    assert report.ok, report.table()
    assert report.engines["onnxruntime"]["artifact"] == "tiny.onnx (given)"
    assert report.engines["torch-export"]["artifact"] == "torch-export.model.pt2"
    logits = report.layer("logits")
    assert set(logits.engines) == {"onnxruntime", "torch-export"}
    assert logits.engines["torch-export"]["max_rel"] == 0.0  # the same kernels run
    assert logits.engines["onnxruntime"]["max_rel"] < 1e-5 and logits.engines["onnxruntime"]["top1"] == 1.0
    assert report.layer("stem").engines == {}  # an artifact has the output only
    assert "-" in report.table().splitlines()[5]
    assert report.engines["onnxruntime"]["versions"]["onnxruntime"]
