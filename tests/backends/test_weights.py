"""Canonical weights on both adapters: strict and non-strict loading, dtype rules, get_weights."""

from __future__ import annotations

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.testing import random_weights

SPEC = "tiny_resnext"
BACKENDS = [pytest.param("torch", marks=pytest.mark.torch), pytest.param("keras", marks=pytest.mark.keras)]

MISSING = "layer1.0.bn1.running_var"
UNEXPECTED = "layer9.0.conv1.weight"
MISMATCHED = "fc.weight"
KEPT = "layer2.1.conv2.weight"


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def model(backend):
    return rc.build(SPEC, backend=backend)


@pytest.fixture
def weights():
    return random_weights(SPEC, seed=1)


def _same(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_strict_error_lists_every_problem_at_once(model, weights):
    bad = dict(weights)
    del bad[MISSING]
    bad[UNEXPECTED] = np.zeros((4, 4, 1, 1), np.float32)
    expected_shape = weights[MISMATCHED].shape
    bad[MISMATCHED] = np.zeros((3, 7), np.float32)
    before = rc.get_weights(model)
    with pytest.raises(rc.WeightsMismatchError) as info:
        rc.set_weights(model, bad, strict=True)
    error = info.value
    message = str(error)
    assert isinstance(error, ValueError)
    assert (error.missing, error.unexpected) == ([MISSING], [UNEXPECTED])
    assert [(k, tuple(e), tuple(g)) for k, e, g in error.mismatched] == [(MISMATCHED, expected_shape, (3, 7))]
    assert MISSING in message and UNEXPECTED in message and MISMATCHED in message
    assert f"expected {expected_shape}, got (3, 7)" in message
    assert "missing 1 key" in message and "unexpected 1 key" in message and "shape mismatch in 1 key" in message
    assert SPEC in message  # which model
    assert _same(rc.get_weights(model), before)  # nothing was loaded


def test_strict_is_the_default(model, weights):
    del weights[MISSING]
    with pytest.raises(rc.WeightsMismatchError, match=MISSING):
        rc.set_weights(model, weights)


def test_many_missing_keys_are_counted(model, weights):
    dropped = [k for k in weights if k.endswith(("running_mean", "running_var"))]
    assert len(dropped) > 20
    for key in dropped:
        del weights[key]
    with pytest.raises(rc.WeightsMismatchError) as info:
        rc.set_weights(model, weights)
    assert info.value.missing == dropped  # all of them, in canonical order
    assert f"missing {len(dropped)} key(s)" in str(info.value)
    assert f"(+{len(dropped) - 20} more)" in str(info.value)


def test_non_strict_loads_the_rest(model, weights):
    before = rc.get_weights(model)
    partial = dict(weights)
    del partial[MISSING]
    partial[UNEXPECTED] = np.zeros((4, 4, 1, 1), np.float32)
    loaded = rc.set_weights(model, partial, strict=False)
    assert sorted(loaded) == sorted(k for k in weights if k != MISSING)
    after = rc.get_weights(model)
    assert np.array_equal(after[MISSING], before[MISSING])  # untouched
    assert not np.array_equal(after[KEPT], before[KEPT])  # and the rest really changed
    assert all(np.array_equal(after[k], weights[k]) for k in loaded)
    assert UNEXPECTED not in after


def test_non_strict_still_raises_on_shape_mismatch(model, weights):
    before = rc.get_weights(model)
    del weights[MISSING]
    weights[MISMATCHED] = np.zeros((3, 7), np.float32)
    with pytest.raises(rc.WeightsMismatchError) as info:
        rc.set_weights(model, weights, strict=False)
    assert [k for k, _, _ in info.value.mismatched] == [MISMATCHED]
    assert info.value.missing == []  # not strict: missing keys are not the complaint
    assert MISSING not in str(info.value)
    assert _same(rc.get_weights(model), before)


@pytest.mark.parametrize("dtype", ["int32", "int64", "uint8", "bool", "complex64"])
def test_non_float_tensors_are_refused(model, weights, dtype):
    before = rc.get_weights(model)
    weights[KEPT] = np.ones(weights[KEPT].shape, dtype=dtype)
    with pytest.raises(TypeError) as info:
        rc.set_weights(model, weights)
    assert repr(KEPT) in str(info.value) and dtype in str(info.value)
    assert _same(rc.get_weights(model), before)


@pytest.mark.torch
def test_non_float_torch_tensor_is_refused(weights):
    import torch

    model = rc.build(SPEC, backend="torch")
    tensors = {k: torch.from_numpy(v) for k, v in weights.items()}
    tensors[KEPT] = tensors[KEPT].to(torch.int64)
    with pytest.raises(TypeError, match=KEPT):
        rc.set_weights(model, tensors)
    tensors[KEPT] = torch.from_numpy(weights[KEPT])
    rc.set_weights(model, tensors)  # torch tensors are accepted as such
    assert _same(rc.get_weights(model), weights)


@pytest.mark.parametrize("dtype", ["float64", "float16"])
def test_other_float_dtypes_are_cast_to_the_model_dtype(model, weights, dtype):
    cast = {k: v.astype(dtype) for k, v in weights.items()}
    rc.set_weights(model, cast)
    got = rc.get_weights(model)
    for key, value in cast.items():
        assert got[key].dtype == np.float32, key
        assert np.array_equal(got[key], value.astype(np.float32)), key


def test_get_weights_is_canonical(model):
    plan = rc.make_plan(rc.get_spec(SPEC))
    got = rc.get_weights(model)
    assert list(got) == [p.name for p in plan.params]
    assert not [k for k in got if "num_batches_tracked" in k]
    for p in plan.params:
        assert isinstance(got[p.name], np.ndarray), p.name
        assert got[p.name].shape == p.shape, p.name
        assert got[p.name].dtype == np.float32, p.name


def test_get_weights_returns_copies(model):
    got = rc.get_weights(model)
    for key in ("bn1.weight", "conv1.weight", "fc.bias"):
        array = got[key]
        if array.flags.writeable:
            array[...] = 123.0
    again = rc.get_weights(model)
    assert not any((again[k] == 123.0).all() for k in ("bn1.weight", "conv1.weight", "fc.bias"))


def test_set_then_get_is_exact(model, weights):
    loaded = rc.set_weights(model, weights)
    assert sorted(loaded) == sorted(weights)
    assert _same(rc.get_weights(model), weights)


def test_fresh_models_follow_the_plan_init(model):
    plan = rc.make_plan(rc.get_spec(SPEC))
    got = rc.get_weights(model)
    for p in plan.params:
        if p.init == "zeros":
            assert not got[p.name].any(), p.name
        elif p.init == "ones":
            assert (got[p.name] == 1).all(), p.name
        else:
            assert got[p.name].std() > 0, p.name


def _train_step(model, backend: str) -> None:
    """One SGD step that writes every trainable variable (and the norm statistics) in place."""
    if backend == "torch":
        import torch

        model.train()
        model(torch.rand(2, 3, 33, 35)).square().sum().backward()
        with torch.no_grad():  # by hand: torch.optim imports dynamo, which crashes beside TensorFlow
            for parameter in model.parameters():
                parameter -= 0.5 * parameter.grad
    else:
        import keras

        model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
        model.fit(np.random.rand(2, 33, 35, 3).astype("float32"), np.zeros((2, 10), "float32"), verbose=0)


@pytest.mark.parametrize("given", ["file", "mapping"])
def test_built_models_own_their_weights(backend, weights, tmp_path, given):
    """A model built from a file (its arrays may be read-only views of a memory map) or from the caller's
    arrays trains without touching either: on Keras's torch engine a variable would otherwise share them."""
    path = rc.write_weights(tmp_path / "w.safetensors", weights, SPEC)
    before = path.read_bytes()
    kept = {k: v.copy() for k, v in weights.items()}
    model = rc.build(path, backend=backend) if given == "file" else rc.build(SPEC, backend=backend, weights=weights)
    assert _same(rc.get_weights(model), kept)
    _train_step(model, backend)
    trained = rc.get_weights(model)
    assert not np.array_equal(trained["fc.weight"], kept["fc.weight"])
    assert not np.array_equal(trained["bn1.running_mean"], kept["bn1.running_mean"])
    assert _same(weights, kept)  # the caller's arrays
    assert path.read_bytes() == before  # the file
