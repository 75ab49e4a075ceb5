"""Keras files against real Keras on the engine KERAS_BACKEND names (tox runs jax, tensorflow and torch).

``.weights.h5`` is written with h5py alone; these tests prove that ``model.load_weights`` of a real
our Keras model reads it and that what ``model.save_weights`` writes is read back, bit for bit, in every
dtype, and that both files have the same groups, names, shapes and dtypes. ``.keras`` both ways too.
"""

from __future__ import annotations

import contextlib
import zlib

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.io import WeightsFileError, read_weights, write_weights
from resnet_core.io.formats import dtype_by_name
from resnet_core.io.keras_layout import keras_layout
from resnet_core.io.keras_model import without_tensorflow_probe
from resnet_core.testing import random_weights

pytestmark = pytest.mark.keras

SPEC = "tiny_resnext"
DTYPES = ["float32", "float16", "bfloat16"]
ROOT_ATTRS = ("resnet_core.spec", "resnet_core.format_version", "resnet_core.version")


@pytest.fixture(scope="module")
def keras():
    import keras

    return keras


@contextlib.contextmanager
def dtype_policy(keras, dtype: str):
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def build(keras, spec, dtype="float32"):
    with dtype_policy(keras, dtype):
        return rc.build(spec, backend="keras")


def assign(model, weights):
    """Canonical weights into the model's variables, in their own dtype (no cast on the way)."""
    for row in rc.keras_table(model.plan):
        getattr(model.get_layer(row.layer), row.variable).assign(row.layout.to_framework(weights[row.canonical]))


def model_values(keras, model) -> dict[str, tuple[str, np.ndarray]]:
    """(variable dtype, float64 values in canonical layout) per canonical name. Upcasting is exact and
    injective, so equal float64 values mean equal bits in the variable's own dtype."""
    out = {}
    for row in rc.keras_table(model.plan):
        variable = getattr(model.get_layer(row.layer), row.variable)
        value = np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(variable, "float32")), np.float64)
        out[row.canonical] = (str(variable.dtype), row.layout.to_canonical(value))
    return out


def fingerprint(weights: dict) -> dict:
    return {k: (v.dtype, v.tobytes()) for k, v in weights.items()}


def assert_model_holds(keras, model, weights, dtype):
    got = model_values(keras, model)
    assert sorted(got) == sorted(weights)
    for name, (vdtype, value) in got.items():
        assert vdtype == dtype, name
        np.testing.assert_array_equal(value, weights[name].astype(np.float64), err_msg=name)


def small_variants() -> list[rc.ResNetSpec]:
    fields = set(rc.spec.FIELD_NAMES)  # fields and 0.1's flat names
    tiny = rc.get_spec(SPEC)
    basic = rc.ResNetSpec(block="basic", layers=(1, 1, 2, 1), stem_width=8, base_planes=8, num_classes=5)
    variants = [
        tiny, basic,
        basic.replace(include_top=False, pooling="max"), tiny.replace(include_top=False, pooling=None),
        tiny.replace(conv_bias=True, stride_in_1x1=True),
    ]
    for changes in ({"stem": "deep", "downsample": "avg", "attention": "se"},
                    {"stem": "deep_tiered", "output_stride": 8, "stem_pool": False},
                    {"downsample": "avg", "output_stride": 16, "attention": "se"},
                    {"preact": True, "stride_block": "last", "conv_bias": True, "stem_pool_padding": "zero"},
                    {"preact": True, "stem": "deep", "downsample": "avg", "include_top": False}):
        if set(changes) <= fields:
            variants.append(tiny.replace(**changes))
            variants.append(basic.replace(**changes))
    return variants


def assert_layout_is_keras(keras, spec):
    with keras.StatelessScope(initialize_variables=False):  # structure only: no variable is initialised
        model = rc.build(spec, backend="keras")
    expected = [(type(layer).__name__, layer.name) for layer in model.layers]
    assert [(layer.cls, layer.name) for layer in keras_layout(model.plan)] == expected


def _variant_id(spec) -> str:
    """From the repr, not hash(): a spec holds strings, whose hash changes with every run (PYTHONHASHSEED)."""
    return f"{spec.block}-{zlib.crc32(repr(spec).encode()) & 0xffff:04x}"


@pytest.mark.parametrize("spec", small_variants(), ids=_variant_id)
def test_layout_is_the_order_of_model_layers(keras, spec):
    assert_layout_is_keras(keras, spec)


@pytest.mark.slow
@pytest.mark.parametrize("name", rc.list_specs())
def test_layout_of_every_preset(keras, name):
    assert_layout_is_keras(keras, rc.get_spec(name))


@pytest.mark.parametrize("dtype", DTYPES)
def test_keras_loads_our_weights_file(keras, tmp_path, dtype):
    weights = random_weights(SPEC, dtype=dtype_by_name(dtype))
    path = write_weights(tmp_path / "ours.weights.h5", weights, SPEC)
    model = build(keras, SPEC, dtype)
    model.load_weights(path)
    assert_model_holds(keras, model, weights, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_we_read_what_keras_save_weights_writes(keras, tmp_path, dtype):
    weights = random_weights(SPEC, dtype=dtype_by_name(dtype))
    model = build(keras, SPEC, dtype)
    assign(model, weights)
    model.save_weights(tmp_path / "keras.weights.h5")
    spec, back = read_weights(tmp_path / "keras.weights.h5")  # the spec is inferred: Keras stores none
    assert spec == rc.get_spec(SPEC) and spec.name == SPEC
    assert fingerprint(back) == fingerprint(weights)


def h5_tree(path) -> dict:
    import h5py

    tree = {}
    with h5py.File(path, "r") as f:
        tree["/"] = {k: v for k, v in f.attrs.items() if k not in ROOT_ATTRS}

        def visit(name, obj):
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in obj.attrs.items()}
            if isinstance(obj, h5py.Dataset):
                tree[name] = (obj.shape, obj.dtype.str, attrs, obj[()].tobytes(), obj.chunks, obj.compression)
            else:
                tree[name] = attrs

        f.visititems(visit)
    return tree


@pytest.mark.parametrize("dtype", DTYPES)
def test_our_file_has_the_layout_keras_writes(keras, tmp_path, dtype):
    spec = rc.get_spec(SPEC).replace(conv_bias=True)  # biased convolutions: two variables per conv
    weights = random_weights(spec, dtype=dtype_by_name(dtype))
    model = build(keras, spec, dtype)
    assign(model, weights)
    model.save_weights(tmp_path / "keras.weights.h5")
    write_weights(tmp_path / "ours.weights.h5", weights, spec)
    theirs, ours = h5_tree(tmp_path / "keras.weights.h5"), h5_tree(tmp_path / "ours.weights.h5")
    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        assert ours[key] == theirs[key], key


def test_files_without_layer_names_need_the_spec(keras, tmp_path):
    import h5py

    weights = random_weights(SPEC)
    model = build(keras, SPEC)
    assign(model, weights)
    path = tmp_path / "old.weights.h5"
    model.save_weights(path)
    with h5py.File(path, "a") as f:
        f.visititems(lambda name, obj: obj.attrs.__delitem__("name") if "name" in obj.attrs else None)
    with pytest.raises(WeightsFileError, match="names no layers .* pass spec=NAME"):
        read_weights(path)
    spec, back = read_weights(path, spec=SPEC)  # found by the layout instead
    assert {k: v.tobytes() for k, v in back.items()} == {k: v.tobytes() for k, v in weights.items()}


@pytest.mark.parametrize("dtype", DTYPES)
def test_keras_loads_our_keras_model_file(keras, tmp_path, dtype):
    weights = random_weights(SPEC, dtype=dtype_by_name(dtype))
    path = write_weights(tmp_path / "m.keras", weights, SPEC)
    spec, back = read_weights(path)  # read without Keras's help, in the stored dtype
    assert spec == rc.get_spec(SPEC) and spec.name == SPEC
    assert fingerprint(back) == fingerprint(weights)
    loaded = keras.saving.load_model(path)  # under the float32 global policy: the file's config says the dtype
    assert type(loaded).__name__ == "Functional" and rc.spec_of(loaded) == spec and rc.spec_of(loaded).name == SPEC
    assert_model_holds(keras, loaded, weights, dtype)


def test_we_read_keras_model_save(keras, tmp_path):
    spec = rc.get_spec(SPEC).replace(num_classes=3, name="three_classes")
    weights = random_weights(spec)
    model = build(keras, spec)
    assign(model, weights)
    with without_tensorflow_probe():  # TF loaded beside triton crashes later tests (see keras_file)
        model.save(tmp_path / "k.keras")
    back_spec, back = read_weights(tmp_path / "k.keras")
    assert back_spec.to_dict() == spec.to_dict()
    assert {k: v.tobytes() for k, v in back.items()} == {k: v.tobytes() for k, v in weights.items()}


def test_other_keras_models_are_refused(keras, tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with without_tensorflow_probe():
        model.save(tmp_path / "other.keras")
    with pytest.raises(WeightsFileError, match="holds a Keras 'Sequential' model, not a resnet-core"):
        read_weights(tmp_path / "other.keras")
    inputs = keras.Input((4,))
    functional = keras.Model(inputs, keras.layers.Dense(2, name="fc")(inputs))
    with without_tensorflow_probe():
        functional.save(tmp_path / "functional.keras")
    with pytest.raises(WeightsFileError, match="holds a Keras functional model that is not a resnet-core network"):
        read_weights(tmp_path / "functional.keras")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_unverified_keras_version_writes_through_save_weights(keras, tmp_path, monkeypatch, dtype):
    """The h5py writer copies Keras's private layout; for a Keras it was not verified on, Keras writes."""
    from resnet_core.io import keras_layout, keras_model

    monkeypatch.setattr(keras_layout, "VERIFIED_KERAS", ())
    calls = []
    monkeypatch.setattr(keras_model, "save_weights_through_keras",
                        lambda *a, _real=keras_model.save_weights_through_keras: calls.append(1) or _real(*a))
    weights = random_weights(SPEC, dtype=dtype_by_name(dtype))
    path = write_weights(tmp_path / "k.weights.h5", weights, SPEC)
    assert calls == [1]
    spec, back = read_weights(path)  # the spec is added to Keras's file
    assert spec == rc.get_spec(SPEC) and fingerprint(back) == fingerprint(weights)
    model = build(keras, SPEC, dtype)
    model.load_weights(path)
    assert_model_holds(keras, model, weights, dtype)


def test_written_file_is_read_back_before_it_is_kept(keras, tmp_path, monkeypatch):
    from resnet_core.io import keras_h5

    real = keras_h5.to_framework
    monkeypatch.setattr(keras_h5, "to_framework",
                        lambda layout, a, buffer=None: real(layout, a) + (a.ndim == 1))  # a bad writer
    target = tmp_path / "bad.weights.h5"
    with pytest.raises(WeightsFileError, match="does not read back bit for bit"):
        write_weights(target, random_weights(SPEC), SPEC)
    assert list(tmp_path.iterdir()) == []  # nothing left behind
