"""ResNets imported from ONNX files written by other exporters (torch.onnx's dynamo and TorchScript exporters,
float16 rewrites, onnxruntime's optimiser) and by ours: each import is matched by topology, then our torch model
runs against onnxruntime's run of the same file within 1e-5 relative. Refusals name the first node that does not
fit; damaged files name the file."""

from __future__ import annotations

import contextlib
import io
import os
import warnings

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.cli import main
from resnet_core.errors import ResNetCoreError
from resnet_core.io.formats import WeightsFileError
from resnet_core.io.onnx_graph import OnnxGraphError, UnverifiedImportWarning, import_onnx
from resnet_core.testing import assert_same_weights, random_weights, relative_error

pytestmark = pytest.mark.torch

SIZE = (35, 37)


def _perturb(torch, model, seed=0):
    """Non-trivial batch-norm statistics and affine terms, so a misplaced norm shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                c = module.num_features
                module.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
                module.running_var.copy_(torch.rand(c, generator=gen) * 1.5 + 0.5)
                module.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(c, generator=gen) * 0.2)
    return model.eval()


def _torchvision(torch):
    from torchvision.models.resnet import BasicBlock, ResNet

    return _perturb(torch, ResNet(BasicBlock, [1, 1, 1, 1], num_classes=7))


def _timm_d(torch):
    """resnet18d-like: deep stem, average-pooled projections."""
    from timm.models.resnet import BasicBlock, ResNet

    return _perturb(torch, ResNet(BasicBlock, [1, 1, 1, 1], num_classes=5, stem_width=8, stem_type="deep",
                                  avg_down=True, channels=(16, 16, 32, 32)), seed=1)


def _timm_resnext(torch):
    from timm.models.resnet import Bottleneck, ResNet

    return _perturb(torch, ResNet(Bottleneck, [1, 2, 1, 1], num_classes=6, cardinality=4, base_width=16,
                                  channels=(8, 16, 16, 16)), seed=2)


MODELS = {"torchvision": _torchvision, "timm_d": _timm_d, "timm_resnext": _timm_resnext}


def export(torch, model, path, exporter="dynamo", opset=18, fold=False, dynamic=False):
    """``model`` to ONNX as a user would; ``fold`` keeps the exporter's own batch-norm folding (its default)."""
    x = torch.zeros(2, 3, *SIZE)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic else None
            torch.onnx.export(model, (x,), str(path), dynamo=True, opset_version=opset, optimize=fold,
                              dynamic_shapes=shapes)
        else:
            axes = {"x": {0: "batch"}} if dynamic else None
            torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=opset, input_names=["x"],
                              do_constant_folding=fold, dynamic_axes=axes)
    return path


def _check(torch, path, model, batch=2):
    """Import, then the torch model built from the import against the original model and onnxruntime."""
    found = import_onnx(path)
    assert found.verified is True and found.max_relative_error < 1e-5, found.note
    test = os.environ.get("PYTEST_CURRENT_TEST", "").split("::")[-1].split(" ")[0]
    print(f"\n{test}: max relative error vs onnxruntime {found.max_relative_error:.1e}")
    ours = rc.build(found.spec, backend="torch").eval()
    rc.set_weights(ours, found.weights)
    images = torch.from_numpy(np.random.default_rng(5).standard_normal((batch, 3, *SIZE)).astype(np.float32))
    with torch.no_grad():
        assert relative_error(ours(images).numpy(), model(images).numpy()) < 1e-5
    return found


@pytest.mark.parametrize(("name", "exporter", "opset"), [
    ("torchvision", "dynamo", 18), ("torchvision", "torchscript", 13), ("timm_d", "dynamo", 21),
    ("timm_d", "torchscript", 17), ("timm_resnext", "dynamo", 18), ("timm_resnext", "torchscript", 13),
])
def test_torch_onnx_exports_import(torch, timm, tmp_path, name, exporter, opset):
    model = MODELS[name](torch)
    found = _check(torch, export(torch, model, tmp_path / "m.onnx", exporter, opset), model)
    expected = {"torchvision": {"stem": "7x7", "downsample": "conv"}, "timm_d": {"stem": "deep", "downsample": "avg"},
                "timm_resnext": {"groups": 4, "block": "bottleneck"}}[name]
    flat = found.spec.to_dict(flat=True)
    assert {k: flat[k] for k in expected} == expected
    print(f"{name} {exporter} opset {opset}: max relative error vs onnxruntime {found.max_relative_error:.1e}")


def test_strided_conv_in_place_of_the_stem_pool(torch, timm, tmp_path):
    """ResNet-RS's stem: three convs, then a strided conv unit instead of the max-pool."""
    from timm.models.resnet import Bottleneck, ResNet

    model = _perturb(torch, ResNet(Bottleneck, [1, 1, 1, 1], num_classes=3, stem_width=8, stem_type="deep",
                                   replace_stem_pool=True, channels=(4, 8, 8, 8)), seed=6)
    found = _check(torch, export(torch, model, tmp_path / "m.onnx", "dynamo", 18), model)
    assert found.spec.replace_stem_pool and found.matched.stem_pool is None


def test_dilated_last_stages(torch, timm, tmp_path):
    """timm's output_stride=8: the last two stages dilate instead of striding; the
    plan check finds the spec."""
    from timm.models.resnet import BasicBlock, ResNet

    model = _perturb(torch, ResNet(BasicBlock, [1, 1, 2, 2], num_classes=3, output_stride=8,
                                   channels=(8, 16, 32, 64)), seed=4)
    found = _check(torch, export(torch, model, tmp_path / "m.onnx", "torchscript", 17), model)
    assert found.spec.output_stride == 8


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_dynamic_batch_axis(torch, timm, tmp_path, exporter):
    model = _timm_resnext(torch)
    path = export(torch, model, tmp_path / "m.onnx", exporter, 18 if exporter == "dynamo" else 17, dynamic=True)
    found = _check(torch, path, model, batch=3)
    assert found.matched.input_batch is None and found.matched.input_size == SIZE


def test_float16_initializers(torch, timm, tmp_path):
    """Initializers stored as float16 and cast to float32 in the graph read as float32 weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = _timm_d(torch)
    path = export(torch, model, tmp_path / "m.onnx", "torchscript", 17)
    proto = onnx.load(str(path))
    graph = proto.graph
    casts = []
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            half = numpy_helper.to_array(init).astype(np.float16)
            init.CopyFrom(numpy_helper.from_array(half, init.name + "_fp16"))
            casts.append(helper.make_node("Cast", [init.name], [init.name[:-5]], to=TensorProto.FLOAT,
                                          name=f"cast_{init.name}"))
    for cast in reversed(casts):
        graph.node.insert(0, cast)
    onnx.save(proto, str(tmp_path / "half.onnx"))
    found = import_onnx(tmp_path / "half.onnx")
    assert found.verified and found.max_relative_error < 1e-5
    assert {w.dtype for w in found.weights.values()} == {np.dtype("float32")}
    assert all(np.array_equal(w, w.astype(np.float16).astype(np.float32)) for w in found.weights.values())


def test_our_export_round_trip_is_bit_for_bit(torch, tmp_path):
    spec = rc.get_spec("tiny_resnext")
    weights = random_weights(spec, seed=3)
    source = rc.write_weights(tmp_path / "tiny.safetensors", weights, spec)
    assert main(["export", str(source), str(tmp_path / "tiny.onnx"), "--size", "35x37", "-q"]) == 0
    read, back = rc.read_weights(tmp_path / "tiny.onnx")
    assert read == spec
    assert_same_weights(back, weights)
    found = import_onnx(tmp_path / "tiny.onnx")
    assert found.verified and found.max_relative_error < 1e-5
    assert main(["parity", "tiny_resnext", "--weights", str(tmp_path / "tiny.onnx"), "--backends", "torch,onnxruntime",
                 "--size", "35x37", "-q"]) == 0
    print(f"own export: max relative error vs onnxruntime {found.max_relative_error:.1e}")


def test_resolver_build_info_convert(torch, tmp_path, capsys):
    """``.onnx`` is a source like any weights file: rc.build, resnet-core info and convert read it."""
    model = _timm_resnext(torch)
    path = export(torch, model, tmp_path / "m.onnx", "dynamo", 18)
    net = rc.build(path, backend="torch").eval()
    images = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 3, *SIZE)).astype(np.float32))
    with torch.no_grad():
        assert relative_error(net(images).numpy(), model(images).numpy()) < 1e-5
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "onnx" in out and "verified against onnxruntime" in out
    assert main(["convert", str(path), str(tmp_path / "m.safetensors")]) == 0
    spec, weights = rc.read_weights(tmp_path / "m.safetensors")
    assert spec == rc.read_weights(path).spec and set(weights) == set(rc.read_weights(path).weights)


@pytest.mark.parametrize(("exporter", "opset"), [("dynamo", 18), ("torchscript", 13), ("torchscript", 17)])
def test_exporters_default_folding_imports(torch, timm, tmp_path, exporter, opset):
    """torch.onnx folds eval-mode batch norms into the convs by default."""
    model = _timm_d(torch)
    found = _check(torch, export(torch, model, tmp_path / "m.onnx", exporter, opset, fold=True), model)
    assert found.spec.norm == "folded"
    print(f"folded {exporter} opset {opset}: max relative error vs onnxruntime {found.max_relative_error:.1e}")


def test_onnxruntime_optimised_graph_imports(torch, timm, tmp_path):
    import onnxruntime as ort

    model = _timm_resnext(torch)
    path = export(torch, model, tmp_path / "m.onnx", "torchscript", 17)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    found = _check(torch, tmp_path / "opt.onnx", model)
    assert found.spec.norm == "folded"
    print(f"onnxruntime-optimised: max relative error vs onnxruntime {found.max_relative_error:.1e}")


def test_folded_graph_gets_conv_bias_names(torch, timm, tmp_path):
    """Whatever the spec option, a folded graph's tensors are the convs' weights and biases and no norm."""
    from resnet_core.io.onnx_graph import canonical, load_model, match_graph

    path = export(torch, _timm_d(torch), tmp_path / "m.onnx", "torchscript", 17, fold=True)
    weights, _, eps = canonical(match_graph(load_model(path), path))
    assert not eps and not any(".bn" in k or "running" in k or k.startswith("bn1") for k in weights)
    assert {"conv1.0.bias", "conv1.6.bias", "layer1.0.conv2.bias", "layer2.0.downsample.1.bias"} <= set(weights)


# -- refusals ---------------------------------------------------------------------------------------------------

def _mobilenet(torch):
    nn = torch.nn

    def dw(cin, cout, stride):
        return [nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(),
                nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    layers = [nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), *dw(8, 16, 1), *dw(16, 16, 2),
              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4)]
    return _perturb(torch, nn.Sequential(*layers))


def _vit(torch):
    nn = torch.nn

    class ViT(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch = nn.Conv2d(3, 16, 7, 7)
            self.block = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, dropout=0.0)
            self.head = nn.Linear(16, 4)

        def forward(self, x):
            tokens = self.patch(x).flatten(2).transpose(1, 2)
            return self.head(self.block(tokens).mean(1))

    return ViT().eval()


@pytest.mark.parametrize(("build", "expected"), [
    (_mobilenet, "Conv node"), (_vit, "node"),
])
def test_not_a_resnet_is_refused_naming_the_node(torch, tmp_path, build, expected):
    path = export(torch, build(torch), tmp_path / "m.onnx", "torchscript", 17)
    with pytest.raises(OnnxGraphError) as err:
        import_onnx(path)
    message = str(err.value)
    assert "\n" not in message and expected in message and "does not fit a ResNet" in message, message


def test_unsupported_op_is_refused_naming_it_and_cli_exits_2(torch, timm, tmp_path, capsys):
    import onnx

    path = export(torch, _timm_resnext(torch), tmp_path / "m.onnx", "torchscript", 17)
    proto = onnx.load(str(path))
    relu = [n for n in proto.graph.node if n.op_type == "Relu"][3]
    relu.op_type, relu.name = "LeakyRelu", "the_odd_one"
    onnx.save(proto, str(tmp_path / "odd.onnx"))
    with pytest.raises(OnnxGraphError, match="LeakyRelu node 'the_odd_one' does not fit a ResNet"):
        import_onnx(tmp_path / "odd.onnx")
    target = tmp_path / "out.safetensors"
    assert main(["convert", str(tmp_path / "odd.onnx"), str(target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "LeakyRelu node 'the_odd_one'" in err[0]
    assert not target.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "odd.onnx"]


def test_damaged_files_name_the_file(torch, tmp_path):
    path = rc.write_weights(tmp_path / "w.safetensors", random_weights("tiny_resnext"), "tiny_resnext")
    assert main(["export", str(path), str(tmp_path / "tiny.onnx"), "--size", "35x37", "-q"]) == 0
    data = (tmp_path / "tiny.onnx").read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
    (tmp_path / "noise.onnx").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "text.onnx").write_text("not a model at all\n")
    for name in ("cut.onnx", "noise.onnx", "text.onnx"):
        with pytest.raises(WeightsFileError, match=rf"{name} is not an ONNX model"):
            rc.read_weights(tmp_path / name)


def test_other_protobuf_is_refused(tmp_path):
    from onnx import numpy_helper

    (tmp_path / "tensor.onnx").write_bytes(numpy_helper.from_array(np.ones(3, np.float32)).SerializeToString())
    with pytest.raises(ResNetCoreError, match="tensor.onnx is not an ONNX model"):
        rc.read_weights(tmp_path / "tensor.onnx")


def test_without_onnxruntime_the_import_says_it_is_unverified(torch, tmp_path, monkeypatch):
    import sys

    spec = rc.get_spec("tiny_resnext")
    path = rc.write_weights(tmp_path / "w.safetensors", random_weights(spec), spec)
    assert main(["export", str(path), str(tmp_path / "tiny.onnx"), "--size", "35x37", "-q"]) == 0
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.warns(UnverifiedImportWarning, match="unverified"):
        found = import_onnx(tmp_path / "tiny.onnx")
    assert found.verified is False and "UNVERIFIED" in found.note and found.max_relative_error is None


def test_writing_onnx_as_weights_points_to_export(tmp_path):
    spec = rc.get_spec("tiny_resnext")
    with pytest.raises(ResNetCoreError, match="resnet-core export"):
        rc.write_weights(tmp_path / "w.onnx", random_weights(spec), spec)
    assert not (tmp_path / "w.onnx").exists()


def test_a_pool_the_plan_does_not_have_is_named(torch, tmp_path):
    """The structure fits the names and shapes, but the stem pool's padding is not the spec's: refused before
    any run, naming the pool."""
    import onnx
    from onnx import helper

    spec = rc.get_spec("tiny_resnext")
    path = rc.write_weights(tmp_path / "w.safetensors", random_weights(spec), spec)
    assert main(["export", str(path), str(tmp_path / "tiny.onnx"), "--size", "35x37", "-q"]) == 0
    proto = onnx.load(str(tmp_path / "tiny.onnx"))
    pool = next(n for n in proto.graph.node if n.op_type == "MaxPool")
    kept = [a for a in pool.attribute if a.name != "pads"]
    del pool.attribute[:]
    pool.attribute.extend([*kept, helper.make_attribute("pads", [0, 0, 0, 0])])
    pool.name = "stem_pool"
    onnx.save(proto, str(tmp_path / "unpadded.onnx"))
    with pytest.raises(OnnxGraphError, match=r"MaxPool node 'stem_pool' pools 3x3 at stride 2, padding 0; the plan's "
                                             r"3, 2, 1"):
        import_onnx(tmp_path / "unpadded.onnx", verify=False)


@pytest.mark.parametrize("pooling", ["avg", None])
def test_headless_networks_without_a_stored_spec(torch, tmp_path, pooling):
    """Pooled features or the last feature map out, and no spec in the metadata: the graph alone says which."""
    import onnx

    spec = rc.get_spec("tiny_resnext").replace(include_top=False, pooling=pooling)
    path = rc.write_weights(tmp_path / "w.safetensors", random_weights(spec), spec)
    rc.export(path, tmp_path / "full.onnx", size=SIZE)
    proto = onnx.load(str(tmp_path / "full.onnx"))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "bare.onnx"))
    found = import_onnx(tmp_path / "bare.onnx")
    assert found.verified and found.max_relative_error < 1e-5 and "recovered from the graph" in found.note
    assert (found.spec.include_top, found.spec.pooling, found.spec.layers) == (False, pooling, spec.layers)


def test_squeeze_excitation(torch, timm, tmp_path):
    """timm's SE-ResNet: each main path's output scaled by sigmoid(fc2(relu(fc1(mean))))."""
    from timm.models.resnet import Bottleneck, ResNet

    model = _perturb(torch, ResNet(Bottleneck, [1, 1, 1, 1], num_classes=3, channels=(8, 16, 16, 16),
                                   block_args={"attn_layer": "se"}), seed=8)
    found = _check(torch, export(torch, model, tmp_path / "m.onnx", "torchscript", 17), model)
    assert found.spec.attention == "se" and "layer1.0.se.fc1.weight" in found.weights
