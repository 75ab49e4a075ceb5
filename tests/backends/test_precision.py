"""``rc.build(..., dtype=)``: whole models in bfloat16 / float16 on both frameworks, against torch fp32.

Measured on tiny_resnext, 65x77, non-trivial random weights: bfloat16 6.8e-3, float16 8e-4 to 1.1e-3 relative
on the logits on torch and every Keras engine (resnet18 on torch: 6.0e-3 / 1.0e-3). Bounds at about 3x; the
lower bounds prove the model really ran in reduced precision.
"""

from __future__ import annotations

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.testing import random_images, random_weights, relative_error, to_channels_last

SPEC = "tiny_resnext"
BOUNDS = {"bfloat16": (1e-4, 2e-2), "float16": (1e-5, 4e-3)}


@pytest.fixture(scope="module")
def reference(torch):
    weights = random_weights(SPEC, seed=1)
    images = random_images(4, 65, 77, seed=2)
    model = rc.build(SPEC, backend="torch").eval()
    rc.set_weights(model, weights)
    with torch.no_grad():
        return weights, images, model(torch.from_numpy(images)).numpy()


@pytest.mark.torch
@pytest.mark.parametrize("dtype", sorted(BOUNDS))
def test_torch_model_in_reduced_precision(torch, reference, dtype):
    weights, images, logits = reference
    model = rc.build(SPEC, backend="torch", dtype=dtype).eval()
    assert {p.dtype for p in model.parameters()} == {getattr(torch, dtype)}
    rc.set_weights(model, weights)
    with torch.no_grad():
        out = model(torch.from_numpy(images).to(getattr(torch, dtype))).float().numpy()
    low, high = BOUNDS[dtype]
    assert low < relative_error(out, logits) < high
    assert np.array_equal(out.argmax(1), logits.argmax(1))


@pytest.mark.keras
@pytest.mark.torch
@pytest.mark.parametrize("dtype", ["bfloat16"])  # float16 measured too (above); a JAX build costs ~20 s here
def test_keras_model_in_reduced_precision(need, reference, dtype):
    need("keras", "keras")
    weights, images, logits = reference
    model = rc.build(SPEC, backend="keras", dtype=dtype)
    assert {str(v.dtype) for v in model.weights} == {dtype}
    rc.set_weights(model, weights)
    out = np.asarray(model.predict_on_batch(to_channels_last(images)), np.float32)  # one compiled call on jax
    low, high = BOUNDS[dtype]
    assert low < relative_error(out, logits) < high
    assert np.array_equal(out.argmax(1), logits.argmax(1))


def test_an_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="Unknown dtype 'int4'"):
        rc.build(SPEC, backend="torch", dtype="int4")
