"""Res2Net in Keras: parity with our torch model (and through it timm's), the layers it is made of, spec
recovery from the layers, ``.keras`` files loading in a fresh process in safe mode, refusals of Keras peers.

Small spec (stages of two blocks: the cascade and the first blocks' pooled splits), odd input, random weights
with perturbed norm statistics. Run on each engine (KERAS_BACKEND=jax, tensorflow, torch; one process each).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.io.keras_model import without_tensorflow_probe
from resnet_core.testing import loaded, random_images, random_weights, relative_error, to_channels_last

pytestmark = pytest.mark.keras

HEIGHT, WIDTH, BATCH = 65, 77, 2
SPECS = {
    "26w_4s": rc.get_spec("res2net50_26w_4s").replace(layers=(2, 2, 1, 1), base_planes=16, num_classes=7),
    "res2next_os8": rc.get_spec("res2next50").replace(layers=(1, 2, 1, 1), base_planes=16, output_stride=8),
    "d_48w_2s": rc.get_spec("res2net50d").replace(layers=(1, 1, 2, 1), base_planes=16,
                                                  block_spec=rc.get_spec("res2net50_48w_2s").block_spec),
}


@pytest.fixture(scope="module")
def keras(need):
    return need("keras", "keras")


@pytest.mark.torch
@pytest.mark.parametrize("name", list(SPECS))
def test_keras_matches_torch_within_its_rounding(keras, torch, name, parity_record):
    """Within 1e-5 of our torch model, and within 10x torch's own fp32-vs-float64 error (torch is timm's bit for
    bit: tests/peers/test_timm_res2net.py)."""
    spec = SPECS[name]
    weights = random_weights(spec, seed=1)
    images = random_images(BATCH, HEIGHT, WIDTH, seed=2)
    model = loaded(spec, weights)
    with torch.no_grad():
        reference = model(torch.from_numpy(images)).numpy()
        exact = model.double()(torch.from_numpy(images.astype(np.float64))).numpy()
    own = relative_error(reference, exact)
    out = keras.ops.convert_to_numpy(loaded(spec, weights, "keras")(to_channels_last(images), training=False))
    error = relative_error(out, reference)
    parity_record(f"res2net:{name}", f"keras[{keras.backend.backend()}] logits", error)
    assert error < 1e-5 and error <= 10 * own, f"{error:.2e} against torch, whose own fp32 error is {own:.2e}"
    keras.backend.clear_session()


def test_layers_are_built_in_but_the_split(keras):
    spec = SPECS["26w_4s"]
    model = rc.build(spec, backend="keras")
    custom = {type(layer) for layer in model.layers if type(layer).__module__.split(".")[0] != "keras"}
    assert {cls.__name__ for cls in custom} == {"ChannelSlice"}
    assert keras.saving.get_registered_name(custom.pop()) == "resnet_core>ChannelSlice"
    names = {layer.name: type(layer).__name__ for layer in model.layers}
    # the first block of stage 2 (strided): its last split average-pooled after explicit zero padding
    assert names["layer2_0_pool_pad"] == "ZeroPadding2D" and names["layer2_0_pool"] == "AveragePooling2D"
    assert "layer2_1_pool" not in names and names["layer2_1_cascade1"] == "Add"  # the cascade, not pooled
    assert "layer2_0_cascade1" not in names  # a first block convolves each split on its own
    keras.backend.clear_session()


@pytest.mark.parametrize("name", list(SPECS))
def test_spec_recovered_from_layers(keras, name):
    spec = SPECS[name]
    model = rc.build(spec, backend="keras", weights=random_weights(spec, seed=3))
    expected = rc.get_weights(model)
    del model.spec, model.plan  # as keras.saving.load_model makes it: layers only
    assert rc.spec_of(model) == spec
    assert all(np.array_equal(v, expected[k]) for k, v in rc.get_weights(model).items())
    keras.backend.clear_session()


_LOAD = """
import sys
import numpy as np
import keras
import resnet_core  # registers ChannelSlice (Keras imported first)
model = keras.saving.load_model(sys.argv[1])  # safe_mode left on
np.save(sys.argv[1] + ".npy", keras.ops.convert_to_numpy(model(np.load(sys.argv[2]))))
print(resnet_core.spec_of(model).name)
"""


def test_keras_file_loads_in_a_fresh_process_in_safe_mode(keras, run_python, tmp_path):
    spec = SPECS["26w_4s"]
    model = rc.build(spec, backend="keras", weights=random_weights(spec, seed=4))
    x = to_channels_last(random_images(BATCH, HEIGHT, WIDTH, seed=5))
    np.save(tmp_path / "x.npy", x)
    path = tmp_path / "res2net.keras"
    with without_tensorflow_probe():
        model.save(path)
    done = run_python(f"import sys; sys.argv[1:] = {[str(path), str(tmp_path / 'x.npy')]!r}\n" + _LOAD,
                      env={"KERAS_BACKEND": keras.backend.backend(), "TF_CPP_MIN_LOG_LEVEL": "3",
                           "PYTHONPATH": os.environ.get("PYTHONPATH")}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == spec.name
    np.testing.assert_array_equal(np.load(f"{path}.npy"), keras.ops.convert_to_numpy(model(x)))
    keras.backend.clear_session()


@pytest.mark.parametrize("peer", ["keras.applications", "keras-hub"])
def test_keras_peers_refuse_the_block_type(keras, peer):
    spec = SPECS["26w_4s"]
    with pytest.raises(rc.PeerError, match="block type 'res2net'"):
        rc.to_peer(spec, random_weights(spec, seed=6), peer)
