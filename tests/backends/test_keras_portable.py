"""``.keras`` files load anywhere: plain functional models of built-in layers, spec recovered from layers.

Five options need custom layers, registered under ``resnet_core`` (CUSTOM_LAYERS): such files load with
``keras.saving.load_model`` once resnet_core is imported; every other file loads with Keras alone.

Saved on this engine, a model loads in a fresh process with Keras alone (resnet_core never imported,
safe mode on) and with resnet_core (spec, weights, readers); outputs are compared bit for bit. The
built-in -inf padding before the stem pool is checked bit-exact against ``keras.ops.pad(-inf)``.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.io.keras_model import without_tensorflow_probe
from resnet_core.spec import ResNeSt
from resnet_core.testing import random_weights

pytestmark = pytest.mark.keras

# Pre-activation with -inf stem-pool padding (the built-in border construction), SE, a custom epsilon.
PREACT = rc.ResNetSpec(block="basic", layers=(1, 1), preact=True, attention="se", se_ratio=0.25, num_classes=5,
                       bn_eps=2e-5, name="tiny_preact")
POST = rc.ResNetSpec(block="bottleneck", layers=(1, 1), base_planes=8, groups=2, width_per_group=8, num_classes=4,
                     stride_in_1x1=True, name="tiny_post")
VARIANTS = [
    PREACT, POST,
    POST.replace(include_top=False, pooling="max", bn_momentum=0.01, num_classes=1000, name="headless"),
    POST.replace(layers=(1, 1, 1), output_stride=8, zero_init_residual=True, downsample="avg", name="dilated"),
    PREACT.replace(stride_block="last", stem_pool_padding="zero", attention=None, name="v2"),
    PREACT.replace(stem_pool=False, stem="deep", name="deep"),
    # Fields only the layers show in the newer families: blur anti-aliasing (resnet_core's BlurPool2D), weight
    # standardisation with its epsilon (StdConv2D), group counts of grouped norms.
    POST.replace(anti_alias="blur", attention="eca", stride_in_1x1=False, name="blur_eca"),
    PREACT.replace(std_conv=True, std_conv_eps=1e-8, norm="group", norm_groups=4, attention=None, name="bit"),
    PREACT.replace(norm="evo_s0", norm_groups=2, attention=None, name="evonorm"),
    PREACT.replace(norm="frn", attention=None, name="frn"),
    # ResNeSt's split attention: radix 2 sums its splits with RadixSum; radix 1 is built-in layers only.
    rc.ResNetSpec(block_spec=ResNeSt(groups=2, width_per_group=32, radix=2, avd=True, avd_first=True),
                  layers=(1, 1), base_planes=8, num_classes=4, stem="deep", stem_width=8, downsample="avg",
                  name="resnest"),
    rc.ResNetSpec(block_spec=ResNeSt(radix=1, avd=True), layers=(1, 1), base_planes=8, num_classes=4,
                  name="resnest_radix1"),
    # Res2Net's split: resnet_core's ChannelSlice; its pooled split: ZeroPadding2D + AveragePooling2D.
    rc.get_spec("res2net50_26w_4s").replace(layers=(1, 1), base_planes=16, num_classes=4, name="res2net"),
]
# The custom layers, registered under the "resnet_core" package, and the spec options that need them; every
# other layer is Keras's own (GroupNorm is keras.layers.GroupNormalization, ECA a Conv1D, SE two Conv2D).
CUSTOM_LAYERS = {"blur_eca": {"BlurPool2D"}, "bit": {"StdConv2D"}, "evonorm": {"EvoNormS0"},
                 "frn": {"FilterResponseNormTLU"}, "resnest": {"RadixSum"}, "res2net": {"ChannelSlice"}}


@pytest.fixture(scope="module")
def keras(need):
    return need("keras", "keras")


def _input(shape=(2, 65, 77, 3)) -> np.ndarray:
    return np.random.default_rng(3).normal(0.0, 2.0, shape).astype("float32")


def _model(keras, spec):
    return rc.build(spec, backend="keras", weights=random_weights(spec, seed=4))


def _save(keras, model, path) -> None:
    with without_tensorflow_probe():  # TF loaded beside triton crashes later tests (see keras_file)
        model.save(path)


@pytest.mark.parametrize("spec", [PREACT, POST], ids=lambda s: s.name)
def test_stem_pool_padding_is_bit_exact_minus_inf(keras, spec):
    """Zero padding after a ReLU, and a stride-1 'same' pool then subsampling without one, give exactly
    PyTorch's -inf padding, eagerly and in a compiled graph (TensorFlow's optimiser broke an arithmetic border)."""
    model = _model(keras, spec)
    pre = model.get_layer("maxpool_same" if spec.preact else "maxpool_pad").input
    probe = keras.Model(model.input, [pre, model.get_layer("maxpool").output])
    before, after = (keras.ops.convert_to_numpy(t) for t in probe(_input()))
    pooled = keras.Model(model.input, model.get_layer("maxpool").output).predict_on_batch(_input())
    # Compiled alone, as predict and fit run it (XLA may round the convs before it by an ulp).
    np.testing.assert_allclose(pooled, after, rtol=1e-6, atol=1e-6)
    assert (before < 0).any() == spec.preact  # only without a ReLU do negative values meet the border
    padded = keras.ops.pad(before, [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=-np.inf)
    reference = keras.ops.convert_to_numpy(keras.ops.max_pool(padded, 3, 2, "valid"))
    assert after.dtype == reference.dtype and np.array_equal(after, reference)


@pytest.mark.parametrize("spec", VARIANTS, ids=lambda s: s.name)
def test_built_in_layers_but_the_registered_custom_ones(keras, spec):
    """Built-in layers only, except exactly the custom layers the spec's options need, each registered under
    ``resnet_core`` (test_custom_layers_load_in_a_fresh_process loads them)."""
    model = _model(keras, spec)
    assert type(model) is keras.Model or type(model).__name__ == "Functional"
    custom = {type(layer) for layer in model.layers if type(layer).__module__.split(".")[0] != "keras"}
    assert {cls.__name__ for cls in custom} == CUSTOM_LAYERS.get(spec.name, set())
    for cls in custom:
        assert keras.saving.get_registered_name(cls) == f"resnet_core>{cls.__name__}"
        assert keras.saving.get_registered_object(f"resnet_core>{cls.__name__}") is cls


@pytest.mark.parametrize("spec", VARIANTS, ids=lambda s: s.name)
def test_spec_recovered_from_layers(keras, spec):
    """Every field a Keras graph shows comes back (the fields weights do not show included)."""
    model = _model(keras, spec)
    expected = rc.get_weights(model)
    del model.spec, model.plan  # as keras.saving.load_model makes it: layers only
    recovered = rc.spec_of(model)
    assert recovered == spec and recovered.name == spec.name
    assert {k: v.tobytes() for k, v in rc.get_weights(model).items()} == {k: v.tobytes() for k, v in expected.items()}


def test_fields_without_effect_recover_as_the_canonical_spec(keras):
    """se_ratio without SE, norm_groups of batch norms, std_conv_eps without std_conv, num_classes without a
    top, the stem pool's padding after a ReLU: no layer shows them, and the recovered spec equals the one
    built, and its canonical form, field for field."""
    spec = POST.replace(se_ratio=0.5, norm_groups=3, std_conv_eps=1e-3, include_top=False, pooling="avg",
                        num_classes=7, stem_pool_padding="zero", name="noisy")
    model = _model(keras, spec)
    del model.spec, model.plan
    recovered = rc.spec_of(model)
    assert recovered == spec and hash(recovered) == hash(spec)
    assert recovered.to_dict() == spec.to_dict()


def test_foreign_keras_model_is_not_owned(keras):
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(TypeError, match="Expected a model built by resnet_core"):
        rc.spec_of(other)


_LOAD = """
import json, sys
import numpy as np
import keras
path, out, x = sys.argv[1], sys.argv[2], np.load(sys.argv[3])
model = keras.saving.load_model(path)  # Keras alone, safe_mode left on
plain = {"resnet_core": any(m.startswith("resnet_core") for m in sys.modules), "class": type(model).__name__}
outputs = {"plain": keras.ops.convert_to_numpy(model(x))}
outputs.update({f"plain/{i}": keras.ops.convert_to_numpy(w) for i, w in enumerate(model.weights)})
if sys.argv[4] == "rc":
    import resnet_core as rc
    registered = "resnet_core.backends.keras_adapter" in sys.modules  # Keras was imported first
    model = keras.saving.load_model(path)
    spec, weights = rc.spec_of(model), rc.get_weights(model)
    file_spec, file_weights = rc.read_weights(path)
    rc.set_weights(model, file_weights)
    outputs["rc"] = keras.ops.convert_to_numpy(model(x))
    outputs.update({f"rc/{k}": v for k, v in weights.items()})
    plain.update(spec=spec.to_dict(), file_spec=file_spec.to_dict(), registered=registered,
                 same=all(np.array_equal(weights[k], file_weights[k]) for k in weights))
np.savez(out, **outputs)
print(json.dumps(plain))
"""


@pytest.fixture
def saved(keras, tmp_path):
    model = _model(keras, PREACT)
    path = tmp_path / "m.keras"
    _save(keras, model, path)
    return model, path


def _child(run_python, tmp_path, path, engine: str, resnet_core: bool):
    x, out = tmp_path / "x.npy", tmp_path / f"{engine}.npz"
    np.save(x, _input())
    script = f"import sys; sys.argv[1:] = {[str(path), str(out), str(x), 'rc' if resnet_core else '']!r}\n" + _LOAD
    done = run_python(script, env={"KERAS_BACKEND": engine, "TF_CPP_MIN_LOG_LEVEL": "3",
                                   "PYTHONPATH": os.environ.get("PYTHONPATH")}, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), np.load(out)


def test_fresh_process_loads_with_keras_alone_then_with_resnet_core(keras, run_python, tmp_path, saved):
    model, path = saved
    result, outputs = _child(run_python, tmp_path, path, keras.backend.backend(), resnet_core=True)
    assert result["resnet_core"] is False and result["class"] == "Functional"
    expected = keras.ops.convert_to_numpy(model(_input()))
    assert np.array_equal(outputs["plain"], expected) and np.array_equal(outputs["rc"], expected)
    variables = [keras.ops.convert_to_numpy(w) for w in model.weights]
    assert all(np.array_equal(outputs[f"plain/{i}"], w) for i, w in enumerate(variables))
    assert result["registered"] and result["same"]
    assert rc.ResNetSpec.from_dict(result["spec"]) == PREACT == rc.ResNetSpec.from_dict(result["file_spec"])
    assert result["spec"]["name"] == result["file_spec"]["name"] == PREACT.name
    canonical = rc.get_weights(model)
    assert all(np.array_equal(outputs[f"rc/{k}"], v) for k, v in canonical.items())


_LOAD_CUSTOM = """
import sys
import numpy as np
import keras
import resnet_core  # registers the custom layers (Keras imported first)
x = np.load(sys.argv[1])
for path in sys.argv[2:]:
    model = keras.saving.load_model(path)  # safe_mode left on
    np.save(path + ".npy", keras.ops.convert_to_numpy(model(x)))
"""


def test_custom_layers_load_in_a_fresh_process(keras, run_python, tmp_path):
    """Each spec that needs custom layers saves a file ``keras.saving.load_model`` reads in a fresh process
    once resnet_core is imported, computing the same outputs."""
    x = tmp_path / "x.npy"
    np.save(x, _input())
    expected = {}
    for spec in (v for v in VARIANTS if v.name in CUSTOM_LAYERS):
        model = _model(keras, spec)
        path = tmp_path / f"{spec.name}.keras"
        _save(keras, model, path)
        expected[path] = keras.ops.convert_to_numpy(model(_input()))
    argv = [str(x), *map(str, expected)]
    done = run_python(f"import sys; sys.argv[1:] = {argv!r}\n" + _LOAD_CUSTOM,
                      env={"KERAS_BACKEND": keras.backend.backend(), "TF_CPP_MIN_LOG_LEVEL": "3",
                           "PYTHONPATH": os.environ.get("PYTHONPATH")}, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    for path, want in expected.items():
        np.testing.assert_array_equal(np.load(f"{path}.npy"), want, err_msg=path.name)


def test_saved_on_jax_loads_on_torch_engine(keras, run_python, tmp_path, saved):
    if keras.backend.backend() != "jax":
        pytest.skip("one cross-engine case: saved on jax (keras-jax env), loaded on the torch engine")
    model, path = saved
    result, outputs = _child(run_python, tmp_path, path, "torch", resnet_core=False)
    assert result == {"resnet_core": False, "class": "Functional"}
    reference = keras.ops.convert_to_numpy(model(_input()))
    assert np.abs(outputs["plain"] - reference).max() <= 1e-5 * np.abs(reference).max()


def test_cli_info_and_convert_read_the_functional_file(keras, tmp_path, saved, capsys):
    from resnet_core.cli import main

    model, path = saved
    assert main(["info", str(path)]) == 0
    assert "tiny_preact" in capsys.readouterr().out
    assert main(["convert", str(path), str(tmp_path / "m.safetensors")]) == 0
    spec, weights = rc.read_weights(tmp_path / "m.safetensors")
    assert spec == PREACT and spec.name == PREACT.name
    expected = rc.get_weights(model)
    assert all(np.array_equal(weights[k], expected[k]) for k in expected)


def test_fast_build_holds_the_weights_and_saves_like_a_random_build(keras):
    spec = rc.ResNetSpec(block="basic", layers=(1,), num_classes=3, zero_init_residual=True)
    weights = random_weights(spec, seed=9)
    fast = rc.build(spec, backend="keras", weights=weights)
    assert {k: v.tobytes() for k, v in rc.get_weights(fast).items()} == {k: v.tobytes() for k, v in weights.items()}
    with without_tensorflow_probe():  # initializers restored: the saved config is a random build's
        assert fast.get_config() == rc.build(spec, backend="keras").get_config()
    with pytest.raises(rc.WeightsMismatchError, match="missing 1 key"):
        rc.build(spec, backend="keras", weights={k: v for k, v in weights.items() if k != "fc.bias"})


def test_networks_deeper_than_the_recursion_limit_build_and_run(keras):
    """Keras maps a functional graph recursively: ResNet-RS 270-420 and ECA-ResNet-269 exceed Python's default
    1000 frames. A 300-block stage (2139 layers) builds and runs, and the limit is restored afterwards."""
    import sys

    before = sys.getrecursionlimit()
    spec = rc.ResNetSpec(block="basic", layers=(1, 1, 300, 1), base_planes=4, stem_width=4, num_classes=3,
                         name="deep")
    model = rc.build(spec, backend="keras")
    assert len(model.layers) > 2000 and sys.getrecursionlimit() == before
    assert keras.ops.convert_to_numpy(model(np.zeros((1, 33, 33, 3), "float32"))).shape == (1, 3)
