"""SKNet's selective-kernel blocks in Keras: parity with timm through our import, built-in layers only, and
``.keras`` files that load in a fresh process with Keras alone (safe mode), on every engine."""

from __future__ import annotations

import os

import numpy as np
import pytest
from timm_helpers import assert_keras_matches, holding

import resnet_core as rc
from resnet_core.io.keras_model import without_tensorflow_probe
from resnet_core.spec import SKBasic, SKBottleneck
from resnet_core.testing import assert_same_weights, random_images, random_weights, to_channels_last

pytestmark = pytest.mark.keras

HEIGHT, WIDTH, BATCH = 65, 77, 2
SMALL = {"layers": (1, 1, 1, 1), "channels": (16, 32, 64, 128)}
SMALL_SPEC = {"layers": (1, 1, 1, 1), "base_planes": 16}
# id -> (timm architecture, timm kwargs, expected spec before SMALL_SPEC): the two block types (split and whole
# inputs, grouped paths), three plain-kernel paths in a network dilated from stage 3 (a strided dilated path).
MEMBERS = {
    "skresnet18": ("skresnet18", {}, rc.get_spec("skresnet18")),
    "skresnext50_32x4d": ("skresnext50_32x4d", {}, rc.get_spec("skresnext50_32x4d")),
    "three-plain-os16": ("skresnet18", {"output_stride": 16, "block_args": {"sk_kwargs": {
        "kernel_size": [3, 5, 7], "keep_3x3": False, "split_input": False}}},
        rc.get_spec("skresnet18").replace(output_stride=16, block_spec=SKBasic(kernel_sizes=(3, 5, 7), keep_3x3=False,
                                                                                 split_input=False))),
}
SAVED = rc.get_spec("skresnet18").replace(**SMALL_SPEC, num_classes=5, name="tiny_skresnet")


@pytest.fixture(scope="module")
def keras(need):
    return need("keras", "keras")


@pytest.mark.torch
@pytest.mark.parametrize("member", list(MEMBERS))
def test_timm_import_runs_in_our_keras_model(need, keras, member, parity_record):
    torch, timm = need("torch", "torch"), need("torch", "timm")
    name, kwargs, spec = MEMBERS[member]
    spec = spec.replace(**SMALL_SPEC)
    weights = random_weights(spec, seed=1)
    peer = holding(torch, timm.create_model(name, pretrained=False, **SMALL, **kwargs), weights)
    got = assert_keras_matches(torch, peer, parity_record, f"timm:{member}", keep_weights=True)
    assert_same_weights(got, weights)


def test_built_in_layers_only(keras):
    model = rc.build(SAVED, backend="keras")
    assert {type(layer).__module__.split(".")[0] for layer in model.layers} == {"keras"}
    assert all("." not in layer.name and "/" not in layer.name for layer in model.layers)


_LOAD = """
import sys
import numpy as np
import keras
model = keras.saving.load_model(sys.argv[1])  # Keras alone, safe_mode left on
assert not any(m.startswith("resnet_core") for m in sys.modules)
np.save(sys.argv[3], keras.ops.convert_to_numpy(model(np.load(sys.argv[2]))))
"""


def test_keras_file_loads_in_a_fresh_process_with_keras_alone(keras, run_python, tmp_path):
    model = rc.build(SAVED, backend="keras", weights=random_weights(SAVED, seed=2))
    images = to_channels_last(random_images(BATCH, HEIGHT, WIDTH, seed=3))
    path, x, out = tmp_path / "m.keras", tmp_path / "x.npy", tmp_path / "out.npy"
    with without_tensorflow_probe():
        model.save(path)
    np.save(x, images)
    script = f"import sys; sys.argv[1:] = {[str(path), str(x), str(out)]!r}\n" + _LOAD
    done = run_python(script, env={"KERAS_BACKEND": keras.backend.backend(), "TF_CPP_MIN_LOG_LEVEL": "3",
                                   "PYTHONPATH": os.environ.get("PYTHONPATH")}, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert np.array_equal(np.load(out), keras.ops.convert_to_numpy(model(images)))


@pytest.mark.parametrize("spec", [
    SAVED,
    rc.get_spec("skresnext50_32x4d").replace(**SMALL_SPEC, output_stride=16, name="tiny_skresnext"),
    rc.get_spec("resnet50").replace(**SMALL_SPEC, block_spec=SKBottleneck(groups=2, width_per_group=32),
                                    name="tiny_sk_grouped_split"),  # its shapes are also 4 groups on whole inputs
    MEMBERS["three-plain-os16"][2].replace(**SMALL_SPEC, name="tiny_sk_plain"),
], ids=lambda s: s.name)
def test_spec_recovered_from_layers(keras, spec):
    """The layers alone (as keras.saving.load_model makes a model) give the spec back, weights unchanged."""
    model = rc.build(spec, backend="keras", weights=random_weights(spec, seed=5))
    expected = rc.get_weights(model)
    del model.spec, model.plan
    recovered = rc.spec_of(model)
    assert recovered == spec
    assert {k: v.tobytes() for k, v in rc.get_weights(model).items()} == {k: v.tobytes() for k, v in expected.items()}


def test_weights_h5_written_by_us_loads_in_keras(keras, tmp_path):
    """The .weights.h5 layout derived from the plan (no Keras involved) is what Keras reads for these layers."""
    from resnet_core.io import write_weights

    spec = rc.get_spec("skresnext50_32x4d").replace(**SMALL_SPEC, num_classes=7, name="tiny_skresnext_h5")
    weights = random_weights(spec, seed=10)
    fresh = rc.build(spec, backend="keras")
    fresh.load_weights(write_weights(tmp_path / "w.weights.h5", weights, spec))
    assert_same_weights(rc.get_weights(fresh), weights)
    assert rc.read_weights(tmp_path / "w.weights.h5").spec == spec
