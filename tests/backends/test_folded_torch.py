"""Folded norms on PyTorch: the folded model equals the unfolded one in eval mode, it exports to ONNX without
a BatchNormalization, and rc.fold_norms gives what ONNX Runtime's own optimiser (basic level) folds.

Bounds are relative to the fold's own rounding: both fp32 models are compared with the unfolded model run in
float64, and the folded one may be at most a few times further from it than the unfolded one is (about 1e-7
here); a float64 fold run in float64 must agree with it to float64 rounding.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from folded_helpers import FOLDABLE, TINY

import resnet_core as rc
from resnet_core.testing import random_images, random_weights, relative_error

pytestmark = pytest.mark.torch

SIZE = (35, 37)  # odd and unequal: padding and ceil rules


@pytest.fixture(scope="module")
def torch():
    import torch

    torch.set_num_threads(2)
    return torch


def run(torch, spec, weights, images, dtype=None):
    model = rc.build(spec, backend="torch").eval()
    x = torch.from_numpy(images)
    if dtype is not None:  # before the weights, which set_weights casts to the model's dtype
        model, x = model.to(dtype), x.to(dtype)
    rc.set_weights(model, weights)
    with torch.no_grad():
        return model(x).numpy()


@pytest.mark.parametrize("name", sorted(FOLDABLE))
def test_the_folded_model_equals_the_unfolded_one_within_the_folds_rounding(torch, name):
    spec, weights = FOLDABLE[name], random_weights(rc.make_plan(FOLDABLE[name]))
    folded_spec, folded = rc.fold_norms(spec, weights)
    images = random_images(2, *SIZE)
    reference = run(torch, spec, weights, images, torch.float64)
    unfolded_error = relative_error(run(torch, spec, weights, images), reference)
    folded_error = relative_error(run(torch, folded_spec, folded, images), reference)
    assert folded_error <= 4 * unfolded_error + 1e-7 and folded_error < 1e-5, (folded_error, unfolded_error)
    # in float64 throughout, the fold is exact up to float64 rounding
    wide = {k: v.astype(np.float64) for k, v in weights.items()}
    _, folded_wide = rc.fold_norms(spec, wide)
    assert all(v.dtype == np.float64 for v in folded_wide.values())
    assert relative_error(run(torch, folded_spec, folded_wide, images, torch.float64), reference) < 1e-12


def test_the_folded_model_has_the_canonical_state_dict_and_no_norm_module(torch):
    spec, weights = rc.fold_norms(TINY, random_weights(rc.make_plan(TINY)))
    model = rc.build(spec, backend="torch")
    assert list(model.state_dict()) == list(weights)
    assert not [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert all(m.bias is not None for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    rc.set_weights(model, weights)
    assert all(np.array_equal(v, weights[k]) for k, v in rc.get_weights(model).items())


def test_the_folded_spec_exports_to_onnx_without_batch_norms_and_runs_as_torch(torch, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    unfolded = FOLDABLE["bottleneck_d_se"]
    spec, weights = rc.fold_norms(unfolded, random_weights(rc.make_plan(unfolded)))
    result = rc.export((spec, weights), tmp_path / "folded.onnx", size=SIZE)
    graph = onnx.load(str(result.path)).graph
    ops = [n.op_type for n in graph.node]
    assert "BatchNormalization" not in ops and ops.count("Conv") == len(
        [p for p in rc.make_plan(spec).params if p.role == "kernel" and len(p.shape) == 4])
    images = random_images(2, *SIZE)
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: images})[0]
    reference = run(torch, spec, weights, images, torch.float64)
    assert relative_error(got, reference) < 1e-5


def test_fold_norms_gives_the_initializers_of_onnx_runtimes_basic_fold(torch, tmp_path):
    """ONNX Runtime's basic level fuses Conv + BatchNormalization (ConvBNFusion); its initializers are
    fold_norms' weights. The unfolded graph comes from the TorchScript exporter without constant folding,
    which keeps the BatchNormalization nodes, and whose node names carry the module path
    ("/layer1/layer1.0/downsample/downsample.1/Conv"), which names the conv each initializer belongs to: the
    optimiser reorders the nodes (a block's projection comes before its main path), so the order alone would
    not."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import numpy_helper

    spec = FOLDABLE["bottleneck_d_se"]
    weights = random_weights(rc.make_plan(spec))
    model = rc.build(spec, backend="torch")
    rc.set_weights(model, weights)
    source, optimised = tmp_path / "unfolded.onnx", tmp_path / "optimised.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.from_numpy(random_images(1, *SIZE)),), str(source), dynamo=False,
                          do_constant_folding=False, opset_version=17)
    assert "BatchNormalization" in [n.op_type for n in onnx.load(str(source)).graph.node]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(optimised)
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    graph = onnx.load(str(optimised)).graph
    assert "BatchNormalization" not in [n.op_type for n in graph.node]
    initializers = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    folded_spec, folded = rc.fold_norms(spec, weights)
    convs = {_module_of(n.name): n for n in graph.node if n.op_type == "Conv" and "/se/" not in n.name}
    assert sorted(convs) == sorted(n[:-len(".bias")] for n in folded if n.endswith(".bias") and ".se." not in n
                                   and n != "fc.bias")
    errors = []
    for module, node in convs.items():
        kernel, bias = initializers[node.input[1]], initializers[node.input[2]]
        errors.append(relative_error(kernel, folded[f"{module}.weight"]))
        errors.append(relative_error(bias, folded[f"{module}.bias"]))
    assert max(errors) < 1e-6, errors


def _module_of(node_name: str) -> str:
    """The canonical module of a TorchScript-exported node, from its scopes: each is the module's name in its
    parent, a Sequential's or ModuleDict's child prefixed by the parent's ("/layer1/layer1.0/downsample/
    downsample.1/Conv" -> "layer1.0.downsample.1", "/conv1/conv1.0/Conv" -> "conv1.0")."""
    scopes = node_name.strip("/").split("/")[:-1]
    parents = ["", *scopes[:-1]]
    return ".".join(s[len(p) + 1:] if s.startswith(p + ".") else s for p, s in zip(parents, scopes, strict=True))


def test_the_parity_report_runs_a_folded_network(tmp_path):
    """The report sizes each batch norm's input to refuse inputs too small for it; a folded plan has none."""
    pytest.importorskip("onnxruntime")
    spec, weights = rc.fold_norms(TINY, random_weights(rc.make_plan(TINY)))
    report = rc.parity(spec, backends="torch,onnxruntime", weights=weights, batch=1, size=SIZE)
    assert report.ok, report.table()
