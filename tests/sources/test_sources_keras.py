"""Pretrained sources by name on Keras (every engine): a timm hub repo and a keras-hub preset, each
written by the peer's own saver into an offline Hugging Face cache and proven valid through the peer,
then built by resnet-core on Keras and compared with the peer."""

from __future__ import annotations

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.testing import (
    assert_same_weights,
    place_in_hf_cache,
    random_images,
    random_weights,
    relative_error,
    to_channels_last,
)

pytestmark = pytest.mark.keras

HEIGHT, WIDTH, BATCH = 65, 77, 2
LABELS = ("cat", "dog", "fox")
SPEC = rc.get_spec("resnet18").replace(num_classes=len(LABELS))


@pytest.fixture(scope="module")
def keras(need):
    return need("keras", "keras")


@pytest.fixture(scope="module")
def hub(tmp_path_factory, need):
    """An offline hub cache (HF_HOME in a temporary folder, HF_HUB_OFFLINE on) holding tester/resnet18 saved by
    timm's save_for_hf; yields (cache, timm's logits on IMAGES, the canonical weights)."""
    torch = need("torch", "torch")
    timm = need("torch", "timm")
    constants = need("torch", "huggingface_hub.constants")
    root = tmp_path_factory.mktemp("hub")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HOME", str(root / "hf"))
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setattr(constants, "HF_HUB_CACHE", str(root / "hf" / "hub"))
        patch.setattr(constants, "HF_HUB_OFFLINE", True)
        weights = random_weights(SPEC, seed=11)
        peer = rc.to_peer(SPEC, weights, "timm", info=rc.WeightsInfo(class_names=LABELS))
        timm.models.save_for_hf(peer, root / "saved", safe_serialization=True)
        place_in_hf_cache(root / "saved", "tester/resnet18", root / "hf" / "hub")
        proof = timm.create_model("hf-hub:tester/resnet18", pretrained=True).eval()
        with torch.no_grad():
            logits = proof(torch.from_numpy(IMAGES)).numpy()
        yield root, logits, weights


IMAGES = random_images(BATCH, HEIGHT, WIDTH, seed=12)


def _run(keras, model, images):
    return keras.ops.convert_to_numpy(model(to_channels_last(images), training=False))


def test_timm_hub_repo_on_keras(keras, hub, parity_record, tmp_path):
    _, want, weights = hub
    model = rc.build("hf-hub:tester/resnet18", backend="keras")
    assert_same_weights(rc.get_weights(model), weights)
    error = relative_error(_run(keras, model, IMAGES), want)
    parity_record("sources:hf-hub:timm", f"keras[{keras.backend.backend()}] logits", error)
    assert error <= 1e-5
    assert rc.info_of(model).class_names == LABELS
    # The record travels into a .keras file and back.
    path = tmp_path / "pets.keras"
    rc.sources.convert("hf-hub:tester/resnet18", path)  # resnet_core.io.convert reads files alone
    assert rc.read_weights(path).info == rc.info_of(model)


def test_gray_image_gives_the_rgb_features_of_that_image_repeated(keras, hub):
    rgb = rc.build("hf-hub:tester/resnet18", backend="keras", include_top=False)
    gray = rc.build("hf-hub:tester/resnet18", backend="keras", include_top=False, in_channels=1)
    image = random_images(BATCH, HEIGHT, WIDTH, channels=1, seed=13)
    error = relative_error(_run(keras, gray, image), _run(keras, rgb, np.repeat(image, 3, axis=1)))
    assert error <= 1e-6, error


def test_keras_hub_preset_from_the_hub(keras, need, hub, parity_record):
    keras_hub = need("keras", "keras_hub")
    from resnet_core.peers import keras_hub_peer

    root = hub[0]
    spec = rc.ResNetSpec(block="basic", layers=(1, 1, 1, 1), preact=True, num_classes=4)
    weights = random_weights(spec, seed=14)
    peer = rc.to_peer(spec, weights, "keras-hub", info=rc.WeightsInfo(preprocessing="tf"))
    peer.save_to_preset(str(root / "preset"))
    proof = keras_hub.models.ImageClassifier.from_preset(str(root / "preset"))  # keras-hub reads its preset
    images = to_channels_last(IMAGES)
    want = keras_hub_peer.logits(proof, images)
    place_in_hf_cache(root / "preset", "tester/kh-resnet", root / "hf" / "hub")
    model = rc.build("hf-hub:tester/kh-resnet", backend="keras")
    assert_same_weights(rc.get_weights(model), weights)
    error = relative_error(keras.ops.convert_to_numpy(model(images, training=False)), want)
    parity_record("sources:hf-hub:keras-hub", f"keras[{keras.backend.backend()}] logits", error)
    assert error <= 1e-6
    assert rc.info_of(model).preprocessing == "tf"
    # save_pretrained writes a preset keras-hub reads back, image converter ('tf') included.
    folder = rc.save_pretrained(model, root / "resaved", layout="keras-hub")
    again = keras_hub.models.ImageClassifier.from_preset(str(folder))
    assert relative_error(keras_hub_peer.logits(again, images), want) <= 1e-6
    assert rc.peer_info(again).preprocessing == "tf" and "maximum relative error" in (folder / "README.md").read_text()
