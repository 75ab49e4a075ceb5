"""Lossless conversion: every ordered pair of formats and a chain through all, in float32, float16 and bfloat16.

Each case is marked with what it needs: ``.pth`` needs torch; ``.weights.h5``, ``.keras`` and bfloat16 need
the Keras stack (Keras, and with it h5py and ml_dtypes); ``.keras`` is written by Keras on the engine
KERAS_BACKEND names.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.io import convert, read_weights, write_weights
from resnet_core.io.formats import dtype_by_name
from resnet_core.testing import random_weights

# Not a preset, with biased convolutions and a custom name: the spec must survive every hop as well.
SPEC = rc.get_spec("tiny_resnext").replace(conv_bias=True, num_classes=5, bn_eps=2e-5, name="tiny_biased")
EXTENSIONS = {"safetensors": ".safetensors", "pytorch": ".pth", "keras-weights": ".weights.h5", "keras": ".keras"}
DTYPES = ["float32", "float16", "bfloat16"]


def marks(formats, dtype):
    out = []
    if "pytorch" in formats:
        out.append(pytest.mark.torch)
    if {"keras-weights", "keras"} & set(formats) or (dtype == "bfloat16" and not out):
        out.append(pytest.mark.keras)
    return out


def fingerprint(weights: dict) -> dict:
    return {k: (v.dtype.name, v.shape, v.tobytes()) for k, v in weights.items()}


def source_weights(dtype: str) -> dict:
    return random_weights(SPEC, seed=1, dtype=dtype_by_name(dtype))


PAIRS = [pytest.param(a, b, d, marks=marks((a, b), d), id=f"{a}-{b}-{d}")
         for a, b in itertools.product(EXTENSIONS, repeat=2) for d in DTYPES]


@pytest.mark.parametrize("source, target, dtype", PAIRS)
def test_every_pair_is_bit_exact(tmp_path, source, target, dtype):
    weights = source_weights(dtype)
    src = write_weights(tmp_path / f"in{EXTENSIONS[source]}", weights, SPEC)
    dst = tmp_path / f"out{EXTENSIONS[target]}"
    result = convert(src, dst)
    assert result.count == len(weights) and result.dtypes == (dtype,)
    spec, back = read_weights(dst)
    assert spec.to_dict() == SPEC.to_dict()
    assert fingerprint(back) == fingerprint(weights)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([src.name, dst.name])  # no temporary left


CHAIN = ["safetensors", "pytorch", "keras-weights", "keras", "safetensors", "keras-weights", "pytorch", "keras",
         "pytorch", "safetensors"]


@pytest.mark.parametrize("dtype", [pytest.param(d, marks=marks(CHAIN, d)) for d in DTYPES])
def test_a_chain_through_every_format_is_bit_exact(tmp_path, dtype):
    weights = source_weights(dtype)
    path = write_weights(tmp_path / f"0{EXTENSIONS[CHAIN[0]]}", weights, SPEC)
    for i, fmt in enumerate(CHAIN[1:], start=1):
        path = convert(path, tmp_path / f"{i}{EXTENSIONS[fmt]}").target
        spec, back = read_weights(path)
        assert spec.to_dict() == SPEC.to_dict(), path.name
        assert fingerprint(back) == fingerprint(weights), path.name


@pytest.mark.parametrize("target", [pytest.param(t, marks=marks((t,), "bfloat16")) for t in EXTENSIONS])
@pytest.mark.parametrize("cast", ["float16", "bfloat16"])
def test_dtype_casts_every_tensor_as_numpy_would(tmp_path, target, cast):
    weights = source_weights("float32")
    src = write_weights(tmp_path / "in.safetensors", weights, SPEC)
    dst = convert(src, tmp_path / f"out{EXTENSIONS[target]}", dtype=cast).target
    _, back = read_weights(dst)
    expected = {k: v.astype(dtype_by_name(cast)) for k, v in weights.items()}  # round to nearest even
    assert fingerprint(back) == fingerprint(expected)
    assert not np.array_equal(back["fc.weight"].astype(np.float32), weights["fc.weight"])  # it really was cast
